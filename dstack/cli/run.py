"""`dstack run WORKFLOW [ARGS]`: submit a run and follow its output (or detach)."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, NoReturn

import typer

if TYPE_CHECKING:
    from dstack.models import Tag
    from dstack.services.context import Context
    from dstack.spec.overrides import RunOverrides


def register(app: typer.Typer) -> None:
    app.command(
        "run",
        context_settings={
            "allow_extra_args": True,
            "ignore_unknown_options": True,
            "allow_interspersed_args": False,  # what follows the workflow is the workflow's
        },
        help="Run a workflow of .dstack/workflows.yaml. dstack's options go before the workflow "
        "name; everything after it goes to the workflow as ${{ run.args }} (so `dstack run "
        "python train.py --help` shows the script's help), as in dstack 2022, except -d and -t "
        "TAG, which are dstack's anywhere. `--` after the name passes even those to the "
        "workflow. One of dstack's options after the name goes to the workflow with a warning.",
    )(run)


def run(
    ctx: typer.Context,
    workflow: str = typer.Argument(
        ...,
        metavar="WORKFLOW [ARGS]...",
        help="The workflow, then its arguments (${{ run.args }}).",
    ),
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
    retry: str = typer.Option(
        None, "--retry", help="Restart after events: EVENTS[:LIMIT], e.g. interruption,error:2."
    ),
    spot_policy: str = typer.Option(
        None, "--spot-policy", help="spot, on-demand, or auto (spot first, then on-demand)."
    ),
    max_price: float = typer.Option(None, "--max-price", help="USD per hour per node, at most."),
    max_duration: str = typer.Option(
        None, "--max-duration", help="Longest the run's instances live, e.g. 2h."
    ),
    on_demand_after: int = typer.Option(
        None, "--on-demand-after", metavar="N", help="Go on-demand after N interruptions."
    ),
    plan: bool = typer.Option(
        False, "--plan", help="Show the AWS resources the run would create, offline; run nothing."
    ),
    as_json: bool = typer.Option(False, "--json", help="With --plan: print JSON."),
) -> None:
    from dstack import api
    from dstack.cli import run_args
    from dstack.cli.follow import follow_new_run, on_interrupt, print_warnings
    from dstack.errors import RunInterrupted
    from dstack.processes import keep_out_of_reach
    from dstack.spec.overrides import RunOverrides

    # the jobs it starts and follows run as this user: they cannot read this process's
    # environment (the shell's tokens) or memory through /proc, nor the supervisor's it forks
    keep_out_of_reach()
    after = run_args.split(workflow, list(ctx.args), ctx.command)
    detach, tag = detach or after.detach, after.tag or tag
    print_warnings(after.warnings)

    overrides = RunOverrides(
        env=env, artifacts=artifact, deps=dep or None, working_dir=working_dir,
        interruptible=interruptible, local=local, cpu=cpu, memory=memory, gpu=gpu,
        gpu_name=gpu_name, gpu_memory=gpu_memory, shm_size=shm_size, ports=ports, retry=retry,
        spot_policy=spot_policy, max_price=max_price, max_duration=max_duration,
        on_demand_after=on_demand_after,
    )  # fmt: skip
    if as_json and not plan:
        raise typer.BadParameter(
            "--json applies to --plan only; `dstack ps RUN --json` shows a run"
        )
    context = api.Context()
    if plan:
        _print_plan(context, workflow, after.args, overrides, tag, as_json)
        return
    context.compute.reporter = lambda line: print(line, file=sys.stderr)
    from dstack.cli.progress import CodeProgressView

    context.code_progress = CodeProgressView()
    replace_tag, existing = _confirm_moving_tag(context, tag) if tag else (False, None)
    try:
        submission = api.submit(
            context, workflow, args=after.args, overrides=overrides, tag=tag,
            replace_tag=replace_tag, existing_tag=existing,
        )  # fmt: skip
    except RunInterrupted as exc:  # Ctrl+C once the run was written: as if it were followed
        code = on_interrupt(context, exc.run_name, interactive=True, stop_on_signal=True)
        _end(context, exc.run_name, code)
    name = submission.run.run_name
    if detach:  # the name alone on stdout: RUN=$(dstack run train -d)
        print(f"Run {name} submitted; follow it with `dstack logs -a {name}`", file=sys.stderr)
        print_warnings(submission.warnings)
        print(name, flush=True)
        return
    header = f"Run {name} (workflow {submission.run.workflow})"
    view = lambda: api.view_of(context, submission)  # noqa: E731
    _end(context, name, follow_new_run(context, name, header, submission.warnings, view))


def _end(context: Context, name: str, code: int) -> NoReturn:
    """The attached run is over for this command: missing artifacts said, a finished cloud
    run's stack released, and the command's exit ``code``."""
    _warn_missing_artifacts(context, name)
    release_if_finished(context, name)
    raise typer.Exit(code)


def _warn_missing_artifacts(context: Context, name: str) -> None:
    """Say on stderr which declared artifacts the job left empty, unless the job's own output
    (where the runner says so too) is on the same terminal: once is enough there."""
    if sys.stdout.isatty() and sys.stderr.isatty():
        return
    from dstack import api
    from dstack.errors import DstackError
    from dstack.services.artifacts import missing_artifacts

    try:
        view = api.get_run(context, name, refresh=False)
        if not view.status.is_finished:
            return
        for path in missing_artifacts(context, view):
            print(f"Warning: artifact {path}: the job wrote nothing there", file=sys.stderr)
    except DstackError:
        return


def _print_plan(
    context: Context,
    workflow: str,
    args: list[str],
    overrides: RunOverrides,
    tag: str | None,
    as_json: bool,
) -> None:
    from dstack.cli import render
    from dstack.cli.follow import print_warnings
    from dstack.cli.plan_render import plan_text
    from dstack.services.plan import plan_run

    result = plan_run(context, workflow, args=args, overrides=overrides, tag=tag)
    print_warnings(result.warnings)
    if as_json:
        render.print_json(result.as_dict())
    else:
        sys.stdout.write(plan_text(result))


def release_if_finished(context: Context, name: str) -> None:
    """A finished cloud run's stack is destroyed now that its artifacts have landed; a
    detached or still running one is left to `dstack stop`/`dstack prune`."""
    from dstack.errors import DstackError
    from dstack.services.infra import release

    try:
        release(context, name)
    except DstackError as exc:
        print(f"Warning: {exc}", file=sys.stderr)


def _confirm_moving_tag(context: Context, tag: str) -> tuple[bool, Tag | None]:
    """``-t TAG`` on an existing tag: ask (in a terminal) whether to move it to this run when it
    succeeds. Without a terminal, submit refuses it with a clear message instead. Also the
    tag as read (None: absent), so that submit need not read it again."""
    from dstack import api
    from dstack.services.tags import describe

    existing = api.find_tag(context, tag)
    if existing is None or not sys.stdin.isatty():
        return False, existing
    question = f"Tag {tag} exists ({describe(existing)}). Move it to this run when it succeeds?"
    if not typer.confirm(question, default=False):
        raise typer.Exit(1)
    return True, existing
