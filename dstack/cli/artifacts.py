"""`dstack artifacts list|download RUN`: what a run saved, and getting it back."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

artifacts_app = typer.Typer(help="List and download the artifacts of runs.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(artifacts_app, name="artifacts")


@artifacts_app.command("list", help="List the artifact files of a run.")
def list_command(
    run_name: str = typer.Argument(..., metavar="RUN"),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    from dstack import api
    from dstack.cli import render
    from dstack.units import format_size

    ctx = api.Context()
    view = api.get_run(ctx, run_name, refresh=False)
    files = api.list_artifacts(ctx, view)
    if as_json:
        render.print_json([{"job": f.job_index, "path": f.path, "size": f.size} for f in files])
        return
    render.table(["PATH", "SIZE"], [[f.path, format_size(f.size)] for f in files])


@artifacts_app.command("download", help="Download the artifacts of a run.")
def download_command(
    run_name: str = typer.Argument(..., metavar="RUN"),
    output: Path = typer.Option(Path("."), "-o", "--output", help="Folder to download into."),
) -> None:
    import sys

    from dstack import api

    ctx = api.Context()
    view = api.get_run(ctx, run_name, refresh=False)
    files = api.list_artifacts(ctx, view)
    if not files:
        print(f"Run {run_name} has no artifacts", file=sys.stderr)
        return
    total = sum(f.size for f in files)
    with _progress(total) as advance:
        paths = api.download_artifacts(
            ctx, files, output, multi_job=view.run.job_count > 1, progress=advance
        )
    print(f"Downloaded {len(paths)} file(s) to {output}", file=sys.stderr)


class _progress:
    """A rich progress bar on a terminal; silent otherwise."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.bar: Any = None

    def __enter__(self):  # type: ignore[no-untyped-def]
        import sys

        if not sys.stderr.isatty():
            return lambda n: None
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TransferSpeedColumn,
        )

        self.bar = Progress(
            "[progress.description]{task.description}", BarColumn(), DownloadColumn(),
            TransferSpeedColumn(), transient=True,
        )  # fmt: skip
        self.bar.start()
        task = self.bar.add_task("Downloading", total=self.total)
        return lambda n: self.bar.advance(task, n)

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()
