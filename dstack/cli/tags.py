"""`dstack tags [list|add|delete]`: names for artifacts that workflows depend on."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from dstack.cli.groups import listing_group


def _list_default(as_json: bool) -> None:
    """`dstack tags` alone: the list."""
    list_command(as_json=as_json)


tags_app = listing_group(
    "tags",
    help="Tags: a finished run's artifacts, or local folders, under a name that workflows can "
    "depend on (`deps: - tag: NAME`).",
    list_items=_list_default,
)


def register(app: typer.Typer) -> None:
    app.add_typer(tags_app, name="tags")


@tags_app.command("list", help="List the tags of this repository.")
def list_command(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    from dstack import api
    from dstack.cli import render
    from dstack.cli.render import files_text
    from dstack.services.notices import unshared_repo_due
    from dstack.units import format_size

    ctx = api.Context()
    ctx.repo_id  # noqa: B018 — what git says of the repo comes first, apart from the tags'
    about_repo = list(ctx.warnings)
    tags = api.list_tags(ctx)
    # "this repo's runs cannot be shared": once per repo, as `dstack run` says it
    said = about_repo if unshared_repo_due(ctx.storage, ctx.repo_id) else []
    for line in said + ctx.warnings[len(about_repo) :]:  # then each damaged tag record
        print(f"Warning: {line}", file=sys.stderr)
    if as_json:
        render.print_json(
            [
                {
                    "tag": t.name,
                    "run": t.run_name,
                    "workflow": t.workflow,
                    "owner": t.owner.display,
                    "created_at": render.iso(t.created_at),
                    "artifacts": t.artifacts,
                    "files": t.files,
                    "size": t.size,
                }
                for t in tags
            ]
        )
        return
    rows = [
        [
            t.name,
            t.run_name or "-",
            t.workflow or "(uploaded)",
            t.owner.display,
            render.ago(t.created_at),
            f"{', '.join(t.artifacts) or '-'} ({files_text(t.files)}, {format_size(t.size)})",
        ]
        for t in tags
    ]
    if not rows:
        print(
            "No tags yet: tag a run with `dstack tags add TAG RUN` or `dstack run WORKFLOW -t TAG`",
            file=sys.stderr,
        )
        return
    render.table(["TAG", "RUN", "WORKFLOW", "OWNER", "CREATED", "ARTIFACTS"], rows)


@tags_app.command(
    "add",
    help="Tag a finished run (TAG RUN), or upload local folders or files as a tag (TAG -a DIR).",
)
def add_command(
    name: str = typer.Argument(..., metavar="TAG", help="The tag's name."),
    run_name: str = typer.Argument(None, metavar="RUN", help="A finished run to tag."),
    paths: list[Path] = typer.Option(
        None, "-a", "--artifact", help="Upload this folder or file (repeatable)."
    ),
    yes: bool = typer.Option(False, "-y", "--yes", help="Replace an existing tag without asking."),
) -> None:
    from dstack import api
    from dstack.cli.confirm import confirm_or_exit
    from dstack.cli.progress import transfer_bar
    from dstack.errors import DstackError
    from dstack.services.tags import describe
    from dstack.units import format_size

    if bool(run_name) == bool(paths):
        raise DstackError("tags add: give either a run (`TAG RUN`) or folders (`TAG -a DIR`)")
    from dstack.errors import DamagedRecordError

    ctx = api.Context()
    try:
        existing = api.find_tag(ctx, name)
        what = describe(existing) if existing is not None else ""
    except DamagedRecordError:
        existing, what = None, "its record is damaged"
    files = api.collect_upload(paths, Path.cwd()) if paths else []
    if what:
        confirm_or_exit(f"Tag {name} exists ({what}). Replace it?", yes)
    # -y replaces whatever holds the name when the tag is written, even a tag that another
    # user created between the check above and now
    replace = bool(what) or yes
    if run_name:
        tag = api.add_run_tag(ctx, name, run_name, replace=replace)
    else:
        total = sum(f.size for f in files)
        with transfer_bar(total, "Uploading") as advance:
            tag = api.add_upload_tag(ctx, name, files, replace=replace, progress=advance)
    print(f"Tag {name}: {describe(tag)}, {tag.files} file(s), {format_size(tag.size)}")
    if tag.files == 0:
        print(f"Warning: run {run_name} saved no artifacts", file=sys.stderr)


@tags_app.command("delete", help="Delete a tag. A tagged run and its artifacts stay.")
def delete_command(
    name: str = typer.Argument(..., metavar="TAG", help="The tag's name."),
    yes: bool = typer.Option(False, "-y", "--yes", help="Do not ask for confirmation."),
) -> None:
    from dstack import api
    from dstack.cli.confirm import confirm_or_exit
    from dstack.errors import DamagedRecordError
    from dstack.services.tags import describe

    ctx = api.Context()
    try:
        tag = api.get_tag(ctx, name)
        what = "and its uploaded files" if tag.upload_id else f"({describe(tag)}; the run stays)"
    except DamagedRecordError:
        what = "(its record is damaged: it goes with any files uploaded under its name)"
    confirm_or_exit(f"Delete tag {name} {what}?", yes)
    api.delete_tag(ctx, name)
    print(f"Tag {name}: deleted")
