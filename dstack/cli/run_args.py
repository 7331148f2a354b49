"""What follows the workflow name in `dstack run WORKFLOW ARGS…`: the workflow's arguments.

The rule is 2022's: dstack's options go before the workflow name, and everything after it is
the workflow's (``${{ run.args }}``, or the script's own ``--help``), with two exceptions 2022
had too: ``-d/--detach`` and ``-t/--tag TAG`` are dstack's wherever they stand. ``--`` after
the name ends even those: everything after it goes to the workflow, as typed.

An argument after the name that is spelt like another of dstack's options (``-l``, ``--gpu``)
is ambiguous: it goes to the workflow, as the rule says, and dstack says once what it did and
how to say the other thing. ``--plan`` after the name is refused instead: taken as the
workflow's, it would start a real (perhaps paid) run where a look at the plan was meant.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dstack.errors import DstackError

DETACH = ("-d", "--detach")
TAG = ("-t", "--tag")
HELP = ("-h", "--help")


@dataclass
class AfterWorkflow:
    args: list[str] = field(default_factory=list)
    detach: bool = False
    tag: str | None = None
    warnings: list[str] = field(default_factory=list)


def split(workflow: str, extra: list[str], command: Any) -> AfterWorkflow:
    """The workflow's arguments among ``extra`` (what followed ``workflow``), and the
    ``-d``/``-t`` given there."""
    spelt = _dstack_options(command)
    result = AfterWorkflow()
    items = iter(extra)
    for item in items:
        if item == "--":
            result.args.extend(items)
            break
        if item in DETACH:
            result.detach = True
        elif item in TAG or item.startswith("--tag="):
            value = item.partition("=")[2] if "=" in item else next(items, None)
            if not value:
                raise DstackError(f"{item} needs a tag name: `dstack run {workflow} -t TAG`")
            result.tag = value
        elif item.startswith("-t") and len(item) > 2 and not item.startswith("--"):
            result.tag = item[2:]
        elif item.partition("=")[0] == "--plan":
            raise DstackError(
                f"--plan after the workflow name would go to the workflow and run it: put it "
                f"before the name (`dstack run --plan {workflow}`), or after `--` to pass it "
                "to the workflow"
            )
        else:
            name = item.partition("=")[0]
            if name in spelt and name not in HELP:
                result.warnings.append(
                    f"{item} follows the workflow name, so it goes to the workflow as an "
                    f"argument; for dstack's {spelt[name]} put it before the name (`dstack run "
                    f"{name} … {workflow}`); write `--` before the workflow's arguments "
                    f"(`dstack run {workflow} -- {item} …`) to pass them without this warning"
                )
            result.args.append(item)
    return result


def _dstack_options(command: Any) -> dict[str, str]:
    """Each spelling of `dstack run`'s options, to its longest spelling (``-l`` → ``--local``)."""
    spelt: dict[str, str] = {}
    for param in command.params:
        if param.param_type_name == "option":  # typer may carry its own copy of click
            names = [*param.opts, *param.secondary_opts]
            longest = max(names, key=len)
            spelt.update({name: longest for name in names})
    return spelt
