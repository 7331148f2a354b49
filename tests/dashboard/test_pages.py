"""What the pages say about what is (not) there: an unknown repo, a run's command, a run with
many artifacts (folded folders, pages), and a file name that is not UTF-8."""

from __future__ import annotations

import html
import re
from typing import Any

import pytest

from tests.dashboard.conftest import Served
from tests.dashboard.seed import seed_runs
from tests.e2e.cli import FINISHED, Dstack
from tests.e2e.conftest import Store

REPO = "github.com/acme/seeded"
local_only = pytest.mark.parametrize("store", ["local"], indirect=True)


def _artifacts(store: Store, run: str, names: list[str]) -> None:
    prefix = f"repos/{REPO}/runs/{run}/jobs/0/artifacts/"
    for name in names:
        store.storage().put(prefix + name, name.encode())


def _entries(text: str) -> list[str]:
    return [html.unescape(n) for n in re.findall(r'data-path="([^"]+)"', text)]


@local_only
def test_an_unknown_repo_is_a_404_that_says_so(served: Served, store: Store) -> None:
    seed_runs(store.storage(), REPO, 1)
    page = served.get("/runs", repo="github.com/acme/nope")
    assert page.status == 404
    assert "There is no repo github.com/acme/nope in this store." in page.text
    assert "<table" not in page.text
    assert served.get("/runs", repo=REPO).status == 200


@local_only
def test_a_bash_c_run_shows_its_command(served: Served, dstack: Dstack, repo_factory) -> None:  # type: ignore[no-untyped-def]
    repo = repo_factory({"README.md": "x\n"}, remote="https://github.com/acme/adhoc.git")
    name = dstack.run_detached("bash", "-c", "echo 'hello <there>' && ls", cwd=repo)
    dstack.wait_status(name, repo, lambda s: s in FINISHED, timeout=120)
    page = served.get("/run", repo="github.com/acme/adhoc", run=name)
    assert page.status == 200
    command = re.search(r'id="run-command">(.*?)</dd>', page.text, re.S)
    assert command is not None
    assert "echo &#39;hello &lt;there&gt;&#39; &amp;&amp; ls" in command.group(1)


@local_only
def test_a_run_page_shows_the_runs_arguments_in_its_command(
    served: Served, dstack: Dstack, repo_factory: Any
) -> None:
    """Not the reference the job's script reads them through (``"${DSTACK_RUN_ARGS[@]}"``)."""
    workflows = "workflows:\n  - name: w\n    commands:\n      - echo got ${{ run.args }}\n"
    repo = repo_factory(
        {".dstack/workflows.yaml": workflows}, remote="https://github.com/acme/args.git"
    )
    name = dstack.run_detached("w", "--lr", "0.1", "a b", cwd=repo)
    dstack.wait_status(name, repo, lambda s: s in FINISHED, timeout=120)
    page = served.get("/run", repo="github.com/acme/args", run=name)
    command = re.search(r'id="run-command">(.*?)</dd>', page.text, re.S)
    assert command is not None
    assert "echo got --lr 0.1 &#39;a b&#39;" in command.group(1), command.group(1)


@local_only
def test_101_artifacts_are_paged(served: Served, store: Store) -> None:
    seed_runs(store.storage(), REPO, 1)
    _artifacts(store, "seeded-0", [f"file-{i}.txt" for i in range(1, 102)])
    first = served.get("/run", repo=REPO, run="seeded-0")
    assert first.status == 200 and "101 files" in first.text
    assert _entries(first.text) == [f"file-{i}.txt" for i in range(1, 51)]
    assert "page 1 of 3" in first.text
    last = served.get("/run", repo=REPO, run="seeded-0", files="3")
    assert _entries(last.text) == ["file-101.txt"]


@local_only
def test_folders_of_a_big_run_are_folded(served: Served, store: Store) -> None:
    seed_runs(store.storage(), REPO, 1)
    names = [f"ckpt/epoch-{i}/model.pt" for i in range(60)] + ["metrics.json", "out/a.txt"]
    _artifacts(store, "seeded-0", names)
    top = served.get("/run", repo=REPO, run="seeded-0")
    assert _entries(top.text) == ["metrics.json"]  # the folders are folded: links, not lists
    assert "ckpt/</a>" in top.text and "60 files" in top.text and "out/</a>" in top.text
    inside = served.get("/run", repo=REPO, run="seeded-0", dir="ckpt")
    assert "epoch-49/</a>" in inside.text and "epoch-50/</a>" not in inside.text
    assert "page 1 of 2" in inside.text
    assert _entries(inside.text) == []
    small = served.get("/run", repo=REPO, run="seeded-0", dir="out")
    assert _entries(small.text) == ["out/a.txt"]


@local_only
def test_a_run_page_with_a_file_name_that_is_not_utf8(served: Served, store: Store) -> None:
    """``printf x > "out/$(printf 'bad\\377name')"`` in the local store's folder: the page
    answers (3edfc6c: a 500)."""
    import os

    from dstack import settings

    seed_runs(store.storage(), REPO, 1)
    folder = settings.local_store_root() / f"repos/{REPO}/runs/seeded-0/jobs/0/artifacts/out"
    folder.mkdir(parents=True)
    with open(os.path.join(os.fsencode(folder), b"bad\xffname"), "wb") as out:
        out.write(b"x")
    page = served.get("/run", repo=REPO, run="seeded-0")
    assert page.status == 200
    # listed with U+FFFD once the store lists such names, or the listing's problem in a line
    assert "bad\ufffdname" in page.text or "cannot be listed" in page.text
    for route in ("/", "/lineage"):  # every page of the store answers with a page, never a 500
        reply = served.get(route)
        assert reply.status in (200, 502) and "</html>" in reply.text, route
