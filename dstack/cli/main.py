"""The `dstack` command: the typer app, its commands, and the one error boundary.

A ``DstackError`` anywhere below is printed as one line on stderr and exits non-zero; a
traceback is shown only with ``--debug``, diagnostics (``logging``) only with ``-v``. Command modules import their services lazily so that
`dstack --help` stays fast, and only the command being run has its parameters built.
"""

from __future__ import annotations

import atexit
import copy
import gc
import sys

import typer

from dstack import __version__
from dstack.cli import (
    artifacts,
    config,
    cost,
    dashboard,
    infra,
    logs,
    metrics,
    prune,
    ps,
    restart,
    rm,
    run,
    schema,
    stop,
    tags,
    workflows,
)  # fmt: skip
from dstack.cli import secrets as secrets_cli

app = typer.Typer(
    name="dstack",
    help="Run ML workflows declared in .dstack/workflows.yaml, locally or in the cloud.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        print(f"dstack {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks of errors."),
    verbose: bool = typer.Option(
        False, "-v", "--verbose", help="Show diagnostics on stderr (also: DSTACK_LOG_LEVEL)."
    ),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Show the version."
    ),
) -> None:
    """dstack runs the workflows of your git repository and keeps their output and artifacts."""
    from dstack import diagnostics

    diagnostics.setup_cli(verbose)


for module in (
    run, restart, ps, logs, metrics, stop, rm, artifacts, tags, secrets_cli, infra, prune, config,
    schema, workflows, cost, dashboard,
):  # fmt: skip
    module.register(app)


def main() -> None:
    from dstack.cli import conventions
    from dstack.errors import DstackError

    # At exit the interpreter's last collections walk every object the imports made, tens of
    # milliseconds of every command; frozen, those objects are skipped. Nothing dstack does
    # at exit needs them collected (atexit handlers and refcounted finalizers still run).
    atexit.unregister(gc.freeze)  # once, however many times main() runs in a process
    atexit.register(gc.freeze)
    debug = "--debug" in sys.argv
    command = typer.main.get_command(app_for(sys.argv[1:]))
    conventions.apply(command)
    try:
        code = command(standalone_mode=False, prog_name="dstack")
    except DstackError as exc:
        if debug:
            raise
        _fail(str(exc), exc.exit_code)
    except typer.Abort:
        print("Aborted", file=sys.stderr)
        sys.exit(1)
    except typer.TyperException as exc:  # usage errors: one line too, and where to look
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        _fail(f"{message} (see `dstack --help`)", getattr(exc, "exit_code", 2))
    except KeyboardInterrupt:
        print("Interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)


def app_for(args: list[str]) -> typer.Typer:
    """The app with only the command that ``args`` names (``run`` for ``--debug run train``),
    so that only that command's parameters are built; the whole app when they name none, or
    when the root itself is asked for its help or version. What the user sees is the same."""
    name = next((arg for arg in args if arg not in _ROOT_FLAGS), None)
    if name is None or name.startswith("-"):
        return app
    commands = [info for info in app.registered_commands if info.name == name]
    groups = [info for info in app.registered_groups if info.name == name]
    if not commands and not groups:
        return app  # an unknown command: typer's own message
    narrow = copy.copy(app)
    narrow.registered_commands, narrow.registered_groups = commands, groups
    return narrow


#: the root's options that take no value (``dstack -v run``: the command is ``run``)
_ROOT_FLAGS = ("--debug", "-v", "--verbose")


def _fail(message: str, code: int) -> None:
    print(f"Error: {' '.join(message.split())}", file=sys.stderr)
    sys.exit(code)


if __name__ == "__main__":
    main()
