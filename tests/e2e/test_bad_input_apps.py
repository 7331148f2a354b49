"""Bad input to the app and multi-node providers, through the CLI: each case exits non-zero
with one clear line and writes nothing (as ``test_bad_input.py`` does for the others). A
secret's bad name is in ``test_secrets.py``; a `lab` version the index lacks, which only the
index can tell, in ``test_providers.py``."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import make_repo
from tests.e2e.cli import Dstack


def wf(body: str, name: str = "train") -> str:
    return f"workflows:\n  - name: {name}\n" + body


BASH = "    commands:\n      - echo hi\n"
TORCHRUN = "    provider: torchrun\n    script: train.py\n"

# (id, workflows.yaml text, the `dstack run` arguments, words the one line must contain)
CASES: list[tuple[str, str, list[str], list[str]]] = [
    ("ports-negative", wf(BASH + "    ports: -1\n"), ["train"], ["ports", "-1"]),
    ("ports-fraction", wf(BASH + "    ports: 1.5\n"), ["train"], ["ports", "1.5"]),
    ("ports-flag-negative", wf(BASH), ["-p", "-3", "train"], ["--ports", "-3"]),
    (
        "lab-ports-zero",
        wf("    provider: lab\n    ports: 0\n"),
        ["train"],
        ["ports", "0 is not a positive whole number"],
    ),
    (
        "nodes-zero",
        wf(TORCHRUN + "    nodes: 0\n"),
        ["train"],
        ["nodes", "0 is not a positive whole number"],
    ),
    ("nodes-word", wf(TORCHRUN + "    nodes: many\n"), ["train"], ["nodes", "'many'"]),
    ("torchrun-no-script", wf("    provider: torchrun\n"), ["train"], ["file"]),
    ("launcher-unknown", wf(TORCHRUN + "    launcher: mpirun\n"), ["train"], ["launcher"]),
    (
        "lab-version-word",
        wf("    provider: lab\n    version: latest\n"),
        ["train"],
        ["version", "'latest' is not a release version"],
    ),
    (
        "lab-image",
        wf("    provider: lab\n    image: ubuntu\n"),
        ["train"],
        ["lab provider", "image"],
    ),
    (
        "notebook-version-word",
        wf("    provider: notebook\n    version: seven\n"),
        ["train"],
        ["version", "'seven'"],
    ),
    ("tensorboard-no-runs", wf(BASH), ["tensorboard"], ["no runs to show"]),
    (
        "tensorboard-unknown-run",
        wf(BASH),
        ["tensorboard", "ghost-run-1"],
        ["no run 'ghost-run-1'", "dstack ps -a"],
    ),
    ("tensorboard-bad-run", wf(BASH), ["tensorboard", "../x"], ["'../x' is not a run name"]),
]


@pytest.mark.parametrize(
    ("text", "args", "words"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_bad_input_is_one_clear_line_and_writes_nothing(
    tmp_path: Path, dstack_home: Path, text: str, args: list[str], words: list[str]
) -> None:
    repo = make_repo(tmp_path / "repo", {".dstack/workflows.yaml": text, "train.py": ""})
    result = Dstack(dstack_home)("run", *args, cwd=repo)
    assert result.code != 0
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    assert lines[0].startswith("Error: ")
    for word in words:
        assert word in lines[0], (word, lines[0])
    store = dstack_home / "store"
    assert not store.exists() or not any(p.is_file() for p in store.rglob("*"))
