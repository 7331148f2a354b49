"""dstack's own diagnostics through ``logging``: how loud they are and where they go.

Library modules log through ``logging.getLogger(__name__)`` and never configure anything; the
two entry points do. The CLI writes to stderr only when asked (``dstack -v``, or
``DSTACK_LOG_LEVEL``), so the lines users see by default are unchanged; the runner always
writes a file beside its other output (see ``docs/design/logging.md``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path

from dstack.errors import ConfigError

ENV = "DSTACK_LOG_LEVEL"
#: timestamp, level, logger, message: the usual format, one record a line
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
#: the loggers dstack configures: its own packages, not the SDKs it calls
LOGGERS = ("dstack", "stacks")
_LEVELS = ("debug", "info", "warning", "error", "critical")


def level_from(verbose: bool, env: Mapping[str, str] | None = None) -> int | None:
    """The level asked for: ``-v`` means debug; else ``$DSTACK_LOG_LEVEL`` (a level name or
    number); None when neither is given. ``ConfigError`` for a value that is neither."""
    if verbose:
        return logging.DEBUG
    raw = (os.environ if env is None else env).get(ENV, "").strip()
    if not raw:
        return None
    if raw.isdigit():
        return int(raw)
    if raw.lower() in _LEVELS:
        return int(getattr(logging, raw.upper()))
    raise ConfigError(f"{ENV}={raw!r}: expected one of {', '.join(_LEVELS)} or a number")


def setup_cli(verbose: bool) -> None:
    """The CLI's diagnostics on stderr at the level asked for; nothing when none is."""
    level = level_from(verbose)
    _reset()
    if level is None:
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter(FORMAT))
    _attach(handler, level)


def setup_runner(path: Path) -> None:
    """The runner's diagnostics in the file ``path`` (appended), at ``$DSTACK_LOG_LEVEL`` or
    debug: a runner's file is read after something went wrong. A file that cannot be opened
    leaves the runner without one rather than failing the job."""
    level = level_from(False)
    _reset()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(path, encoding="utf-8")
    except OSError:
        return
    handler.setFormatter(logging.Formatter(FORMAT))
    _attach(handler, logging.DEBUG if level is None else level)


def _attach(handler: logging.Handler, level: int) -> None:
    for name in LOGGERS:
        logger = logging.getLogger(name)
        logger.setLevel(level)
        logger.addHandler(handler)
        logger.propagate = False


def _reset() -> None:
    """Drop the handlers an earlier set-up attached (a forked runner inherits the CLI's), and
    keep Python's last-resort stderr handler out of the way when there is none."""
    for name in LOGGERS:
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
            if not isinstance(handler, logging.NullHandler):
                handler.close()
        logger.addHandler(logging.NullHandler())
        logger.setLevel(logging.NOTSET)
        logger.propagate = True
