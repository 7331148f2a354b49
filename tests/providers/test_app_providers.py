"""Workflows → job specs for the app and multi-node providers: lab, notebook, code,
tensorboard, torchrun; the built-in tensorboard workflow; their bad input, in one line each."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import TypeAdapter

from dstack.errors import SpecError
from dstack.models import AppSpec, Artifact, JobSpec, RepoSnapshot
from dstack.providers import RunInput, build_jobs
from dstack.providers.apps import missing_server
from dstack.spec.app_models import BUILTIN_SOURCE
from dstack.spec.loader import get_workflow, parse_workflow
from dstack.spec.workflows import Workflow

REPO = RepoSnapshot(repo_id="github.com/acme/mnist", code_key="codes/x.tar.gz")
ADAPTER: TypeAdapter[Workflow] = TypeAdapter(Workflow)


def jobs(fields: dict[str, Any], *args: str) -> list[JobSpec]:
    wf = ADAPTER.validate_python({"name": "w", **fields})
    return build_jobs(RunInput(wf, "wise-owl-1", REPO, list(args), 1.0))


def test_lab_serves_jupyterlab_on_port_0_with_a_token() -> None:
    (job,) = jobs(
        {"provider": "lab", "version": 4.2, "python": "3.11", "requirements": "req.txt",
         "setup": ["pip install -e ."], "env": {"A": "1"}, "artifacts": ["out"], "ports": 2}
    )  # fmt: skip
    assert job.packages == ["jupyterlab==4.2"]
    assert job.ports == 3  # PORT_0 for the server, then the two asked for
    assert job.apps == [AppSpec(name="lab", url_path="/lab", token_param="token")]
    assert job.setup == ["pip install -e ."]
    assert (job.python, job.requirements, job.env) == ("3.11", "req.txt", {"A": "1"})
    assert job.artifacts == [Artifact(path="out")]
    assert job.commands[-1].startswith("exec jupyter lab ")
    assert '--port="$PORT_0"' in job.commands[-1] and "--port-retries=0" in job.commands[-1]
    assert 'JUPYTER_TOKEN="$JOB_TOKEN"' in "\n".join(job.commands)
    assert "JOB_TOKEN" not in job.env  # the token is the runner's, never in the spec


def test_notebook_and_unpinned_versions() -> None:
    (job,) = jobs({"provider": "notebook"})
    assert job.packages == ["notebook"]
    assert job.apps[0].url_path == "/tree"
    assert "jupyter notebook" in job.commands[-1]


def test_code_needs_a_vscode_server_on_the_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    (job,) = jobs({"provider": "code", "version": "1.72.3"})
    assert job.apps[0].needs == ["openvscode-server", "code-server"]
    assert job.packages == []
    assert "1.72.3" in "\n".join(job.commands)
    monkeypatch.setenv("PATH", "/nonexistent")
    problem = missing_server(job)
    assert problem is not None and "package registries" in problem and "code-server" in problem


def test_tensorboard_watches_the_runs_given_as_arguments() -> None:
    (job,) = jobs({"provider": "tensorboard", "runs": ["calm-cat-1"]}, "bold-bee-2", "calm-cat-1")
    assert job.watch_runs == ["calm-cat-1", "bold-bee-2"]
    assert job.packages == ["tensorboard"]
    assert job.ports == 1 and job.apps == [AppSpec(name="tensorboard")]
    assert job.commands == [
        'exec tensorboard --logdir "$RUNS_DIR" --port "$PORT_0" --host "$JOB_BIND_ADDRESS"'
    ]
    (job,) = jobs({"provider": "tensorboard", "logdir": "logs", "version": "2.17.0"}, "a-b-1")
    assert job.packages == ["tensorboard==2.17.0"]
    assert '--logdir_spec "a-b-1:$RUNS_DIR/a-b-1/logs"' in job.commands[0]


def test_tensorboard_without_runs_or_with_a_bad_name_is_refused() -> None:
    with pytest.raises(SpecError, match="no runs to show"):
        jobs({"provider": "tensorboard"})
    with pytest.raises(SpecError, match="not a run name"):
        jobs({"provider": "tensorboard"}, "../etc")


def test_tensorboard_is_built_in(tmp_path: Path) -> None:
    wf = get_workflow(tmp_path, "tensorboard")  # no workflow file at all
    assert wf.provider == "tensorboard" and wf.source == BUILTIN_SOURCE
    (tmp_path / ".dstack").mkdir()
    (tmp_path / ".dstack/workflows.yaml").write_text(
        "workflows:\n  - name: tensorboard\n    provider: tensorboard\n    runs: [x-y-1]\n"
    )
    declared = get_workflow(tmp_path, "tensorboard")
    assert declared.source == ".dstack/workflows.yaml"
    with pytest.raises(SpecError, match="no workflow 'tensorbord'"):
        get_workflow(tmp_path, "tensorbord")


def test_torchrun_makes_one_job_per_node_with_artifacts_on_the_master() -> None:
    specs = jobs(
        {"provider": "torchrun", "script": "train.py", "args": ["--epochs", "2"], "nodes": 3,
         "artifacts": ["checkpoint"], "requirements": "req.txt", "resources": {"gpu": 0}},
        "--lr", "0.1",
    )  # fmt: skip
    assert [j.job_index for j in specs] == [0, 1, 2]
    assert all(j.nodes == 3 and j.commands == specs[0].commands for j in specs)
    assert specs[0].artifacts == [Artifact(path="checkpoint")]
    assert specs[1].artifacts == specs[2].artifacts == []
    launch = specs[0].commands[-1]
    assert launch.startswith('torchrun --nnodes "$NNODES" --node_rank "$NODE_RANK"')
    assert launch.endswith('train.py --epochs 2 "${DSTACK_RUN_ARGS[@]}"')
    assert specs[0].args == ["--lr", "0.1"]
    assert "command -v torchrun" in specs[0].commands[0]
    assert specs[0].env == {"NPROC_PER_NODE": "1"}


def test_torchrun_python_launcher_runs_one_process_per_node() -> None:
    specs = jobs({"provider": "torchrun", "file": "dist.py", "launcher": "python", "nodes": 2})
    assert specs[0].commands[-1] == "python dist.py"
    assert 'RANK="$NODE_RANK" WORLD_SIZE="$NNODES"' in specs[0].commands[0]


def test_other_providers_are_single_node_jobs() -> None:
    (job,) = jobs({"provider": "bash", "commands": ["echo"]})
    assert job.nodes is None and job.apps == [] and job.packages == [] and job.watch_runs == []


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"provider": "torchrun", "script": "a.py", "nodes": 0}, "nodes: 0 is not a positive"),
        ({"provider": "torchrun", "script": "a.py", "nodes": "two"}, "nodes: 'two' is not"),
        ({"provider": "torchrun", "script": "a.py", "launcher": "mpi"}, "launcher: input should"),
        ({"provider": "torchrun"}, "missing required key 'file'"),
        ({"provider": "lab", "version": "banana"}, "version: 'banana' is not a release version"),
        ({"provider": "lab", "version": "4.2.x"}, "version: '4.2.x' is not"),
        ({"provider": "lab", "image": "x"}, "the lab provider has no 'image'"),
        ({"provider": "notebook", "ports": 0}, "ports: 0 is not a positive whole number"),
        ({"provider": "code", "ports": "x"}, "ports: 'x' is not a positive whole number"),
        ({"provider": "tensorboard", "runs": ["../x"]}, "runs[0]: '../x' is not a name"),
        ({"provider": "lab", "requirements": "../../r.txt"}, "requirements"),
    ],
)
def test_bad_input_is_one_line(raw: dict[str, Any], expected: str) -> None:
    with pytest.raises(SpecError) as error:
        parse_workflow({"name": "w", **raw}, source=".dstack/workflows.yaml")
    message = str(error.value)
    assert "\n" not in message and message.startswith(".dstack/workflows.yaml: workflow 'w': ")
    assert expected in message, message
