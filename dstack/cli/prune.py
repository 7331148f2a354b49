"""`dstack prune [--dry-run] [-y] [--json]`: destroy what finished or deleted cloud runs left."""

from __future__ import annotations

import sys

import typer


def register(app: typer.Typer) -> None:
    app.command(
        "prune",
        help="Destroy the AWS stacks, instances and security groups of runs that are finished "
        "or deleted, in the whole state bucket, and say what was done.",
    )(prune)


def prune(
    dry_run: bool = typer.Option(False, "--dry-run", help="Only say what would be destroyed."),
    yes: bool = typer.Option(False, "-y", "--yes", help="Do not ask for confirmation."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    from dstack import api
    from dstack.cli.confirm import confirm_or_exit
    from dstack.services import infra

    ctx = api.Context()
    ctx.compute.reporter = lambda line: print(line, file=sys.stderr)
    if not dry_run and not yes:
        planned = infra.prune(ctx, dry_run=True)
        if not planned.actions:
            _show(planned, as_json)
            return
        for action in planned.actions:
            print(f"would destroy {action.kind} {action.target}: {action.why}", file=sys.stderr)
        confirm_or_exit(f"Destroy these {len(planned.actions)}?", yes)
    report = infra.prune(ctx, dry_run=dry_run)
    _show(report, as_json)
    if any(a.error for a in report.actions) or report.errors:
        raise typer.Exit(1)


def _show(report, as_json: bool) -> None:  # type: ignore[no-untyped-def]
    if as_json:
        from dstack.cli import render

        render.print_json(
            {
                "dry_run": report.dry_run,
                "actions": [a.as_dict() for a in report.actions],
                "kept": [{"what": what, "why": why} for what, why in report.kept],
                "errors": report.errors,
            }
        )
        return
    verb = "would destroy" if report.dry_run else "destroyed"
    for action in report.actions:
        if action.error:
            print(f"not destroyed: {action.kind} {action.target} ({action.why}): {action.error}")
        else:
            print(f"{verb} {action.kind} {action.target} ({action.why})")
    for what, why in report.kept:
        print(f"kept {what}: {why}")
    for error in report.errors:
        print(f"error: {error}")
    if not report.actions and not report.errors:
        print("Nothing to prune")
