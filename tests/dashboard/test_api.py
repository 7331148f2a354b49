"""The dashboard's HTTP API on both stores (``store``: local folder, moto S3): the token, the
pages of the README's pipeline, downloads, the live log, Stop and its guards, and that
looking never writes to the store."""

from __future__ import annotations

import io
import re
import zipfile
from pathlib import Path

from tests.dashboard.conftest import Served, pipeline_repo, run_pipeline, url_of
from tests.e2e.cli import FINISHED, Dstack
from tests.e2e.conftest import Store

SLOW = r"""
workflows:
  - name: talk
    commands:
      - >-
        printf '\033[31mred line\033[0m and the secret: %s\n' "$API_KEY"
      - for i in 1 2 3 4 5 6; do echo "line $i"; sleep 0.3; done
      - echo "last line"
  - name: slow
    commands:
      - echo started
      - for i in $(seq 1 600); do sleep 0.1; done
"""


def _keys(store: Store) -> set[str]:
    return {info.key for info in store.storage().list_objects("")}


def test_every_request_needs_the_token(served: Served) -> None:
    assert served.request("GET", "/", cookie=False).status == 401
    assert served.request("GET", "/static/dashboard.js", cookie=False).status == 401
    wrong = served.request("GET", "/", params={"token": "x" * 32}, cookie=False)
    assert wrong.status == 401
    given = served.request(
        "GET", "/runs", params={"token": served.token, "repo": "a/b"}, cookie=False
    )
    assert given.status == 303
    assert given.headers["location"] == "/runs?repo=a%2Fb"  # the token leaves the address bar
    cookie = given.headers["set-cookie"]
    assert cookie.startswith(f"dstack_dashboard_{served.port}=")
    assert "httponly" in cookie.lower() and "samesite=strict" in cookie.lower()
    assert served.get("/").status == 200


def test_the_pipeline_in_pages(
    served: Served, dstack: Dstack, store: Store, tmp_path: Path
) -> None:
    repo = pipeline_repo(tmp_path / "moons")
    names = run_pipeline(dstack, repo)
    repo_id = "github.com/acme/moons"
    before = _keys(store)

    home = served.get("/")
    assert home.status == 200 and repo_id in home.text

    runs = served.get("/runs", repo=repo_id)
    assert runs.status == 200
    rows = re.findall(r'<tr data-run="([^"]+)">(.*?)</tr>', runs.text, re.S)
    assert [name for name, _ in rows] == [names["evaluate"], names["train"], names["prepare"]]
    prepare_row = dict(rows)[names["prepare"]]
    assert "moons-data" in prepare_row and "status-ok" in prepare_row and ">done<" in prepare_row
    filtered = served.get("/runs", repo=repo_id, workflow="train")
    assert re.findall(r'<tr data-run="([^"]+)">', filtered.text) == [names["train"]]
    assert "No runs match" in served.get("/runs", repo=repo_id, status="failed").text

    page = served.get("/run", repo=repo_id, run=names["evaluate"])
    assert page.status == 200
    for producer in (names["prepare"], names["train"]):  # its deps, linked
        assert f"run={producer}" in page.text
    assert "main @" in page.text  # the code it ran: branch and commit

    train = served.get("/run", repo=repo_id, run=names["train"]).text
    links = re.findall(r'href="(/run/artifact[^"]*path=[^"]*)"', train)
    assert links, "no artifact links on the train run's page"
    path, params = url_of(links[0])
    download = served.get(path, **params)
    expected_key = f"repos/{repo_id}/runs/{names['train']}/jobs/0/artifacts/{params['path']}"
    assert download.status == 200
    assert download.body == store.storage().get(expected_key)
    assert "attachment" in download.headers["content-disposition"]

    folder = served.get("/run/artifact", repo=repo_id, run=names["train"], folder="model")
    archive = zipfile.ZipFile(io.BytesIO(folder.body))
    assert archive.testzip() is None
    assert archive.read(params["path"]) == download.body

    lineage = served.get("/lineage").text
    nodes = set(re.findall(r'data-node="([^"]+)"', lineage))
    assert {f"run:{repo_id}:{name}" for name in names.values()} | {
        f"tag:{repo_id}:moons-data"
    } <= nodes
    assert lineage.count('class="edge') >= 4  # prepare→tag, tag→train, tag→evaluate, train→evaluate

    assert _keys(store) == before, "looking at pages wrote to the store"


def test_artifact_paths_cannot_leave_the_run(
    served: Served, dstack: Dstack, tmp_path: Path
) -> None:
    repo = pipeline_repo(tmp_path / "moons")
    prepare = dstack.run_detached("prepare", cwd=repo)
    dstack.wait_status(prepare, repo, lambda s: s in FINISHED, timeout=300)
    repo_id = "github.com/acme/moons"
    for path in ("../run.json", "../../jobs/0/spec.json", "/etc/passwd", "data/../../spec.json"):
        assert served.get("/run/artifact", repo=repo_id, run=prepare, path=path).status == 404
    assert served.get("/run/artifact", repo=repo_id, run=prepare, folder="../..").status == 404
    assert served.get("/run", repo="github.com/acme/other", run=prepare).status == 404


def test_live_log_colored_and_masked(
    served: Served, dstack: Dstack, repo_factory, store: Store
) -> None:  # type: ignore[no-untyped-def]
    repo = repo_factory({".dstack/workflows.yaml": SLOW})
    assert dstack("secrets", "add", "API_KEY", "sk-very-secret-value", cwd=repo).code == 0
    run = dstack.run_detached("talk", cwd=repo)
    events = served.events("/run/logs", repo="github.com/acme/mnist", run=run)
    kinds = [kind for kind, _ in events]
    assert kinds[0] == "reset" and kinds[-1] == "end"
    html = "".join(data["html"] for kind, data in events if kind == "log")
    assert '<span class="fg1">red line</span>' in html
    assert "sk-very-secret-value" not in html and "secret: ***" in html
    assert html.index("line 6") < html.index("last line")
    statuses = [data["status"] for kind, data in events if kind == "status"]
    assert statuses[-1] == "done" and "running" in statuses


def test_stop_needs_the_form_token_the_origin_and_a_confirmation(
    served: Served,
    dstack: Dstack,
    repo_factory,
    store: Store,  # type: ignore[no-untyped-def]
) -> None:
    repo = repo_factory({".dstack/workflows.yaml": SLOW})
    run = dstack.run_detached("slow", cwd=repo)
    dstack.wait_status(run, repo, lambda s: s == "running")
    page = served.get("/run", repo="github.com/acme/mnist", run=run).text
    form_token = re.search(r'name="form_token" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
    form = {"repo": "github.com/acme/mnist", "run": run, "form_token": form_token, "confirm": "yes"}
    before = _keys(store)
    assert served.request("POST", "/run/stop", form={**form, "form_token": "x"}).status == 403
    evil = {"Origin": "http://evil.example"}
    assert served.request("POST", "/run/stop", form=form, headers=evil).status == 403
    assert served.request("POST", "/run/stop", form={**form, "confirm": ""}).status == 400
    assert served.request("GET", "/run/stop", params=form).status == 405
    assert _keys(store) == before, "a refused stop wrote to the store"
    own = {"Origin": served.url}
    stopped = served.request("POST", "/run/stop", form=form, headers=own)
    assert stopped.status == 303
    row = dstack.wait_status(run, repo, lambda s: s in FINISHED, timeout=60)
    assert row["status"] == "stopped"


def test_runs_page_pages_and_refreshes(served: Served, dstack: Dstack, repo_factory) -> None:  # type: ignore[no-untyped-def]
    from dstack import state
    from tests.dashboard.seed import seed_runs

    seed_runs(dstack_storage(), "github.com/acme/seeded", 120)
    first = served.get("/runs", repo="github.com/acme/seeded")
    names = re.findall(r'<tr data-run="([^"]+)">', first.text)
    assert names[0] == "seeded-119" and len(names) == 50
    assert "older →" in first.text and 'data-active="0"' in first.text
    third = served.get("/runs", repo="github.com/acme/seeded", page="3")
    assert re.findall(r'<tr data-run="([^"]+)">', third.text)[-1] == "seeded-0"
    assert "older →" not in third.text
    fragment = served.get("/runs", repo="github.com/acme/seeded", fragment="1")
    assert fragment.text.lstrip().startswith("<table")
    assert len(list(state.list_repos(dstack_storage()))) == 1


def dstack_storage():  # type: ignore[no-untyped-def]
    from dstack.storage import default_storage

    return default_storage()


def test_names_that_are_not_repos_or_runs_are_404(served: Served) -> None:
    for route, params in (
        ("/runs", {"repo": "../../x"}),
        ("/runs", {"repo": "a//b"}),
        ("/run", {"repo": "github.com/acme/x", "run": "../x"}),
        ("/run", {"repo": "..", "run": "x"}),
        ("/run/logs", {"repo": "a/../../b", "run": "x"}),
        ("/infra", {"repo": "github.com/acme/x", "run": "nope"}),
    ):
        assert served.get(route, **params).status == 404, (route, params)
