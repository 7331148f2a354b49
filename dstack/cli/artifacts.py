"""`dstack artifacts list|download (RUN | :TAG)`: what a run (or a tag) holds, and getting it."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from dstack.api import ArtifactFile, Context

artifacts_app = typer.Typer(
    help="List and download the artifacts of runs and tags.", no_args_is_help=True
)
_SOURCE = "A run name, or :TAG for the files of a tag."


def register(app: typer.Typer) -> None:
    app.add_typer(artifacts_app, name="artifacts")


@artifacts_app.command("list", help="List the artifact files of a run or a tag.")
def list_command(
    source: str = typer.Argument(..., metavar="RUN|:TAG", help=_SOURCE),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    from dstack.cli import render
    from dstack.units import format_size

    _ctx, files, _multi_job = _files(source)
    if as_json:
        render.print_json([{"job": f.job_index, "path": f.path, "size": f.size} for f in files])
        return
    render.table(["PATH", "SIZE"], [[f.path, format_size(f.size)] for f in files])


@artifacts_app.command("download", help="Download the artifacts of a run or a tag.")
def download_command(
    source: str = typer.Argument(..., metavar="RUN|:TAG", help=_SOURCE),
    output: Path = typer.Option(Path("."), "-o", "--output", help="Folder to download into."),
) -> None:
    import sys

    from dstack import api
    from dstack.cli.progress import transfer_bar

    ctx, files, multi_job = _files(source)
    if not files:
        print(f"{_name(source)} has no artifacts", file=sys.stderr)
        return
    total = sum(f.size for f in files)
    with transfer_bar(total, "Downloading") as advance:
        paths = api.download_artifacts(ctx, files, output, multi_job=multi_job, progress=advance)
    print(f"Downloaded {len(paths)} file(s) to {output}", file=sys.stderr)


def _files(source: str) -> tuple[Context, list[ArtifactFile], bool]:
    """The files of a run or, for ``:TAG``, of a tag; and whether several jobs wrote them."""
    from dstack import api

    ctx = api.Context()
    if source.startswith(":"):
        tag = api.get_tag(ctx, source[1:])
        return ctx, api.list_tag_artifacts(ctx, tag), tag.job_count > 1
    view = api.get_run(ctx, source, refresh=False)
    return ctx, api.list_artifacts(ctx, view), view.run.job_count > 1


def _name(source: str) -> str:
    return f"Tag {source[1:]}" if source.startswith(":") else f"Run {source}"
