"""What runs spent, through the `dstack` command: the COST column of `dstack ps` (``-`` for a
local run, ``+`` while a cloud run runs), the account of `dstack ps RUN`, and `dstack cost`
summing every repo of the store by repo, user and month, with its bad input in one line.

The cloud runs are arranged in the store as their runners would have recorded them
(``tests.cloud_spend_records``); a real one, run on moto's EC2 and destroyed, is shown by
`ps` and `cost` in ``tests/compute/aws/test_spend.py``."""

from __future__ import annotations

import datetime
import json
import time
from pathlib import Path
from typing import Any

import pytest

from dstack.models import RepoSnapshot
from dstack.state import spend
from dstack.state.spend import NodeSpend, RunSpend
from dstack.storage.local import LocalStorage
from tests.cloud_spend_records import HOUR, REPO, cloud_run, ran
from tests.e2e.cli import Dstack

OTHER = RepoSnapshot(repo_id="github.com/acme/other", code_key="codes/y.tar.gz")
NOVEMBER = datetime.datetime(2026, 11, 20, tzinfo=datetime.UTC).timestamp()


@pytest.fixture
def seeded(dstack_home: Path, repo_factory: Any) -> tuple[Dstack, Path, float]:
    """Three cloud runs (one running, one in November, one in another repo by bob) and a
    local run; the repo the first three are in."""
    storage = LocalStorage(dstack_home / "store")
    now = time.time()
    _, spec = cloud_run(storage, "done-run-1", submitted_at=now - 3 * HOUR, price=3.06)
    ran(storage, spec, now - 3 * HOUR, now - HOUR)
    _, spec = cloud_run(storage, "live-run-1", submitted_at=now - HOUR, price=1.0)
    ran(storage, spec, now - HOUR, None)
    old, spec = cloud_run(storage, "old-run-1", submitted_at=NOVEMBER, price=2.0)
    ran(storage, spec, NOVEMBER, NOVEMBER + HOUR)
    spend.write_spend(
        storage,
        RunSpend(
            repo_id=old.repo_id, run_name=old.run_name, recorded_at=NOVEMBER + 2 * HOUR,
            final=True,
            nodes=[NodeSpend(job_index=0, instance_id="i-0abc", instance_type="p3.2xlarge",
                             market="on-demand", availability_zone="us-east-1b",
                             price_per_hour=2.0, started_at=NOVEMBER - 120,
                             ended_at=NOVEMBER + HOUR + 60, start_from="launch",
                             end_from="ec2")],
        ),
    )  # fmt: skip
    _, spec = cloud_run(storage, "bob-run-1", submitted_at=now - HOUR, owner="bob", repo=OTHER)
    ran(storage, spec, now - HOUR, now - HOUR / 2)
    _, spec = cloud_run(storage, "here-run-1", submitted_at=now - HOUR / 2, compute="local")
    ran(storage, spec, now - HOUR / 2, now - HOUR / 4)
    repo = repo_factory({"README.md": "x\n"}, remote="https://github.com/acme/mnist.git")
    return Dstack(dstack_home), repo, now


def test_ps_shows_a_cost_column_and_the_account_of_a_run(seeded: Any) -> None:
    cli, repo, _ = seeded
    table = cli("ps", "-a", cwd=repo)
    assert table.code == 0, table.err
    lines = table.out.splitlines()
    assert lines[0].split()[-1] == "COST"
    cells = {line.split()[0]: line.split()[-1] for line in lines[1:]}
    assert cells["done-run-1"] == "$6.12" and cells["here-run-1"] == "-"
    assert cells["old-run-1"] == "$2.10"  # recorded: launch to termination, 1h 03m at $2/h
    assert cells["live-run-1"].startswith("$1.0") and cells["live-run-1"].endswith("+")

    rows = {r["run"]: r for r in json.loads(cli("ps", "-a", "--json", cwd=repo).out)}
    assert rows["here-run-1"]["cost_usd"] is None
    assert rows["done-run-1"]["cost_usd"] == pytest.approx(6.12)
    assert (rows["done-run-1"]["cost_final"], rows["live-run-1"]["cost_running"]) == (False, True)

    detail = cli("ps", "old-run-1", cwd=repo)
    assert detail.code == 0, detail.err
    assert "cost: $2.10 (recorded)" in detail.out
    assert (
        "job 0 attempt 1: p3.2xlarge on-demand us-east-1b, 2026-11-19 23:58 UTC–2026-11-20 01:01"
        " UTC (1h 03m) × $2/h (quoted at submit) = $2.10"
    ) in detail.out
    [as_json] = json.loads(cli("ps", "old-run-1", "--json", cwd=repo).out)
    [node] = as_json["spend"]
    assert (node["instance_id"], node["start_from"], node["end_from"]) == (
        "i-0abc",
        "launch",
        "ec2",
    )
    assert node["cost_usd"] == pytest.approx(2.0 * 63 / 60, abs=1e-4)


def test_cost_sums_every_repo_by_repo_user_and_month(seeded: Any) -> None:
    cli, repo, now = seeded
    this_month = datetime.datetime.fromtimestamp(now, datetime.UTC).strftime("%Y-%m")
    by_repo = json.loads(cli("cost", "--json", cwd=repo).out)
    rows = {r["repo"]: r for r in by_repo["rows"]}
    assert set(rows) == {REPO.repo_id, OTHER.repo_id}  # the local run costs nothing
    assert rows[REPO.repo_id]["runs"] == 3 and rows[REPO.repo_id]["running"] == 1
    assert rows[OTHER.repo_id]["usd"] == pytest.approx(1.53)
    by_user = {
        r["user"]: r
        for r in json.loads(cli("cost", "--by", "user", "--json", cwd=repo).out)["rows"]
    }
    assert set(by_user) == {"ada", "bob"} and by_user["bob"]["runs"] == 1
    by_month = json.loads(cli("cost", "--by", "month", "--json", cwd=repo).out)["rows"]
    assert [r["month"] for r in by_month][-1] == this_month
    assert by_month[0] == {"month": "2026-11", "runs": 1, "running": 0,
                           "usd": pytest.approx(2.1), "hours": pytest.approx(1.05)}  # fmt: skip
    since = json.loads(cli("cost", "--since", this_month, "--json", cwd=repo).out)
    assert sum(r["runs"] for r in since["rows"]) == 3  # November's run is left out

    text = cli("cost", "--by", "user", cwd=repo)
    assert text.code == 0, text.err
    lines = text.out.splitlines()
    assert lines[0].split() == ["USER", "RUNS", "COST", "HOURS"]
    assert lines[-1].startswith("+: runs still running")
    assert any(line.split()[:2] == ["total", "4"] for line in lines)


def test_a_removed_run_still_counts_in_cost(seeded: Any, dstack_home: Path) -> None:
    """`dstack rm` removes the run, its logs and artifacts, but what it spent stays."""
    cli, repo, now = seeded
    before = json.loads(cli("cost", "--json", cwd=repo).out)
    removed = cli("rm", "-y", "done-run-1", cwd=repo)
    assert removed.code == 0, removed.err
    assert "done-run-1" not in cli("ps", "-a", cwd=repo).out
    after = json.loads(cli("cost", "--json", cwd=repo).out)
    assert after["total_usd"] == pytest.approx(before["total_usd"], abs=0.01)  # live-run grows
    [row] = [r for r in after["rows"] if r["repo"] == REPO.repo_id]
    assert row["runs"] == 3 and after["skipped"] == 0
    storage = LocalStorage(dstack_home / "store")
    kept = spend.read_spend(storage, REPO.repo_id, "done-run-1")
    assert kept is not None and kept.removed and kept.owner == "ada"
    assert kept.total(now) == pytest.approx(6.12)
    assert spend.removed_runs(storage, REPO.repo_id) == ["done-run-1"]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--since", "2026-13"], "Error: --since '2026-13' is not a month: write it as YYYY-MM"),
        (["--since", "last week"], "Error: --since 'last week' is not a month"),
        (["--by", "team"], "Error: --by 'team': choose one of repo, user, month"),
    ],
)
def test_cost_bad_input_is_one_line(seeded: Any, args: list[str], expected: str) -> None:
    cli, repo, _ = seeded
    result = cli("cost", *args, cwd=repo)
    assert result.code != 0 and result.out == ""
    assert result.err.startswith(expected) and len(result.err.strip().splitlines()) == 1


def test_cost_of_a_store_without_cloud_runs(dstack_home: Path, repo_factory: Any) -> None:
    repo = repo_factory({"README.md": "x\n"})
    result = Dstack(dstack_home)("cost", cwd=repo)
    assert result.code == 0 and "No cloud run has spent anything" in result.out
