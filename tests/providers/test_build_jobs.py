"""Workflows → job specs: the fields each provider fills, substitutions, quoting, overrides."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
from pydantic import TypeAdapter

from dstack.errors import SpecError
from dstack.models import Artifact, JobSpec, RepoSnapshot, Resources
from dstack.providers import PROVIDERS, RunInput, build_jobs
from dstack.providers.base import Provider
from dstack.runner.prepare import write_script
from dstack.spec.overrides import RunOverrides, apply_overrides
from dstack.spec.workflows import Workflow

REPO = RepoSnapshot(repo_id="github.com/acme/mnist", code_key="codes/x.tar.gz")
ADAPTER: TypeAdapter[Workflow] = TypeAdapter(Workflow)


def workflow(**fields: Any) -> Workflow:
    return ADAPTER.validate_python({"name": "train", **fields})


def job(wf: Workflow, *args: str, run_name: str = "wise-owl-1") -> JobSpec:
    jobs = build_jobs(RunInput(wf, run_name, REPO, list(args), 100.0))
    assert len(jobs) == 1
    return jobs[0]


def test_registry() -> None:
    assert sorted(PROVIDERS) == [
        "bash", "code", "docker", "lab", "notebook", "python", "tensorboard", "torchrun"
    ]  # fmt: skip
    assert all(isinstance(p, Provider) and p.name == key for key, p in PROVIDERS.items())


def test_bash_job_spec() -> None:
    wf = workflow(
        provider="bash",
        python=3.9,
        env=["PYTHONPATH=mnist", "RUN=${{ run.name }}"],
        setup=["echo setup ${{ run.name }}"],
        commands=["pip list", "python src/train.py ${{ run.args }}"],
        requirements="requirements.txt",
        artifacts=["checkpoint/", {"path": "logs", "mount": True}],
        working_dir="./src",
        ports=2,
        resources={"cpu": 4, "memory": "16GB", "gpu": {"count": 1, "name": "A100"}, "shm_size": "8GB",
                   "interruptible": True},
    )  # fmt: skip
    assert job(wf, "--lr", "0.1") == JobSpec(
        run_name="wise-owl-1",
        job_index=0,
        workflow="train",
        provider="bash",
        repo=REPO,
        commands=["pip list", 'python src/train.py "${DSTACK_RUN_ARGS[@]}"'],
        setup=["echo setup wise-owl-1"],
        args=["--lr", "0.1"],
        env={"PYTHONPATH": "mnist", "RUN": "wise-owl-1"},
        working_dir="src",
        python="3.9",
        requirements="requirements.txt",
        image=None,
        artifacts=[Artifact(path="checkpoint"), Artifact(path="logs", mount=True)],
        ports=2,
        resources=Resources(cpu=4, memory_mib=16384, gpu_count=1, gpu_name="A100",
                            shm_size_mib=8192, interruptible=True),
        spot_policy="spot",  # what `interruptible: true` means
        deps=[],
        submitted_at=100.0,
    )  # fmt: skip


def test_bash_defaults() -> None:
    spec = job(workflow(commands="echo hi"))
    assert spec.commands == ["echo hi"]
    assert (spec.working_dir, spec.python, spec.requirements, spec.ports) == (".", None, None, 0)
    assert spec.resources == Resources()
    assert (spec.setup, spec.env, spec.artifacts, spec.deps) == ([], {}, [], [])


def test_bash_ignores_args_without_the_placeholder() -> None:
    assert job(workflow(commands=["python train.py"]), "--x", "1").commands == ["python train.py"]


@pytest.mark.parametrize("args", [[], ["a b"], ["it's", "~/x", "x;y"], ["--flag=1", "plain"]])
def test_run_args_are_data_not_text(args: list[str]) -> None:
    spec = job(workflow(commands=["run ${{ run.args }}"]), *args)
    assert spec.commands == ['run "${DSTACK_RUN_ARGS[@]}"'] and spec.args == args


def test_placeholder_spacing_variants() -> None:
    wf = workflow(commands=["echo ${{run.name}} ${{  run.args  }}"])
    assert job(wf, "x").commands == ['echo wise-owl-1 "${DSTACK_RUN_ARGS[@]}"']


def test_working_dir_is_not_substituted() -> None:
    assert (
        job(workflow(commands=["a"], working_dir="${{ run.name }}")).working_dir
        == "${{ run.name }}"
    )


def test_build_is_pure_and_repeatable() -> None:
    wf = workflow(commands=["echo ${{ run.name }} ${{ run.args }}"], env={"N": "${{ run.name }}"})
    draft = job(wf, "a", run_name="validating-run-0")
    first, second = job(wf, "a"), job(wf, "a")
    assert first == second
    assert draft.commands == ['echo validating-run-0 "${DSTACK_RUN_ARGS[@]}"']
    assert draft.model_copy(update={"run_name": first.run_name}) != first  # substituted by name
    assert first.commands == ['echo wise-owl-1 "${DSTACK_RUN_ARGS[@]}"']
    assert first.env == {"N": "wise-owl-1"}


# ------------------------------------------------------------------------------------ python


def python_job(*args: str, **fields: Any) -> JobSpec:
    return job(workflow(provider="python", **fields), *args)


def test_python_job_spec() -> None:
    spec = python_job("--lr", "0.1", file="train.py", args=["--epochs", "3"], version="3.10",
                      requirements="req.txt", setup=["nvidia-smi"])  # fmt: skip
    assert spec.commands == ['python train.py --epochs 3 "${DSTACK_RUN_ARGS[@]}"']
    assert (spec.provider, spec.python, spec.requirements) == ("python", "3.10", "req.txt")
    assert spec.setup == ["nvidia-smi"]
    assert spec.image is None


def test_python_list_args_are_quoted_one_by_one() -> None:
    spec = python_job("two words", file="my script.py", args=["--name", "a b", "${{ run.name }}"])
    assert spec.commands == [
        "python 'my script.py' --name 'a b' wise-owl-1 \"${DSTACK_RUN_ARGS[@]}\""
    ]


def test_python_string_args_are_shell_text() -> None:
    spec = python_job("x y", file="t.py", args='--msg "hello world" ${{ run.args }} --end')
    assert spec.commands == ['python t.py --msg "hello world" "${DSTACK_RUN_ARGS[@]}" --end']


def test_python_run_args_item_expands_in_place() -> None:
    spec = python_job("a", "b c", script="t.py", args=["--first", "${{ run.args }}", "--last"])
    assert spec.commands == ['python t.py --first "${DSTACK_RUN_ARGS[@]}" --last']


def test_python_without_args() -> None:
    assert python_job(file="src/t.py").commands == ["python src/t.py"]


# ------------------------------------------------------------------------------------ docker


def test_docker_job_spec() -> None:
    spec = job(
        workflow(provider="docker", image="ubuntu:22.04", commands=["echo ${{ run.args }}"],
                 setup=["apt-get update"], env={"A": 1}, artifacts=["out"], ports=1),
        "hi there",
    )  # fmt: skip
    assert (spec.provider, spec.image) == ("docker", "ubuntu:22.04")
    assert spec.commands == ['echo "$@"'] and spec.args == ["hi there"]
    assert (spec.setup, spec.env, spec.ports) == (["apt-get update"], {"A": "1"}, 1)
    assert spec.artifacts == [Artifact(path="out")]
    assert (spec.python, spec.requirements) == (None, None)


def test_docker_without_commands_runs_the_image_default() -> None:
    spec = job(workflow(provider="docker", image="hello-world"), "ignored")
    assert (spec.image, spec.commands) == ("hello-world", [])


# --------------------------------------------------------------------------- other behaviour


def test_a_provider_refuses_another_providers_workflow() -> None:
    with pytest.raises(SpecError, match="uses provider 'bash', not 'docker'"):
        PROVIDERS["docker"].build_jobs(RunInput(workflow(commands=["a"]), "r", REPO, [], 0.0))


def test_overrides_reach_the_job_spec() -> None:
    wf = workflow(commands=["a"], env=["A=1"], resources={"memory": "4GB"})
    overrides = RunOverrides(env=["B=${{ run.name }}"], artifacts=["out"], working_dir="src",
                             memory="16GB", gpu=1, interruptible=True, ports=2)  # fmt: skip
    spec = job(apply_overrides(wf, overrides))
    assert spec.env == {"A": "1", "B": "wise-owl-1"}
    assert (spec.working_dir, spec.ports, spec.artifacts) == ("src", 2, [Artifact(path="out")])
    assert spec.resources == Resources(memory_mib=16384, gpu_count=1, interruptible=True)


# ----------------------------------------------------------------------- quoting, through a shell

TRICKY = ["plain", "two words", "it's", 'say "hi"', "~root", "(id)", "back\\slash", "a;b", ""]


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ("printf '%s\\n' ${{ run.args }}", "\n".join(TRICKY) + "\n"),
        ('printf %s "${{ run.args }}"', " ".join(TRICKY)),
        ("printf %s '${{ run.args }}'", " ".join(TRICKY)),
        ('printf %s "x\\"\'${{ run.name }}\'"', "x\"'wise-owl-1'"),
    ],
    ids=["unquoted", "double-quoted", "single-quoted", "escaped-quote"],
)
def test_run_args_survive_the_shell_as_given(command: str, expected: str, tmp_path: Path) -> None:
    spec = job(workflow(commands=[command]), *TRICKY)
    script = write_script(spec, tmp_path)
    out = subprocess.run(["bash", str(script)], capture_output=True, text=True, check=True)
    assert out.stdout == expected


def test_env_values_get_the_shell_joined_args() -> None:
    spec = job(workflow(commands=["a"], env={"ARGS": "${{ run.args }}"}), "x", "y z")
    assert spec.env == {"ARGS": "x 'y z'"}
