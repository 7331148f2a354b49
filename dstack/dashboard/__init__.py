"""`dstack dashboard`: a web app over the state store, for people without a terminal.

It reads the same store as the CLI, through the same services, and needs nothing else running;
only `dstack dashboard` imports this package (the web libraries are the ``dashboard`` extra).
``server`` binds the socket and signs browsers in (``auth``), ``app`` holds the routes, ``pages``
reads what each page shows, ``logstream`` follows a run's output, ``charts`` reads the
metrics the pages plot; ``ansi``, ``files``, ``lineage`` with ``layout``, and ``infra`` render
colors, artifacts, the lineage graph and a cloud run's plan. The server never writes to the
store, except when someone confirms Stop or Restart.
"""

from __future__ import annotations

REQUIRED = ("starlette", "uvicorn", "jinja2")
INSTALL_HINT = "pip install 'dstack[dashboard]'"


def missing_libraries() -> list[str]:
    """The web libraries this package needs that are not installed."""
    from importlib.util import find_spec

    return [name for name in REQUIRED if find_spec(name) is None]
