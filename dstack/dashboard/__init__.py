"""`dstack dashboard`: a web app over the state store, for people without a terminal.

It reads the same store as the CLI, through the same services, and needs nothing else running.
Only `dstack dashboard` imports this package (the web libraries are the ``dashboard`` extra), so
the rest of the CLI never pays for them. What each module owns:

* :mod:`.server`    binding the socket, the token, the login file, the printed URL, uvicorn
* :mod:`.auth`      signing in with the token, the session cookie on every request, and CSRF
* :mod:`.app`       the Starlette routes: pages, the log stream, downloads, stop
* :mod:`.pages`     what each page shows, read from the store (no HTTP here)
* :mod:`.logstream` a run's output as server-sent events, as `dstack logs -a` follows it, and
  how many streams a browser may hold
* :mod:`.ansi`      terminal colors to HTML
* :mod:`.files`     artifacts as a tree, and folders streamed as zip archives
* :mod:`.lineage`   tags and deps across repos, as a graph drawn in SVG
* :mod:`.layout`    a layered layout of such a graph, edges routed between the boxes
* :mod:`.infra`     a cloud run's recorded plan as rows of a table

The server never writes to the store, except when someone confirms Stop on a run.
"""

from __future__ import annotations

REQUIRED = ("starlette", "uvicorn", "jinja2")
INSTALL_HINT = "pip install 'dstack[dashboard]'"


def missing_libraries() -> list[str]:
    """The web libraries this package needs that are not installed."""
    from importlib.util import find_spec

    return [name for name in REQUIRED if find_spec(name) is None]
