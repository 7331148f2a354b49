"""The dashboard's metrics through the real server, over runs whose jobs wrote
``$DSTACK_METRICS``: the run page's JSON (``after=``, live while the run runs, ``finished``
once every point is there), the compare view's overlay, and the runs table's column."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from tests.dashboard.conftest import Served
from tests.e2e.cli import FINISHED, Dstack
from tests.e2e.conftest import Store

REPO = "github.com/acme/mnist"
LEARN = """\
import json, os, pathlib, sys, time

args = dict(zip(sys.argv[1::2], sys.argv[2::2]))
lr, steps, hold = float(args.get("--lr", 1)), int(args.get("--steps", 5)), args.get("--hold")
for step in range(1, steps + 1):
    if hold and step == 3:  # wait (at most a minute) until the test lets the run go on
        deadline = time.monotonic() + 60
        while not pathlib.Path(hold).exists() and time.monotonic() < deadline:
            time.sleep(0.05)
    point = {"loss": round(1 / (1 + step * lr), 6), "accuracy": step / 10}
    if "--no-step" not in sys.argv:
        point["step"] = step
    with open(os.environ["DSTACK_METRICS"], "a") as out:
        out.write(json.dumps(point) + "\\n")
    print("step", step, flush=True)
"""
WORKFLOWS = """
workflows:
  - name: learn
    provider: python
    file: learn.py
"""
local_only = pytest.mark.parametrize("store", ["local"], indirect=True)


@pytest.fixture
def repo(repo_factory) -> Path:  # type: ignore[no-untyped-def]
    return repo_factory({".dstack/workflows.yaml": WORKFLOWS, "learn.py": LEARN})


def _learn(dstack: Dstack, repo: Path, *args: str) -> str:
    run = dstack.run_detached("learn", *args, cwd=repo)
    assert dstack.wait_status(run, repo, lambda s: s in FINISHED)["status"] == "done"
    return run


def _keys(store: Store) -> set[str]:
    return {info.key for info in store.storage().list_objects("")}


def _metrics(served: Served, run: str, after: int = 0) -> dict:
    reply = served.get("/run/metrics", repo=REPO, run=run, after=str(after))
    assert reply.status == 200, reply.text
    assert reply.headers["content-type"] == "application/json"
    return json.loads(reply.body)


def test_the_run_metrics_grow_while_the_run_runs(
    served: Served, dstack: Dstack, repo: Path, store: Store, tmp_path: Path
) -> None:
    release = tmp_path / "release"
    run = dstack.run_detached("learn", "--hold", str(release), cwd=repo)
    deadline = time.monotonic() + 60
    while (found := _metrics(served, run))["next"] < 2:  # the first two points, shipped live
        assert time.monotonic() < deadline, "the first points never arrived"
        time.sleep(0.1)
    assert found["finished"] is False and found["next"] == 2
    assert [p["step"] for p in found["points"]] == [1, 2]
    assert found["points"][0]["values"] == {"loss": 0.5, "accuracy": 0.1}
    assert found["points"][0]["job"] == 0 and found["points"][0]["attempt"] == 1
    release.touch()
    dstack.wait_status(run, repo, lambda s: s in FINISHED)
    rest = _metrics(served, run, after=2)
    assert rest["finished"] is True and rest["next"] == 5
    assert [p["step"] for p in rest["points"]] == [3, 4, 5]
    assert _metrics(served, run, after=99) == {"points": [], "next": 99, "finished": True,
                                                 "jobs": 1, "replace": False}  # fmt: skip
    before = _keys(store)
    unknown = served.get("/run/metrics", repo=REPO, run="no-such-run")
    assert unknown.status == 404 and "no-such-run" in json.loads(unknown.body)["error"]
    for bad in ("abc", "-3"):
        refused = served.get("/run/metrics", repo=REPO, run=run, after=bad)
        assert refused.status == 400 and "after=" in json.loads(refused.body)["error"]
    unsigned = served.request("GET", "/run/metrics", params={"repo": REPO, "run": run},
                              cookie=False)  # fmt: skip
    assert unsigned.status == 401
    assert _keys(store) == before, "reading metrics wrote to the store"


def _chart(page: str) -> dict:
    found = re.search(r'<script type="application/json" id="compare-data">(.*?)</script>', page)
    assert found, "no chart on the compare page"
    return json.loads(found.group(1))


@local_only
def test_compare_overlays_one_metric_of_the_picked_runs(
    served: Served, dstack: Dstack, repo: Path
) -> None:
    slow = _learn(dstack, repo, "--lr", "1")
    fast = _learn(dstack, repo, "--lr", "3", "--steps", "4")
    timed = _learn(dstack, repo, "--no-step")

    page = served.get("/compare", repo=REPO, run=[slow, fast], metric="loss")
    assert page.status == 200
    chart = _chart(page.text)
    assert chart["metric"] == "loss" and chart["xLabel"] == "step"
    assert [(s["label"], len(s["points"])) for s in chart["series"]] == [(slow, 5), (fast, 4)]
    assert chart["series"][1]["points"][0] == [1, 0.25]
    assert '<option value="accuracy">' in page.text  # the other metric, to switch to

    # no metric named: the first one they have; a run without steps: by seconds
    other = _chart(served.get("/compare", repo=REPO, run=[slow, timed]).text)
    assert other["metric"] == "accuracy" and other["xLabel"] == "seconds"
    assert other["series"][1]["points"][0][0] == 0  # seconds since the run's first point

    gone = served.get("/compare", repo=REPO, run=[slow, "no-such-run"], metric="nope")
    assert gone.status == 200
    assert "no-such-run: no such run in this repo" in gone.text
    assert f"{slow}: no metric &#39;nope&#39;" in gone.text and "compare-data" not in gone.text
    many = served.get("/compare", repo=REPO, run=[f"r{i}" for i in range(13)])
    assert many.status == 400 and "at most 12" in many.text


@local_only
def test_the_runs_table_shows_a_chosen_metric_and_picks_runs(
    served: Served, dstack: Dstack, repo: Path
) -> None:
    first = _learn(dstack, repo, "--lr", "1")
    second = _learn(dstack, repo, "--lr", "3", "--steps", "4")
    plain = served.get("/runs", repo=REPO).text
    assert 'id="metric-heading"' not in plain
    picks = re.findall(r'<input type="checkbox" name="run" value="([^"]+)"', plain)
    assert picks == [second, first] and 'action="/compare"' in plain

    page = served.get("/runs", repo=REPO, metric="loss").text
    assert '<th class="metric" id="metric-heading">loss</th>' in page
    cells = dict(re.findall(r'<tr data-run="([^"]+)">.*?<td class="metric"[^>]*>([^<]*)</td>',
                            page, re.S))  # fmt: skip
    assert cells == {first: "0.1667", second: "0.07692"}
    fragment = served.get("/runs", repo=REPO, metric="loss", fragment="1").text
    assert "0.07692" in fragment  # the live refresh keeps the column
    absent = served.get("/runs", repo=REPO, metric="nope").text
    assert re.findall(r'<td class="metric">([^<]*)</td>', absent) == ["", ""]

    names = served.get("/runs/metric-names", repo=REPO, run=[first, second, "gone"])
    assert json.loads(names.body) == {"metrics": ["accuracy", "loss"]}


@local_only
def test_a_metric_name_is_text_wherever_it_is_shown(served: Served) -> None:
    """A job chooses its metrics' names: one that looks like markup stays text in the compare
    page's data, the runs table's column and the JSON."""
    from dstack import state
    from dstack.state import StoredPoint
    from dstack.storage import default_storage
    from tests.dashboard.seed import seed_runs

    storage = default_storage()
    seed_runs(storage, "github.com/acme/seeded", 1)
    spec = state.read_job_spec(storage, "github.com/acme/seeded", "seeded-0", 0)
    name = "</script><script>alert(1)</script>"
    state.write_metric_chunk(storage, spec, 1, 0, [StoredPoint(1.0, 1, {name: 0.5})])
    seeded = {"repo": "github.com/acme/seeded"}
    compare = served.get("/compare", **seeded, run="seeded-0").text
    assert "<script>alert" not in compare
    assert _chart(compare)["metric"] == name
    table = served.get("/runs", **seeded, metric=name).text
    assert "<script>alert" not in table and "&lt;/script&gt;" in table
    points = json.loads(served.get("/run/metrics", **seeded, run="seeded-0").body)["points"]
    assert points[0]["values"] == {name: 0.5}


@local_only
def test_a_run_of_several_jobs_is_answered_whole_while_they_write(served: Served) -> None:
    """``after`` counts job 0's points before job 1's, so a new point of job 0 would shift
    it: while several jobs write, every poll gets all the points, to draw instead of add."""
    from dstack import state
    from dstack.lifecycle import Writer, set_state
    from dstack.models import JobSpec, JobState, JobStatus, Owner, RepoSnapshot, RunRecord
    from dstack.state import StoredPoint
    from dstack.storage import default_storage

    storage = default_storage()
    repo = RepoSnapshot(repo_id="github.com/acme/nodes", code_key="codes/x.tar.gz")
    owner = Owner(git_name="Seed", user="seed")
    record = RunRecord(run_name="nodes-1", repo_id=repo.repo_id, workflow="ddp", provider="bash",
                       submitted_at=1.0, owner=owner, repo=repo, job_count=2)  # fmt: skip
    specs = [JobSpec(run_name="nodes-1", workflow="ddp", provider="bash", repo=repo,
                     submitted_at=1.0, commands=["true"], job_index=i) for i in (0, 1)]  # fmt: skip
    state.create_run(storage, record, specs)
    for spec in specs:
        set_state(storage, spec, "seed", Writer.RUNNER, JobState(status=JobStatus.RUNNING))
    state.write_metric_chunk(storage, specs[0], 1, 0, [StoredPoint(10.0, 1, {"loss": 0.9})])
    state.write_metric_chunk(storage, specs[1], 1, 0, [StoredPoint(11.0, 1, {"loss": 0.8})])
    nodes = {"repo": "github.com/acme/nodes", "run": "nodes-1"}
    first = json.loads(served.get("/run/metrics", **nodes, after="0").body)
    assert first["replace"] is True and first["next"] == 2 and first["finished"] is False
    state.write_metric_chunk(storage, specs[0], 1, 1, [StoredPoint(12.0, 2, {"loss": 0.7})])
    then = json.loads(served.get("/run/metrics", **nodes, after=str(first["next"])).body)
    assert [(p["job"], p["step"]) for p in then["points"]] == [(0, 1), (0, 2), (1, 1)]
