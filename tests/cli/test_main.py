"""The CLI builds only the command it runs (``app_for``), and nothing the user sees changes:
each command's help, and its usage errors, are the same as from the whole app."""

from __future__ import annotations

import contextlib
import io
import subprocess
import sys
from typing import Any

import pytest
import typer

from dstack.cli import conventions
from dstack.cli.main import app, app_for

NAMES = [info.name for info in app.registered_commands] + [
    info.name for info in app.registered_groups
]


def built(source: typer.Typer) -> Any:
    command = typer.main.get_command(source)
    conventions.apply(command)
    return command


def output(source: typer.Typer, args: list[str]) -> tuple[str, str]:
    """What ``dstack ARGS`` prints when built from ``source``: stdout, and an error's text."""
    out = io.StringIO()
    error = ""
    with contextlib.redirect_stdout(out):
        try:
            built(source)(args, standalone_mode=False, prog_name="dstack")
        except typer.Exit:
            pass
        except typer.TyperException as exc:  # what main() turns into one line
            error = exc.format_message() if hasattr(exc, "format_message") else str(exc)
    return out.getvalue(), error


@pytest.mark.parametrize(
    ("args", "commands"),
    [
        (["run", "train", "--epochs", "3"], ["run"]),
        (["--debug", "run", "train"], ["run"]),
        (["tags", "list"], ["tags"]),
        (["ps", "--help"], ["ps"]),
        ([], NAMES),
        (["--help"], NAMES),
        (["--help", "run"], NAMES),  # the root's help lists every command
        (["--version"], NAMES),
        (["rn", "train"], NAMES),  # unknown: typer's "did you mean"
    ],
)
def test_the_app_built_holds_the_command_named(args: list[str], commands: list[str]) -> None:
    assert sorted(built(app_for(args)).commands) == sorted(commands)


@pytest.mark.parametrize("name", NAMES)
def test_a_commands_help_is_the_same_from_the_narrowed_app(name: str) -> None:
    assert output(app_for([name]), [name, "--help"]) == output(app, [name, "--help"])


@pytest.mark.parametrize(
    "args", [["run"], ["run", "--cpu", "x", "hello"], ["ps", "--bogus"], ["tags", "bogus"]]
)
def test_a_usage_error_is_the_same_from_the_narrowed_app(args: list[str]) -> None:
    narrowed = output(app_for(args), args)
    assert narrowed == output(app, args)
    assert narrowed[1]


def test_the_objects_left_at_exit_are_frozen_before_the_last_collections() -> None:
    """The interpreter's final collections then skip what the imports made (a quicker exit);
    a handler registered before main() runs after the one main() registers."""
    code = (
        "import atexit, gc, sys\n"
        "atexit.register(lambda: print('frozen', gc.get_freeze_count() > 0))\n"
        "from dstack.cli.main import main\n"
        "sys.argv = ['dstack', '--version']\n"
        "main()\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["dstack 0.1.0", "frozen True"]
