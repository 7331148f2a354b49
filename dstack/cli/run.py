"""`dstack run WORKFLOW [ARGS]`: submit a run and follow its output (or detach)."""

from __future__ import annotations

import sys

import typer


def register(app: typer.Typer) -> None:
    app.command(
        "run",
        context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
        help="Run a workflow of .dstack/workflows.yaml. Arguments after the workflow name that "
        "dstack does not know go to the workflow as ${{ run.args }}.",
    )(run)


def run(
    ctx: typer.Context,
    workflow: str = typer.Argument(..., help="Name of the workflow."),
    detach: bool = typer.Option(False, "-d", "--detach", help="Do not follow the output."),
    tag: str = typer.Option(None, "-t", "--tag", help="Tag the run when it succeeds."),
    env: list[str] = typer.Option([], "-e", "--env", help="Set a variable: -e KEY=VALUE."),
    artifact: list[str] = typer.Option([], "-a", "--artifact", help="Add an artifact path."),
    dep: list[str] = typer.Option(None, "--dep", help="Replace the workflow's deps."),
    working_dir: str = typer.Option(None, "-w", "--working-dir", help="Working directory."),
    interruptible: bool = typer.Option(None, "-i", "--interruptible", help="Use spot instances."),
    local: bool = typer.Option(None, "-l", "--local", help="Run on this machine."),
    cpu: int = typer.Option(None, "--cpu", help="Number of CPUs."),
    memory: str = typer.Option(None, "--memory", help="Memory, e.g. 16GB."),
    gpu: int = typer.Option(None, "--gpu", help="Number of GPUs."),
    gpu_name: str = typer.Option(None, "--gpu-name", help="GPU model, e.g. A100."),
    gpu_memory: str = typer.Option(None, "--gpu-memory", help="GPU memory, e.g. 40GB."),
    shm_size: str = typer.Option(None, "--shm-size", help="Shared memory size, e.g. 8GB."),
    ports: int = typer.Option(None, "-p", "--ports", help="Number of ports to open."),
) -> None:
    from dstack import api
    from dstack.cli.follow import print_warnings, stream_run
    from dstack.spec.overrides import RunOverrides

    overrides = RunOverrides(
        env=env, artifacts=artifact, deps=dep or None, working_dir=working_dir,
        interruptible=interruptible, local=local, cpu=cpu, memory=memory, gpu=gpu,
        gpu_name=gpu_name, gpu_memory=gpu_memory, shm_size=shm_size, ports=ports,
    )  # fmt: skip
    context = api.Context()
    submission = api.submit(context, workflow, args=list(ctx.args), overrides=overrides, tag=tag)
    print_warnings(submission.warnings)
    name = submission.run.run_name
    if detach:
        print(f"Run {name} submitted; follow it with `dstack logs -a {name}`", file=sys.stderr)
        return
    view = api.get_run(context, name, refresh=False)
    code = stream_run(context, view, attach=True, interactive=True)
    raise typer.Exit(code)
