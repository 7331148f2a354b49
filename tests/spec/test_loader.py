"""Reading good workflow files: every input form, the merge of files, the schema, overrides."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import TypeAdapter

from dstack.errors import SpecError
from dstack.spec import RunOverrides, apply_overrides, get_workflow, json_schema, load_workflows
from dstack.spec.models import ArtifactSpec, BashWorkflow, DepRef, DockerWorkflow, PythonWorkflow
from dstack.spec.workflows import Workflow

MAIN = ".dstack/workflows.yaml"

FULL = """\
workflows:
  - name: train
    provider: bash
    help: "Train the model"
    deps:
      - tag: some_tag
      - workflow: prepare
      - ":some_tag"
      - "prepare"
      - "acme/other-repo/some_tag"
    python: 3.10
    env:
      - PYTHONPATH=mnist
    commands:
      - pip install -r requirements.txt
      - python src/train.py
    setup: [nvidia-smi]
    requirements: requirements.txt
    artifacts:
      - path: checkpoint
    working_dir: src
    ports: 1
    resources:
      cpu: 4
      memory: 16GB
      gpu: 1
      shm_size: 8GB
      interruptible: true
      local: false
  - name: prepare
    commands: python prepare.py
"""


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def load_one(tmp_path: Path, body: str) -> Workflow:
    write(tmp_path, {MAIN: "workflows:\n  - name: w\n" + body})
    return load_workflows(tmp_path)["w"]


def test_full_example(tmp_path: Path) -> None:
    workflows = load_workflows(write(tmp_path, {MAIN: FULL}))
    assert list(workflows) == ["train", "prepare"]
    train = workflows["train"]
    assert isinstance(train, BashWorkflow)
    assert train.source == MAIN
    assert train.help == "Train the model"
    assert train.python == "3.10"
    assert train.env == {"PYTHONPATH": "mnist"}
    assert train.commands == ["pip install -r requirements.txt", "python src/train.py"]
    assert train.setup == ["nvidia-smi"]
    assert train.requirements == "requirements.txt"
    assert train.artifacts == [ArtifactSpec(path="checkpoint", mount=False)]
    assert train.working_dir == "src"
    assert train.ports == 1
    assert train.deps == [
        DepRef(kind="tag", name="some_tag"),
        DepRef(kind="workflow", name="prepare"),
        DepRef(kind="tag", name="some_tag"),
        DepRef(kind="workflow", name="prepare"),
        DepRef(kind="tag", name="some_tag", repo="acme/other-repo"),
    ]
    resources = train.resources.to_resources()
    assert (resources.cpu, resources.memory_mib, resources.gpu_count) == (4, 16384, 1)
    assert (resources.shm_size_mib, resources.interruptible, resources.local) == (8192, True, False)
    prepare = workflows["prepare"]
    assert prepare.provider == "bash"  # the default
    assert prepare.working_dir == "."


@pytest.mark.parametrize(
    ("written", "version"),
    [("3.10", "3.10"), ("3.9", "3.9"), ("'3.10'", "3.10"), ("3.11.4", "3.11.4"), ("3.12", "3.12")],
)
def test_python_version_keeps_its_text(tmp_path: Path, written: str, version: str) -> None:
    workflow = load_one(tmp_path, f"    commands: [a]\n    python: {written}\n")
    assert isinstance(workflow, BashWorkflow)
    assert workflow.python == version


def test_env_mapping_keeps_the_text_of_scalars(tmp_path: Path) -> None:
    body = "    commands: [a]\n    env: {A: 3.10, B: 2, C: true, D: , E: x=y}\n"
    assert load_one(tmp_path, body).env == {"A": "3.10", "B": "2", "C": "true", "D": "", "E": "x=y"}


def test_env_list_value_may_contain_equals(tmp_path: Path) -> None:
    body = "    commands: [a]\n    env: [A=b=c, EMPTY=]\n"
    assert load_one(tmp_path, body).env == {"A": "b=c", "EMPTY": ""}


def test_multiline_commands_are_one_script(tmp_path: Path) -> None:
    body = "    commands: |\n      for i in 1 2; do\n        echo $i\n      done\n"
    workflow = load_one(tmp_path, body)
    assert isinstance(workflow, BashWorkflow)
    assert workflow.commands == ["for i in 1 2; do\n  echo $i\ndone"]


def test_before_run_is_setup(tmp_path: Path) -> None:
    assert load_one(tmp_path, "    commands: [a]\n    before_run: [b]\n").setup == ["b"]


def test_artifacts_string_and_mapping_forms_are_normalised(tmp_path: Path) -> None:
    body = "    commands: [a]\n    artifacts: [./out/, {path: 'ckpt//x', mount: true}, .]\n"
    assert load_one(tmp_path, body).artifacts == [
        ArtifactSpec(path="out"),
        ArtifactSpec(path="ckpt/x", mount=True),
        ArtifactSpec(path="."),
    ]


@pytest.mark.parametrize(
    ("written", "dep"),
    [
        ("{tag: t}", DepRef(kind="tag", name="t")),
        ("{workflow: w}", DepRef(kind="workflow", name="w")),
        ("':t'", DepRef(kind="tag", name="t")),
        ("w", DepRef(kind="workflow", name="w")),
        ("tag:t", DepRef(kind="tag", name="t")),
        ("acme/other/t", DepRef(kind="tag", name="t", repo="acme/other")),
        ("acme/other/:t", DepRef(kind="tag", name="t", repo="acme/other")),
        ("{tag: acme/other/t}", DepRef(kind="tag", name="t", repo="acme/other")),
        ("{workflow: acme/other/w}", DepRef(kind="workflow", name="w", repo="acme/other")),
    ],
)
def test_dep_forms(tmp_path: Path, written: str, dep: DepRef) -> None:
    workflow = load_one(tmp_path, f"    commands: [a]\n    deps: [{written}]\n")
    assert workflow.deps == [dep]


def test_gpu_and_sizes(tmp_path: Path) -> None:
    body = "    commands: [a]\n    resources: {memory: 1024, gpu: {name: A100, memory: 40GB}}\n"
    resources = load_one(tmp_path, body).resources.to_resources()
    assert resources.memory_mib == 1024  # a bare number is MiB
    assert (resources.gpu_count, resources.gpu_name, resources.gpu_memory_mib) == (1, "A100", 40960)


def test_python_provider(tmp_path: Path) -> None:
    body = "    provider: python\n    script: train.py\n    args: --epochs 3\n    version: 3.10\n"
    workflow = load_one(tmp_path, body)
    assert isinstance(workflow, PythonWorkflow)
    assert (workflow.file, workflow.args, workflow.python) == ("train.py", "--epochs 3", "3.10")


def test_python_file_may_climb_out_of_working_dir(tmp_path: Path) -> None:
    body = "    provider: python\n    file: ../main.py\n    working_dir: src\n    args: [1, x]\n"
    workflow = load_one(tmp_path, body)
    assert isinstance(workflow, PythonWorkflow)
    assert (workflow.file, workflow.args) == ("../main.py", ["1", "x"])


def test_docker_provider_commands_are_optional(tmp_path: Path) -> None:
    workflow = load_one(tmp_path, "    provider: docker\n    image: ubuntu:22.04\n")
    assert isinstance(workflow, DockerWorkflow)
    assert (workflow.image, workflow.commands) == ("ubuntu:22.04", [])


def test_yaml_anchors_and_merge_keys(tmp_path: Path) -> None:
    text = (
        "workflows:\n  - &base\n    name: a\n    commands: [x]\n    env: [A=1]\n"
        "  - <<: *base\n    name: b\n"
    )
    workflows = load_workflows(write(tmp_path, {MAIN: text}))
    assert workflows["b"].env == {"A": "1"}


def test_files_are_merged_main_first_then_folder_by_name(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            MAIN: "workflows:\n  - name: a\n    commands: [x]\n",
            ".dstack/workflows/z.yml": "workflows:\n  - name: z\n    commands: [x]\n",
            ".dstack/workflows/b.yaml": "workflows:\n  - name: b\n    commands: [x]\n",
            ".dstack/workflows/notes.txt": "not yaml",
        },
    )
    workflows = load_workflows(tmp_path)
    assert list(workflows) == ["a", "b", "z"]
    assert workflows["z"].source == ".dstack/workflows/z.yml"


def test_main_file_is_optional_when_the_folder_has_files(tmp_path: Path) -> None:
    write(tmp_path, {".dstack/workflows/x.yaml": "workflows:\n  - name: x\n    commands: [a]\n"})
    assert list(load_workflows(tmp_path)) == ["x"]


def test_empty_workflow_list_is_fine(tmp_path: Path) -> None:
    assert load_workflows(write(tmp_path, {MAIN: "workflows: []\n"})) == {}


def test_get_workflow(tmp_path: Path) -> None:
    write(tmp_path, {MAIN: FULL})
    assert get_workflow(tmp_path, "prepare").name == "prepare"
    with pytest.raises(SpecError) as info:
        get_workflow(tmp_path, "trian")
    assert str(info.value) == (
        f"no workflow 'trian' in {MAIN}; did you mean 'train'? (available: prepare, train)"
    )


def test_workflow_type_adapter_defaults_to_bash() -> None:
    adapter: TypeAdapter[Workflow] = TypeAdapter(Workflow)
    assert isinstance(adapter.validate_python({"name": "a", "commands": ["x"]}), BashWorkflow)
    docker = adapter.validate_python({"name": "a", "provider": "docker", "image": "x"})
    assert isinstance(docker, DockerWorkflow)


def test_json_schema_documents_the_file() -> None:
    schema = json_schema()
    json.dumps(schema)  # serialisable
    assert schema["$schema"].startswith("https://json-schema.org/")
    variants = schema["properties"]["workflows"]["items"]["oneOf"]
    assert len(variants) == 8  # bash, python, docker, lab, notebook, code, torchrun, tensorboard
    bash = schema["$defs"]["BashWorkflow"]
    assert bash["additionalProperties"] is False
    assert "source" not in bash["properties"]
    assert "before_run" in bash["properties"]
    assert "script" in schema["$defs"]["PythonWorkflow"]["properties"]
    assert bash["required"] == ["name", "commands"]
    for name, prop in bash["properties"].items():
        assert prop.get("description"), name


def test_json_schema_accepts_the_example_and_rejects_a_typo(tmp_path: Path) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    from dstack.spec.loader import read_yaml

    schema = json_schema()
    document = read_yaml(write(tmp_path, {MAIN: FULL}) / MAIN, MAIN)
    jsonschema.validate(json.loads(json.dumps(document)), schema)
    document["workflows"][0]["comands"] = ["x"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(json.loads(json.dumps(document)), schema)


# --------------------------------------------------------------------------------- overrides


def test_overrides(tmp_path: Path) -> None:
    train = load_workflows(write(tmp_path, {MAIN: FULL}))["train"]
    overrides = RunOverrides(
        env=["PYTHONPATH=other", "NEW=1"],
        artifacts=["checkpoint/", "logs"],
        deps=[":fresh"],
        working_dir="./src/sub/",
        interruptible=False,
        local=True,
        cpu=2,
        memory="8GB",
        gpu=2,
        gpu_name="T4",
        gpu_memory="16GB",
        shm_size="1GB",
        ports=3,
    )
    updated = apply_overrides(train, overrides)
    assert updated.source == MAIN
    assert updated.env == {"PYTHONPATH": "other", "NEW": "1"}
    assert [a.path for a in updated.artifacts] == ["checkpoint", "logs"]
    assert updated.deps == [DepRef(kind="tag", name="fresh")]
    assert (updated.working_dir, updated.ports) == ("src/sub", 3)
    resources = updated.resources.to_resources()
    assert resources.model_dump() == {
        "cpu": 2,
        "memory_mib": 8192,
        "gpu_count": 2,
        "gpu_name": "T4",
        "gpu_memory_mib": 16384,
        "shm_size_mib": 1024,
        "interruptible": False,
        "local": True,
    }
    assert train.env == {"PYTHONPATH": "mnist"}  # the original is untouched
    assert train.resources.memory == "16GB"


def test_no_overrides_change_nothing(tmp_path: Path) -> None:
    workflows = load_workflows(write(tmp_path, {MAIN: FULL}))
    for workflow in workflows.values():
        assert apply_overrides(workflow, RunOverrides()) == workflow


def test_gpu_name_alone_asks_for_one_gpu(tmp_path: Path) -> None:
    workflow = load_one(tmp_path, "    commands: [a]\n")
    updated = apply_overrides(workflow, RunOverrides(gpu_name="A100"))
    assert updated.resources.to_resources().gpu_count == 1


def test_overrides_keep_the_provider(tmp_path: Path) -> None:
    body = "    provider: python\n    script: t.py\n    version: 3.10\n"
    updated = apply_overrides(load_one(tmp_path, body), RunOverrides(env=["A=1"]))
    assert isinstance(updated, PythonWorkflow)
    assert (updated.file, updated.python, updated.env) == ("t.py", "3.10", {"A": "1"})
