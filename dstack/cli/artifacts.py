"""`dstack artifacts list|download (RUN | :TAG)`: what a run (or a tag) holds, and getting it."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from dstack.api import ArtifactFile, Context

artifacts_app = typer.Typer(
    help="List and download the artifacts of runs and tags.", no_args_is_help=True
)
_SOURCE = "A run name, or :TAG for the files of a tag."
_REPO_HELP = (
    "The repo, as `dstack ps` names it (github.com/OWNER/NAME, local/NAME), to use outside it."
)


def register(app: typer.Typer) -> None:
    app.add_typer(artifacts_app, name="artifacts")


@artifacts_app.command("list", help="List the artifact files of a run or a tag.")
def list_command(
    source: str = typer.Argument(..., metavar="RUN|:TAG", help=_SOURCE),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    repo: str = typer.Option(None, "--repo", metavar="REPO", help=_REPO_HELP),
) -> None:
    from dstack.cli import render
    from dstack.units import format_size

    _ctx, files, _multi_job = _files(source, repo)
    if as_json:
        render.print_json([{"job": f.job_index, "path": f.path, "size": f.size} for f in files])
        return
    if not files:
        print(f"{_name(source)} has no artifacts (a workflow saves the paths in its "
              "`artifacts`)", file=sys.stderr)  # fmt: skip
        return
    render.table(["PATH", "SIZE"], [[f.path, format_size(f.size)] for f in files])


@artifacts_app.command("download", help="Download the artifacts of a run or a tag.")
def download_command(
    source: str = typer.Argument(..., metavar="RUN|:TAG", help=_SOURCE),
    output: Path = typer.Option(Path("."), "-o", "--output", help="Folder to download into."),
    force: bool = typer.Option(
        False, "--force", help="Replace files that differ from the artifacts (edited ones)."
    ),
    repo: str = typer.Option(
        None,
        "--repo",
        metavar="REPO",
        help=_REPO_HELP,
    ),
) -> None:
    from dstack import api
    from dstack.cli.progress import transfer_bar
    from dstack.cli.render import files_text

    ctx, files, multi_job = _files(source, repo)
    if not files:
        print(f"{_name(source)} has no artifacts", file=sys.stderr)
        return
    total = sum(f.size for f in files)
    with transfer_bar(total, "Downloading") as advance:
        paths = api.download_artifacts(
            ctx, files, output, multi_job=multi_job, progress=advance, force=force
        )
    print(f"Downloaded {files_text(len(paths))} to {output}", file=sys.stderr)


def _files(source: str, repo: str | None = None) -> tuple[Context, list[ArtifactFile], bool]:
    """The files of a run or, for ``:TAG``, of a tag; and whether several jobs wrote them."""
    from dstack import api

    ctx = api.Context()
    if repo is not None:
        ctx.use_repo(repo)
    if source.startswith(":"):
        tag = api.get_tag(ctx, source[1:])
        return ctx, api.list_tag_artifacts(ctx, tag), tag.job_count > 1
    view = api.get_run(ctx, source, refresh=False)
    return ctx, api.list_artifacts(ctx, view), view.run.job_count > 1


def _name(source: str) -> str:
    return f"Tag {source[1:]}" if source.startswith(":") else f"Run {source}"
