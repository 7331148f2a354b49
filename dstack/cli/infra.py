"""`dstack infra RUN [-v] [--json]`: what a cloud run created, and whether it is gone."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    app.command(
        "infra",
        help="Show a cloud run's infrastructure: the plan recorded before anything was "
        "created, the outputs of creating it, and the destroy result.",
    )(infra)


def infra(
    run_name: str = typer.Argument(
        ..., metavar="RUN", help="The run's name, as `dstack ps` shows it."
    ),
    verbose: bool = typer.Option(False, "-v", "--verbose", help="Inputs and engine output."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    from dstack import api
    from dstack.cli import render
    from dstack.cli.plan_render import record_text
    from dstack.services import infra as service

    view = service.show(api.Context(), run_name)
    if as_json:
        render.print_json(
            {
                "run": view.run.run_name,
                "compute": view.run.compute,
                "stack_live": view.stack_live,
                "records": [r.model_dump() for r in view.records],
                "boot_logs": {str(k): v for k, v in view.boot_logs.items()},
            }
        )
        return
    if not view.records:
        print(f"Run {run_name} ran on {view.run.compute}: it has no cloud infrastructure")
        return
    first = view.records[0]
    print(f"Run {run_name}: stack {first.project}/{first.stack}, state in {first.backend_url}")
    for record in view.records:
        print("\n".join(record_text(record, verbose=verbose)))
    destroyed = view.record("destroy")
    if view.stack_live:
        print(
            "The stack still exists: an attached `dstack run`, `dstack stop` or "
            "`dstack prune` destroys it once the run is finished"
        )
    elif destroyed is not None and destroyed.ok:
        print("The stack is destroyed")
    for index, log in sorted(view.boot_logs.items()):
        tail = log.rstrip().splitlines()[-20 if not verbose else 0 :]
        print(f"Boot log of job {index} ({'all' if verbose else 'last 20 lines'}):")
        print("\n".join(f"  {line}" for line in tail))
