"""Asking before destructive commands; refusing to guess when nobody can answer."""

from __future__ import annotations

import sys

import typer

from dstack.errors import DstackError


def confirm_or_exit(question: str, yes: bool) -> None:
    if yes:
        return
    if not sys.stdin.isatty():
        raise DstackError(f"{question} Nobody can answer here: pass -y to confirm")
    if not typer.confirm(question, default=False):
        raise typer.Exit(1)


def require_one(run_name: str | None, all_runs: bool) -> None:
    if bool(run_name) == bool(all_runs):
        raise DstackError("name one run, or pass -a for all (not both)")
