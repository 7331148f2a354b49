"""Small formatting helpers the templates call: times, durations, sizes, counts, status colors,
links; and :func:`finalize`, which every value a template prints goes through."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlencode

from markupsafe import Markup

from dstack.dashboard.files import printable
from dstack.models import JobStatus
from dstack.services.spend import cost_note, cost_text

STATUS_CHOICES = ["", "active", *[s.value for s in JobStatus]]

_STATUS_CLASS = {
    "submitted": "pending",
    "provisioning": "pending",
    "downloading": "active",
    "running": "active",
    "uploading": "active",
    "stopping": "warn",
    "done": "ok",
    "failed": "bad",
    "stopped": "warn",
    "aborted": "bad",
    "interrupted": "bad",
}


def status_class(status: Any) -> str:
    value = getattr(status, "value", status)
    return f"status status-{_STATUS_CLASS.get(str(value), 'pending')}"


def when(at: float | None) -> str:
    if not at:
        return ""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at))


def ago(at: float | None) -> str:
    if not at:
        return ""
    return duration(time.time() - at) + " ago"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    seconds = int(max(seconds, 0))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    if seconds < 86400:
        return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d {seconds % 86400 // 3600}h"


def size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


def plural(count: int, noun: str) -> str:
    """``1 file``, ``2 files``."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def number(value: float) -> str:
    """A metric's value, short: four significant digits (``0.4132``, ``1.2e+05``)."""
    return f"{value:.4g}"


def url(route: str, /, **params: Any) -> str:
    kept = {k: printable(str(v)) for k, v in params.items() if v not in (None, "")}
    return route + ("?" + urlencode(kept) if kept else "")


def finalize(value: Any) -> Any:
    """What a template prints, as text a response can encode: a name made of bytes that are
    not UTF-8 (an artifact's, from the file system) is shown with U+FFFD, never a 500."""
    if isinstance(value, Markup):
        return Markup(printable(value))
    if isinstance(value, str):
        return printable(value)
    return value


def command_text(spec: Any) -> str:
    """A job's commands as its run page shows them: with the run's arguments in place of the
    references the job's script reads them through (``shellargs.shown``)."""
    from dstack.providers.shellargs import shown

    commands = list(spec.commands)
    return "\n".join(commands if spec.image else shown(commands, list(spec.args)))


def run_url(repo_id: str, run_name: str) -> str:
    return url("/run", repo=repo_id, run=run_name)


GLOBALS = {
    "status_class": status_class,
    "when": when,
    "ago": ago,
    "duration": duration,
    "size": size,
    "plural": plural,
    "number": number,
    "url": url,
    "run_url": run_url,
    "command_text": command_text,
    "cost": cost_text,
    "cost_note": cost_note,
}
