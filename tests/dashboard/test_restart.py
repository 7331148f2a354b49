"""The run page's Restart button, through the real server: guarded like Stop (form token,
origin, confirmation, POST only), it starts a new run of the old run's recorded code and
arguments (not the working tree), takes the browser to the new run's page saying so, and a
refused restart is one line on the old run's page with nothing written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.dashboard.conftest import Served
from tests.e2e.cli import FINISHED, Dstack
from tests.e2e.conftest import Store

REPO = "github.com/acme/mnist"
WORKFLOWS = """
workflows:
  - name: say
    commands:
      - cat message.txt
      - echo "args ${{ run.args }}"
  - name: slow
    commands:
      - for i in $(seq 1 600); do sleep 0.1; done
"""


def _keys(store: Store) -> set[str]:
    return {info.key for info in store.storage().list_objects("")}


def _form(served: Served, run: str) -> dict[str, str]:
    page = served.get("/run", repo=REPO, run=run).text
    found = re.search(r'action="/run/restart".*?name="form_token" value="([^"]+)"', page, re.S)
    assert found, "no Restart form on the page of a finished run"
    return {"repo": REPO, "run": run, "form_token": found.group(1), "confirm": "yes"}


def test_restart_runs_the_recorded_code_and_is_guarded_like_stop(
    served: Served,
    dstack: Dstack,
    repo_factory,
    store: Store,  # type: ignore[no-untyped-def]
) -> None:
    repo = repo_factory({".dstack/workflows.yaml": WORKFLOWS, "message.txt": "first words\n"})
    old = dstack.run_detached("say", "--lr", "0.1", cwd=repo)
    assert dstack.wait_status(old, repo, lambda s: s in FINISHED)["status"] == "done"
    (repo / "message.txt").write_text("the working tree changed since\n")

    form = _form(served, old)
    before = _keys(store)
    assert served.request("POST", "/run/restart", form={**form, "form_token": "x"}).status == 403
    evil = {"Origin": "http://evil.example"}
    assert served.request("POST", "/run/restart", form=form, headers=evil).status == 403
    assert served.request("POST", "/run/restart", form={**form, "confirm": ""}).status == 400
    assert served.request("GET", "/run/restart", params=form).status == 405
    assert _keys(store) == before, "a refused restart wrote to the store"

    reply = served.request("POST", "/run/restart", form=form, headers={"Origin": served.url})
    assert reply.status == 303, reply.text
    target = reply.headers["location"]
    new = re.search(r"run=([^&]+)$", target).group(1)  # type: ignore[union-attr]
    assert new != old
    page = served.get("/run", repo=REPO, run=new).text
    assert f"code of {old}, not your working tree" in page
    row = dstack.wait_status(new, repo, lambda s: s in FINISHED)
    assert row["status"] == "done"
    out = dstack("logs", new, cwd=repo).out
    assert "first words" in out and "working tree changed" not in out
    assert "args --lr 0.1" in out


@pytest.mark.parametrize("store", ["local"], indirect=True)
def test_a_refused_restart_is_one_line_on_the_run_page(
    served: Served,
    dstack: Dstack,
    repo_factory,
    store: Store,  # type: ignore[no-untyped-def]
) -> None:
    from dstack import state

    repo = repo_factory({".dstack/workflows.yaml": WORKFLOWS, "message.txt": "hi\n"})
    old = dstack.run_detached("say", cwd=repo)
    dstack.wait_status(old, repo, lambda s: s in FINISHED)
    form = _form(served, old)
    storage = store.storage()
    key = state.spec_key(REPO, old, 0)
    storage.put(key, storage.get(key).replace(b"cat message.txt", b"cat /etc/passwd"))
    before = _keys(store)

    own = {"Origin": served.url}
    refused = served.request("POST", "/run/restart", form=form, headers=own)
    assert refused.status == 409
    line = re.search(r'<p class="error" id="restart-refused">([^<]+)</p>', refused.text)
    assert line and "Not restarted" in line.group(1) and "spec.json" in line.group(1)
    assert "\n" not in line.group(1).strip()
    assert _keys(store) == before, "a refused restart wrote to the store"

    unknown = served.request("POST", "/run/restart", form={**form, "run": "no-such-run"},
                             headers=own)  # fmt: skip
    assert unknown.status == 404 and "no-such-run" in unknown.text
    assert _keys(store) == before


@pytest.mark.parametrize("store", ["local"], indirect=True)
def test_restart_is_offered_only_for_a_finished_run(
    served: Served, dstack: Dstack, repo_factory, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    repo = repo_factory({".dstack/workflows.yaml": WORKFLOWS, "message.txt": "hi\n"})
    running = dstack.run_detached("slow", cwd=repo)
    dstack.wait_status(running, repo, lambda s: s == "running")
    page = served.get("/run", repo=REPO, run=running).text
    assert 'id="stop"' in page and 'id="restart"' not in page
    assert dstack("stop", running, "-y", cwd=repo).code == 0
    dstack.wait_status(running, repo, lambda s: s in FINISHED)
    page = served.get("/run", repo=REPO, run=running).text
    assert 'id="restart"' in page and 'id="stop"' not in page
