"""Help text in the conventions users know from click CLIs: a value's kind as ``TEXT``,
``INTEGER``, ``PATH``; flags without a value; arguments in capitals (their own ``metavar``).

typer shows Python types (``<bool>``, ``<list[str]>``) by default; ``apply`` walks the command
tree once, before it runs, and names each option's value by its click type instead.
"""

from __future__ import annotations

from typing import Any, get_args, get_origin

_NAMES = {"int": "INTEGER", "float": "FLOAT", "str": "TEXT", "Path": "PATH", "PosixPath": "PATH"}


def apply(command: Any) -> None:
    """Give every option of ``command`` (and its subcommands) a click-style metavar. (typer
    may carry its own copy of click, so parameters are told apart by their kind's name.)"""
    for param in command.params:
        if param.param_type_name == "option" and param.metavar is None:
            param.metavar = _metavar(param)
        elif param.param_type_name == "argument":  # `RUN`, `[RUN]`, not typer's `{RUN}`
            shown = param.metavar or param.name.upper()
            usage = shown if param.required else f"[{shown}]"
            param._usage_display_name = lambda usage=usage: usage
            param.display_type_rich = lambda ctx, kind=_metavar(param): kind
    help_option = command.get_help_option

    def quiet_help(ctx: Any) -> Any:
        option = help_option(ctx)
        if option is not None:
            option.metavar = ""
        return option

    command.get_help_option = quiet_help
    for sub in getattr(command, "commands", {}).values():
        apply(sub)


def _metavar(param: Any) -> str:
    """``""`` for a flag, else the click name of the value's type (a list's: its items')."""
    annotation = param.type_descriptor.annotation
    if get_origin(annotation) is list:
        (annotation,) = get_args(annotation)
    if annotation is bool:
        return ""
    name = getattr(annotation, "__name__", str(annotation))
    return _NAMES.get(name, name.upper())
