"""`dstack dashboard [--host H] [--port P] [--no-browser]`: runs, logs, artifacts, lineage and
infrastructure in the browser, over the configured store."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    app.command(
        "dashboard",
        help="Serve a web dashboard of the store's runs, logs, artifacts, lineage and "
        "infrastructure, and open it in the browser.",
    )(dashboard)


def dashboard(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    port: int = typer.Option(8000, "--port", help="Port to listen on (0: any free one)."),
    no_browser: bool = typer.Option(False, "--no-browser", help="Do not open a browser."),
) -> None:
    from dstack.dashboard import INSTALL_HINT, missing_libraries
    from dstack.errors import ConfigError

    if missing := missing_libraries():
        raise ConfigError(
            f"dstack dashboard needs {', '.join(missing)}: install them with {INSTALL_HINT}"
        )
    from dstack import api
    from dstack.dashboard.server import bind, serve

    binding = bind(host, port)
    serve(api.Context(), binding, open_browser=not no_browser)
