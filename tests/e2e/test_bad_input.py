"""Bad input through the CLI: each case exits non-zero with one clear line, writes nothing."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import make_repo
from tests.e2e.cli import Dstack
from tests.e2e.conftest import Store


def wf(body: str) -> str:
    return "workflows:\n  - name: train\n" + body


def bare_machine(tmp_path: Path) -> dict[str, str]:
    """The environment of a machine with no GPU and no Docker engine, whatever this host has:
    ``nvidia-smi`` is a test double that sees no GPU (first on PATH, as the real one would
    be), and DOCKER_HOST names a socket nobody listens on. The real detection is what runs."""
    bin_dir = tmp_path / "bare-machine-bin"
    bin_dir.mkdir(exist_ok=True)
    smi = bin_dir / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho 'No devices were found' >&2\nexit 6\n")
    smi.chmod(0o755)
    return {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "DOCKER_HOST": f"unix://{tmp_path / 'no-docker-engine.sock'}",
    }


BASH = "    provider: bash\n"
OK_COMMANDS = "    commands:\n      - echo hi\n"

# (id, workflows.yaml text or None for no file, extra CLI args, words the one line must contain)
CASES: list[tuple[str, str | None, list[str], list[str]]] = [
    ("broken-yaml", "workflows:\n  - name: [train\n", [], ["workflows.yaml", "line"]),
    ("tab-indent", "workflows:\n\t- name: train\n", [], ["workflows.yaml"]),
    ("top-level-list", "- name: train\n", [], ["workflows.yaml"]),
    ("workflows-not-list", "workflows: train\n", [], ["workflows.yaml", "workflows"]),
    ("empty-file", "", [], ["workflows.yaml"]),
    ("no-name", "workflows:\n  - provider: bash\n    commands: [echo]\n", [], ["name"]),
    (
        "duplicate-names",
        wf(BASH + OK_COMMANDS) + "  - name: train\n" + BASH + OK_COMMANDS,
        [],
        ["train"],
    ),
    ("misspelt-key", wf(BASH + "    comands:\n      - echo hi\n"), [], ["comands", "commands"]),
    ("unknown-key", wf(BASH + OK_COMMANDS + "    colour: blue\n"), [], ["colour"]),
    ("commands-int", wf(BASH + "    commands: 5\n"), [], ["commands"]),
    ("unknown-provider", wf("    provider: bsh\n" + OK_COMMANDS), [], ["bsh", "bash"]),
    ("unknown-workflow", wf(BASH + OK_COMMANDS), ["trian"], ["trian", "train"]),
    (
        "bad-memory-unit",
        wf(BASH + OK_COMMANDS + "    resources:\n      memory: 16XB\n"),
        [],
        ["memory", "16XB"],
    ),
    (
        "negative-memory",
        wf(BASH + OK_COMMANDS + "    resources:\n      memory: -1GB\n"),
        [],
        ["memory"],
    ),
    ("negative-gpu", wf(BASH + OK_COMMANDS + "    resources:\n      gpu: -1\n"), [], ["gpu"]),
    ("gpu-word", wf(BASH + OK_COMMANDS + "    resources:\n      gpu: two\n"), [], ["gpu"]),
    ("resources-typo", wf(BASH + OK_COMMANDS + "    resources:\n      gpus: 1\n"), [], ["gpus"]),
    ("cpu-word", wf(BASH + OK_COMMANDS + "    resources:\n      cpu: many\n"), [], ["cpu"]),
    (
        "interruptible-word",
        wf(BASH + OK_COMMANDS + "    resources:\n      interruptible: maybe\n"),
        [],
        ["interruptible"],
    ),
    (
        "artifact-escapes",
        wf(BASH + OK_COMMANDS + "    artifacts:\n      - ../out\n"),
        [],
        ["artifacts", "../out"],
    ),
    (
        "artifact-unknown-key",
        wf(BASH + OK_COMMANDS + "    artifacts:\n      - path: out\n        mnt: true\n"),
        [],
        ["mnt"],
    ),
    (
        "working-dir-escapes",
        wf(BASH + OK_COMMANDS + "    working_dir: ../..\n"),
        [],
        ["working_dir"],
    ),
    ("env-bad-name", wf(BASH + OK_COMMANDS + "    env:\n      - 1BAD=x\n"), [], ["env", "1BAD"]),
    ("ports-zero", wf(BASH + OK_COMMANDS + "    ports: 0\n"), [], ["ports"]),
    ("ports-word", wf(BASH + OK_COMMANDS + "    ports: abc\n"), [], ["ports"]),
    ("dep-malformed", wf(BASH + OK_COMMANDS + "    deps:\n      - a/b\n"), [], ["deps", "a/b"]),
    ("dep-empty-tag", wf(BASH + OK_COMMANDS + "    deps:\n      - tag: ''\n"), [], ["deps"]),
    ("python-banana", wf(BASH + OK_COMMANDS + "    python: banana\n"), [], ["python", "banana"]),
    ("python-missing", wf(BASH + OK_COMMANDS + "    python: 3.4\n"), [], ["3.4", "not installed"]),
    ("bash-no-commands", wf(BASH), [], ["commands"]),
    ("python-no-file", wf("    provider: python\n"), [], ["file"]),
    ("docker-no-image", wf("    provider: docker\n" + OK_COMMANDS), [], ["image"]),
    (
        "docker-no-engine",
        wf("    provider: docker\n    image: ubuntu:22.04\n" + OK_COMMANDS),
        [],
        ["Docker"],
    ),
    (
        "gpu-on-cpu-machine",
        wf(BASH + OK_COMMANDS + "    resources:\n      gpu: 1\n"),
        [],
        ["gpu", "GPU"],
    ),
    ("flag-bad-memory", wf(BASH + OK_COMMANDS), ["--memory", "12XB"], ["--memory", "12XB"]),
    ("flag-ports-word", wf(BASH + OK_COMMANDS), ["-p", "abc"], ["--ports", "integer"]),
    ("flag-ports-zero", wf(BASH + OK_COMMANDS), ["-p", "0"], ["ports"]),
    ("no-workflows-file", None, [], ["workflows.yaml"]),
]


@pytest.mark.parametrize(
    ("text", "args", "words"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_bad_input_is_one_clear_line_and_writes_nothing(
    tmp_path: Path, dstack_home: Path, text: str | None, args: list[str], words: list[str]
) -> None:
    files = {"README.md": "x\n"} if text is None else {".dstack/workflows.yaml": text}
    repo = make_repo(tmp_path / "repo", files)
    cli = Dstack(dstack_home, bare_machine(tmp_path))
    workflow_args = args if args and not args[0].startswith("-") else ["train", *args]
    if args and args[0].startswith("-"):
        workflow_args = [*args, "train"]
    result = cli("run", *workflow_args, cwd=repo)
    assert result.code != 0
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    assert lines[0].startswith("Error: ")
    for word in words:
        assert word in lines[0], (word, lines[0])
    store = dstack_home / "store"
    assert not store.exists() or not any(p.is_file() for p in store.rglob("*"))


@pytest.mark.parametrize("store", ["s3"], indirect=True)
@pytest.mark.parametrize("case", ["misspelt-key", "unknown-workflow", "gpu-on-cpu-machine"])
def test_bad_input_writes_nothing_to_a_bucket(
    tmp_path: Path, dstack_home: Path, store: Store, case: str
) -> None:
    _, text, args, words = next(c for c in CASES if c[0] == case)
    assert text is not None
    repo = make_repo(tmp_path / "repo", {".dstack/workflows.yaml": text})
    workflow_args = [*args, "train"] if args and args[0].startswith("-") else args or ["train"]
    result = Dstack(dstack_home, {**store.env, **bare_machine(tmp_path)})(
        "run", *workflow_args, cwd=repo
    )
    assert result.code != 0 and len(result.err.strip().splitlines()) == 1, result.err
    assert all(word in result.err for word in words)
    assert list(store.storage().list_objects("")) == []
