"""A corpus of bad workflow files and bad `dstack run` flags: each gives one clear line."""

from __future__ import annotations

import re
from pathlib import Path
from textwrap import dedent, indent

import pytest

from dstack.errors import SpecError
from dstack.spec.loader import load_workflows
from dstack.spec.models import BashWorkflow
from dstack.spec.overrides import RunOverrides, apply_overrides

MAIN = ".dstack/workflows.yaml"


def one(body: str, name: str = "train") -> str:
    """A file with one workflow called ``name`` whose keys (after name) are ``body``."""
    return f"workflows:\n  - name: {name}\n" + indent(dedent(body).strip() + "\n", "    ")


def at(field: str, name: str = "train") -> str:
    return f"{MAIN}: workflow '{name}': {field}"


PREPARE = "workflows:\n  - name: prepare\n    commands: [echo]\n"

FILE_CASES = [
    # --- the file itself
    (
        "broken-yaml",
        "workflows:\n  - name: a\n    commands: [echo\n",
        [f"{MAIN}, line 3: `commands: [echo`", "never closed"],
    ),
    (
        "bad-indent",
        "workflows:\n  - name: a\n   commands: x\n",
        [f"{MAIN}, line 3: `commands: x` is indented 3 spaces", "indent it 4 spaces"],
    ),
    (
        "duplicate-key",
        one("commands: [a]\ncommands: [b]"),
        [f"{MAIN}, line 4, column 5: invalid YAML: duplicate key 'commands'"],
    ),
    ("empty-file", "", [MAIN, "got an empty file"]),
    ("top-level-list", "- name: a\n", [MAIN, "expected a mapping with a `workflows:` list"]),
    ("no-workflows-key", "other: 1\n", [MAIN, "unknown top-level key 'other'"]),
    ("workflows-typo", "workflow:\n  - name: a\n", [MAIN, "did you mean 'workflows'?"]),
    (
        "workflows-not-list",
        "workflows:\n  name: a\n",
        [f"{MAIN}, line 2: `name: a`", "each workflow starts with `- `"],
    ),
    ("workflows-null", "workflows:\n", [f"{MAIN}: workflows: expected a list"]),
    ("entry-not-mapping", "workflows:\n  - train\n", [f"{MAIN}: workflow #1: expected a mapping"]),
    ("no-name", "workflows:\n  - commands: [a]\n", [f"{MAIN}: workflow #1: missing", "'name'"]),
    ("bad-name", one("commands: [a]", name="'my train'"), [at("name", "my train"), "not a name"]),
    (
        "duplicate-name",
        one("commands: [a]") + "  - name: train\n    commands: [b]\n",
        [MAIN, "'train' is defined twice"],
    ),
    # --- keys
    (
        "typo-commands",
        one("comands: [a]"),
        [at("unknown key 'comands'"), "did you mean 'commands'?"],
    ),
    (
        "typo-nested",
        one("commands: [a]\nresources: {memroy: 1GB}"),
        [at("resources: unknown key 'memroy'"), "did you mean 'memory'?"],
    ),
    (
        "key-of-other-provider",
        one("commands: [a]\nimage: ubuntu"),
        [at("unknown key 'image'"), "bash provider", "docker provider"],
    ),
    ("alias-twice", one("commands: [a]\nsetup: [x]\nbefore_run: [y]"), [at(""), "same key"]),
    (
        "typo-provider",
        one("provider: bsh\ncommands: [a]"),
        [at("provider: unknown provider 'bsh'"), "did you mean 'bash'?"],
    ),
    (
        "unknown-provider",
        one("provider: kubernetes"),
        [at("provider"), "available: bash, code, docker, lab, notebook, python, tensorboard"],
    ),
    # --- bash
    ("bash-no-commands", one("python: '3.10'"), [at("missing required key 'commands'")]),
    ("bash-empty-commands", one("commands: []"), [at("commands: empty"), "at least one command"]),
    ("bash-blank-commands", one("commands: '  '"), [at("commands: empty")]),
    ("commands-number", one("commands: 42"), [at("commands: expected a list of strings")]),
    ("command-is-mapping", one("commands:\n  - echo a: b"), [at("commands: item 1 is a mapping")]),
    (
        "help-not-string",
        one("help: [a]\ncommands: [a]"),
        [at("help: input should be a valid string")],
    ),
    (
        "unknown-expression",
        one("commands: ['echo ${{ run.nme }}']"),
        [at("commands: unknown expression"), "did you mean 'run.name'?"],
    ),
    # --- resources
    (
        "memory-unit",
        one("commands: [a]\nresources: {memory: 16XB}"),
        [at("resources.memory: '16XB' is not a size like 512MB, 16GB or 1TB")],
    ),
    (
        "memory-negative",
        one("commands: [a]\nresources: {memory: -1GB}"),
        [at("resources.memory"), "'-1GB'"],
    ),
    (
        "memory-zero",
        one("commands: [a]\nresources: {memory: 0}"),
        [at("resources.memory"), "0 is not"],
    ),
    (
        "shm-size",
        one("commands: [a]\nresources: {shm_size: lots}"),
        [at("resources.shm_size"), "'lots'"],
    ),
    (
        "cpu-zero",
        one("commands: [a]\nresources: {cpu: 0}"),
        [at("resources.cpu: 0 is not a positive")],
    ),
    (
        "gpu-negative",
        one("commands: [a]\nresources: {gpu: -1}"),
        [at("resources.gpu.count: -1 is not")],
    ),
    (
        "gpu-fraction",
        one("commands: [a]\nresources: {gpu: 1.5}"),
        [at("resources.gpu.count: 1.5 is not")],
    ),
    (
        "gpu-bool",
        one("commands: [a]\nresources: {gpu: true}"),
        [at("resources.gpu.count: True is not")],
    ),
    (
        "gpu-name-only",
        one("commands: [a]\nresources: {gpu: A100}"),
        [at("resources.gpu: 'A100' is not")],
    ),
    (
        "gpu-typo",
        one("commands: [a]\nresources: {gpu: {count: 1, nam: A100}}"),
        [at("resources.gpu: unknown key 'nam'"), "did you mean 'name'?"],
    ),
    (
        "gpu-memory",
        one("commands: [a]\nresources: {gpu: {memory: 40XB}}"),
        [at("resources.gpu.memory")],
    ),
    (
        "interruptible",
        one("commands: [a]\nresources: {interruptible: maybe}"),
        [at("resources.interruptible: input should be a valid boolean")],
    ),
    # --- paths, env, ports
    (
        "artifact-escapes",
        one("commands: [a]\nartifacts: [ok, ../x]"),
        [at("artifacts[1].path: '../x' escapes")],
    ),
    (
        "artifact-typo",
        one("commands: [a]\nartifacts: [{path: x, mont: true}]"),
        [at("artifacts[0]: unknown key 'mont'"), "did you mean 'mount'?"],
    ),
    (
        "working-dir-escapes",
        one("commands: [a]\nworking_dir: src/../.."),
        [at("working_dir: 'src/../..' escapes the repository")],
    ),
    (
        "working-dir-absolute",
        one("commands: [a]\nworking_dir: /src"),
        [at("working_dir: '/src' is absolute")],
    ),
    (
        "requirements-escapes",
        one("commands: [a]\nworking_dir: src\nrequirements: ../../r.txt"),
        [at("requirements: '../../r.txt'"), "escapes the repository"],
    ),
    (
        "env-bad-name",
        one("commands: [a]\nenv: [1X=2]"),
        [at("env: '1X' is not a valid variable name")],
    ),
    ("env-mapping-item", one("commands: [a]\nenv: [{A: b}]"), [at("env: {'A': 'b'} is not K=V")]),
    (
        "env-string",
        one("commands: [a]\nenv: A=1"),
        [at("env: expected a list of K=V strings or a mapping")],
    ),
    ("ports-zero", one("commands: [a]\nports: 0"), [at("ports: 0 is not a positive whole number")]),
    (
        "ports-negative",
        one("commands: [a]\nports: -1"),
        [at("ports: -1 is not a positive whole number")],
    ),
    (
        "ports-text",
        one("commands: [a]\nports: abc"),
        [at("ports: 'abc' is not a positive whole number")],
    ),
    # --- deps
    ("dep-empty-tag", one("commands: [a]\ndeps:\n  - tag:"), [at("deps[0]: `tag:` needs a name")]),
    (
        "dep-typo",
        one("commands: [a]\ndeps:\n  - tga: x"),
        [at("deps[0]: unknown dep key 'tga'"), "did you mean 'tag'?"],
    ),
    (
        "dep-two-keys",
        one("commands: [a]\ndeps:\n  - {tag: x, workflow: y}"),
        [at("deps[0]"), "is not a dep"],
    ),
    (
        "dep-parts",
        one("commands: [a]\ndeps: [a/b]"),
        [at("deps[0]: 'a/b' is not a dep"), "owner/repo/TAG"],
    ),
    (
        "dep-bad-name",
        one("commands: [a]\ndeps: [':my tag']"),
        [at("deps[0].name: 'my tag' is not a name")],
    ),
    (
        "dep-unknown-workflow",
        PREPARE + "  - name: train\n    commands: [a]\n    deps: [prepar]\n",
        [at("deps[0]: no workflow 'prepar'"), "did you mean 'prepare'?"],
    ),
    # --- python versions and the python / docker providers
    (
        "python-banana",
        one("commands: [a]\npython: banana"),
        [at("python: 'banana' is not a Python version")],
    ),
    (
        "python-major-only",
        one("commands: [a]\npython: 3"),
        [at("python: '3' is not a Python version")],
    ),
    ("python-no-file", one("provider: python\nargs: [a]"), [at("missing required key 'file'")]),
    (
        "python-args-mapping",
        one("provider: python\nfile: a.py\nargs: {a: 1}"),
        [at("args: expected a string or a list")],
    ),
    (
        "python-file-absolute",
        one("provider: python\nscript: /a.py"),
        [at("script: '/a.py' is absolute")],
    ),
    (
        "python-version-bad",
        one("provider: python\nfile: a.py\nversion: 3.x"),
        [at("version: '3.x' is not a Python version")],
    ),
    (
        "python-has-no-commands",
        one("provider: python\nfile: a.py\ncommands: [a]"),
        [at("unknown key 'commands'"), "python provider"],
    ),
    (
        "docker-no-image",
        one("provider: docker\ncommands: [a]"),
        [at("missing required key 'image'")],
    ),
    (
        "docker-bad-image",
        one("provider: docker\nimage: 'ubuntu 22.04'"),
        [at("image: 'ubuntu 22.04' is not an image")],
    ),
]


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def assert_one_line(error: SpecError, fragments: list[str]) -> None:
    message = str(error)
    assert "\n" not in message, message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"


@pytest.mark.parametrize(
    ("text", "fragments"), [c[1:] for c in FILE_CASES], ids=[c[0] for c in FILE_CASES]
)
def test_bad_file(tmp_path: Path, text: str, fragments: list[str]) -> None:
    write(tmp_path, {MAIN: text})
    with pytest.raises(SpecError) as info:
        load_workflows(tmp_path)
    assert_one_line(info.value, fragments)


def test_broken_yaml_names_the_line(tmp_path: Path) -> None:
    write(tmp_path, {MAIN: "workflows:\n  - name: a\n    commands: [echo\n"})
    with pytest.raises(SpecError, match=re.escape(MAIN) + r", line 3: `commands: \[echo`"):
        load_workflows(tmp_path)


def test_no_workflow_files(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as info:
        load_workflows(tmp_path)
    assert_one_line(info.value, [f"no .dstack/workflows.yaml in {tmp_path}", "create one"])


def test_error_in_an_extra_file_names_that_file(tmp_path: Path) -> None:
    write(tmp_path, {MAIN: PREPARE, ".dstack/workflows/b.yml": one("comands: [a]")})
    with pytest.raises(SpecError) as info:
        load_workflows(tmp_path)
    assert_one_line(
        info.value, [".dstack/workflows/b.yml: workflow 'train': unknown key 'comands'"]
    )


def test_duplicate_names_across_files(tmp_path: Path) -> None:
    write(tmp_path, {MAIN: PREPARE, ".dstack/workflows/more.yaml": PREPARE})
    with pytest.raises(SpecError) as info:
        load_workflows(tmp_path)
    assert_one_line(
        info.value, [".dstack/workflows/more.yaml", "'prepare' is defined twice", f"also in {MAIN}"]
    )


FLAG_CASES = [
    (
        "memory",
        RunOverrides(memory="16XB"),
        "--memory: '16XB' is not a size like 512MB, 16GB or 1TB",
    ),
    ("memory-negative", RunOverrides(memory="-1GB"), "--memory: '-1GB' is not a size"),
    ("shm-size", RunOverrides(shm_size="big"), "--shm-size: 'big' is not a size"),
    ("gpu-memory", RunOverrides(gpu_memory="x"), "--gpu-memory: 'x' is not a size"),
    ("gpu-negative", RunOverrides(gpu=-1), "--gpu: -1 is not a whole number"),
    ("cpu-zero", RunOverrides(cpu=0), "--cpu: 0 is not a positive whole number"),
    ("ports-zero", RunOverrides(ports=0), "-p/--ports: 0 is not a positive whole number"),
    ("env-bad-name", RunOverrides(env=["A-B=1"]), "-e/--env: 'A-B' is not a valid variable name"),
    ("env-expression", RunOverrides(env=["A=${{ run.nam }}"]), "-e/--env: unknown expression"),
    (
        "artifact-escapes",
        RunOverrides(artifacts=["../x"]),
        "-a/--artifact: '../x' escapes the working directory",
    ),
    ("dep-parts", RunOverrides(deps=["a/b"]), "--dep: 'a/b' is not a dep"),
    ("dep-empty", RunOverrides(deps=["tag:"]), "--dep: `tag:` needs a name"),
    (
        "working-dir",
        RunOverrides(working_dir="../x"),
        "-w/--working-dir: '../x' escapes the repository",
    ),
    (
        "working-dir-requirements",
        RunOverrides(working_dir="a"),
        "-w/--working-dir: requirements: '../../r.txt'",
    ),
]


@pytest.mark.parametrize(
    ("overrides", "expected"), [c[1:] for c in FLAG_CASES], ids=[c[0] for c in FLAG_CASES]
)
def test_bad_flag(overrides: RunOverrides, expected: str) -> None:
    workflow = BashWorkflow.model_validate(
        {"name": "train", "commands": ["a"], "working_dir": "src/x", "requirements": "../../r.txt"}
    )
    with pytest.raises(SpecError) as info:
        apply_overrides(workflow, overrides)
    assert_one_line(info.value, [expected])
