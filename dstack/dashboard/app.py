"""The Starlette application: pages, the live log stream, metrics, downloads, Stop and Restart.

Endpoints are plain functions (Starlette runs them in its thread pool, since the store is read
with blocking calls). Repos and runs are named in query parameters, because repo ids hold
slashes. Every request has passed :class:`.auth.TokenGuard` before it gets here.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode

import anyio
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from dstack import state
from dstack.dashboard import auth, charts, files, infra, lineage, logstream, pages, render
from dstack.dashboard.files import printable
from dstack.errors import DstackError, NotFoundError, RunNotFoundError
from dstack.services import artifacts as artifact_service
from dstack.services import infra as infra_service
from dstack.services import restart as restart_service
from dstack.services import runs as run_service
from dstack.services.context import Context

HERE = Path(__file__).parent


def create_app(ctx: Context, token: str, *, cookie: str = "dstack_dashboard") -> Starlette:
    """The dashboard over ``ctx``'s store; every request must hold ``token``."""
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.finalize = render.finalize
    templates.env.globals.update(render.GLOBALS)
    templates.env.globals["form_token"] = auth.form_token(token)
    templates.env.globals["store"] = _home_relative(ctx.storage.describe())
    templates.env.globals["max_compared"] = charts.MAX_COMPARED
    stops: dict[str, threading.Thread] = {}
    streams = logstream.StreamCounter()
    readers: list[anyio.CapacityLimiter] = []  # made on the first stream: it needs the loop

    def page(request: Request, name: str, status_code: int = 200, **values: Any) -> Response:
        return templates.TemplateResponse(request, name, values, status_code=status_code)

    def failure(request: Request, exc: Exception) -> Response:
        code = 404 if isinstance(exc, (RunNotFoundError, NotFoundError)) else 502
        message = str(exc)
        if isinstance(exc, UnicodeError):  # a name in the store that is not UTF-8
            message = f"the store holds a name this page cannot read ({exc})"
        return page(request, "error.html", status_code=code, message=message)

    def repos(request: Request) -> Response:
        return page(request, "repos.html", repos=pages.repos(ctx))

    def runs(request: Request) -> Response:
        repo_id = _checked_repo(request.query_params.get("repo", ""))
        if not state.repo_exists(ctx.storage, repo_id):
            return page(request, "error.html", status_code=404, heading="No such repo",
                        message=f"There is no repo {repo_id} in this store.")  # fmt: skip
        filters = pages.Filters(
            status=request.query_params.get("status", ""),
            workflow=request.query_params.get("workflow", "").strip(),
            owner=request.query_params.get("owner", "").strip(),
        )
        number = _int(request.query_params.get("page"), 1)
        found = pages.runs_page(ctx, repo_id, filters, number)
        metric = request.query_params.get("metric", "").strip()
        column = {}
        if metric:
            names = [row.summary.run_name for row in found.rows]
            column = charts.last_values(pages.repo_context(ctx, repo_id), names, metric)
        query = {"repo": repo_id, "status": filters.status, "workflow": filters.workflow,
                 "owner": filters.owner, "metric": metric}  # fmt: skip
        template = "runs_table.html" if request.query_params.get("fragment") else "runs.html"
        return page(request, template, runs=found, filters=filters, query=query,
                    statuses=render.STATUS_CHOICES, metric=metric, column=column)  # fmt: skip

    def metric_names(request: Request) -> Response:
        repo_id = _checked_repo(request.query_params.get("repo", ""))
        runs = [_checked_run(r) for r in request.query_params.getlist("run")][: pages.PAGE_SIZE]
        names = charts.metric_names(pages.repo_context(ctx, repo_id), runs)
        return JSONResponse({"metrics": names}, headers={"Cache-Control": "no-store"})

    def run_metrics(request: Request) -> Response:
        """JSON, errors included (a script or the page's poller reads it)."""
        raw = request.query_params.get("after") or "0"
        if not raw.isdigit():
            error = f"after={raw!r}: expected a count of points (0 or more)"
            return JSONResponse({"error": error}, status_code=400)
        try:
            repo_id, run_name = _run_params(request)
            found = charts.run_points(pages.repo_context(ctx, repo_id), run_name, int(raw))
        except (RunNotFoundError, NotFoundError) as exc:
            return JSONResponse({"error": str(exc)}, status_code=404)
        return JSONResponse(found, headers={"Cache-Control": "no-store"})

    def compare_page(request: Request) -> Response:
        repo_id = _checked_repo(request.query_params.get("repo", ""))
        runs = [_checked_run(r) for r in request.query_params.getlist("run")]
        if len(runs) > charts.MAX_COMPARED:
            return page(request, "error.html", status_code=400,
                        message=f"{len(runs)} runs picked: the compare view overlays at most "
                        f"{charts.MAX_COMPARED}; pick fewer in the runs table")  # fmt: skip
        metric = request.query_params.get("metric", "").strip()
        found = charts.compare(pages.repo_context(ctx, repo_id), runs, metric)
        return page(request, "compare.html", repo_id=repo_id, found=found)

    def run(request: Request) -> Response:
        return run_page(request, *_run_params(request))

    def run_page(
        request: Request, repo_id: str, run_name: str, status_code: int = 200, refusal: str = ""
    ) -> Response:
        detail = pages.run_detail(ctx, repo_id, run_name)
        multi = len(detail.jobs) > 1
        kept, refused = files.readable(detail.artifacts)
        tree = files.tree(kept, multi)
        listing = files.folder_page(
            tree, request.query_params.get("dir", ""), _int(request.query_params.get("files"), 1)
        )
        return page(request, "run.html", status_code, run=detail, repo_id=repo_id, tree=tree,
                    listing=listing, fold_above=files.FOLDER_PAGE, refused=refused,
                    stopping=run_name in stops, restart_refused=refusal)  # fmt: skip

    async def logs(request: Request) -> Response:
        repo_id, run_name = _run_params(request)
        view = await run_in_threadpool(
            run_service.get_run, pages.repo_context(ctx, repo_id), run_name, refresh=False
        )
        client = str(request.scope.get(auth.SESSION_KEY, ""))
        if not streams.acquire(client):
            message = (
                f"too many live logs open ({streams.per_client} per browser, {streams.in_all} "
                "in all): close some run pages, then reload this one"
            )
            return page(request, "error.html", status_code=429, message=message)
        if not readers:
            readers.append(anyio.CapacityLimiter(8))

        async def events() -> AsyncIterator[str]:
            try:
                async for event in logstream.log_events(ctx.storage, view, readers[0]):
                    yield event
            finally:  # also when the browser goes away (the stream is cancelled)
                streams.release(client)

        return StreamingResponse(
            events(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    def artifact(request: Request) -> Response:
        repo_id, run_name = _run_params(request)
        view = run_service.get_run(pages.repo_context(ctx, repo_id), run_name, refresh=False)
        listing, _ = files.readable(
            artifact_service.list_artifacts(pages.repo_context(ctx, repo_id), view)
        )
        multi = len(view.jobs) > 1
        if "folder" in request.query_params:
            folder = request.query_params["folder"].strip("/")
            chosen = files.in_folder(listing, folder, multi)
            if not chosen:
                raise NotFoundError(f"no artifacts under {folder or '/'} in run {run_name}")
            name = printable((folder.rsplit("/", 1)[-1] or run_name) if folder else run_name)
            return StreamingResponse(
                files.zip_stream(ctx.storage, chosen, folder, multi),
                media_type="application/zip",
                headers=_attachment(f"{name}.zip"),
            )
        path = request.query_params.get("path", "")
        found = files.find_file(listing, path, multi)
        if found is None:
            raise NotFoundError(f"no artifact {path!r} in run {run_name}")
        shown = printable(files.shown_path(found, multi))
        headers = {**_attachment(shown.rsplit("/", 1)[-1]), "Content-Length": str(found.size)}
        return StreamingResponse(
            ctx.storage.read_chunks(found.key), media_type="application/octet-stream",
            headers=headers,
        )  # fmt: skip

    async def confirmed_form(request: Request, action: str) -> dict[str, str] | Response:
        """The form of a request that changes something, or the page refusing it: it must
        carry the form token, come from this dashboard's own page, and be confirmed."""
        # a urlencoded form, read here: one small body needs no multipart parser
        form = dict(parse_qsl((await request.body())[:65536].decode(errors="replace")))
        given = str(form.get("form_token", ""))
        if not auth.same(given, auth.form_token(token)) or not auth.same_origin(
            request.headers, request.scope
        ):
            return page(request, "error.html", status_code=403,
                        message=f"refused: {action} must be confirmed from this dashboard's "
                        "own page")  # fmt: skip
        if form.get("confirm") != "yes":
            return page(request, "error.html", status_code=400,
                        message=f"{action} was not confirmed")  # fmt: skip
        return form

    async def stop(request: Request) -> Response:
        form = await confirmed_form(request, "Stop")
        if isinstance(form, Response):
            return form
        repo_id = _checked_repo(str(form.get("repo", "")))
        run_name = str(form.get("run", ""))
        abort = form.get("abort") == "yes"
        repo_ctx = pages.repo_context(ctx, repo_id)
        # a 404 before anything is written
        await run_in_threadpool(run_service.get_run, repo_ctx, run_name, refresh=False)
        if run_name not in stops or not stops[run_name].is_alive():
            stops[run_name] = threading.Thread(
                target=_stop_run, args=(repo_ctx, run_name, abort), daemon=True
            )
            stops[run_name].start()
        return RedirectResponse(_run_url(repo_id, run_name), status_code=303)

    async def restart(request: Request) -> Response:
        """What `dstack restart RUN` does, then the new run's page; a refusal (the run's code
        gone, its spec not the pinned one) is one line on RUN's page, nothing written."""
        form = await confirmed_form(request, "Restart")
        if isinstance(form, Response):
            return form
        repo_id = _checked_repo(str(form.get("repo", "")))
        run_name = _checked_run(str(form.get("run", "")))
        repo_ctx = pages.repo_context(ctx, repo_id)
        try:
            submission = await run_in_threadpool(restart_service.restart, repo_ctx, run_name)
        except (RunNotFoundError, NotFoundError):
            raise
        except DstackError as exc:
            refusal = f"Not restarted: {exc}"
            return await run_in_threadpool(run_page, request, repo_id, run_name, 409, refusal)
        return RedirectResponse(_run_url(repo_id, submission.run.run_name), status_code=303)

    def lineage_page(request: Request) -> Response:
        graph = lineage.build(ctx.storage)
        focus = request.query_params.get("node")
        if focus and focus in graph.nodes:
            graph = lineage.focus(graph, focus)
        return page(request, "lineage.html", graph=graph, focus=focus, size=lineage)

    def infra_page(request: Request) -> Response:
        repo_id, run_name = _run_params(request)
        view = infra_service.show(pages.repo_context(ctx, repo_id), run_name)
        plan = view.record("plan")
        return page(request, "infra.html", view=view, repo_id=repo_id,
                    rows=infra.resource_rows(plan) if plan else [])  # fmt: skip

    def guarded(endpoint: Any) -> Any:
        if _is_async(endpoint):

            async def wrapper_async(request: Request) -> Response:
                try:
                    return await endpoint(request)
                except (DstackError, UnicodeError) as exc:
                    return failure(request, exc)

            return wrapper_async

        def wrapper(request: Request) -> Response:
            try:
                return endpoint(request)
            except (DstackError, UnicodeError) as exc:
                return failure(request, exc)

        return wrapper

    routes = [
        Route("/", guarded(repos)),
        Route("/runs", guarded(runs)),
        Route("/run", guarded(run)),
        Route("/run/logs", guarded(logs)),
        Route("/run/metrics", guarded(run_metrics)),
        Route("/runs/metric-names", guarded(metric_names)),
        Route("/compare", guarded(compare_page)),
        Route("/run/artifact", guarded(artifact)),
        Route("/run/stop", guarded(stop), methods=["POST"]),
        Route("/run/restart", guarded(restart), methods=["POST"]),
        Route("/infra", guarded(infra_page)),
        Route("/lineage", guarded(lineage_page)),
        Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
    ]
    middleware = [Middleware(auth.TokenGuard, sessions=auth.Sessions(token), cookie=cookie)]
    return Starlette(routes=routes, middleware=middleware)


def _stop_run(ctx: Context, run_name: str, abort: bool) -> None:
    """What `dstack stop` does: stop (or abort) the run, then release a cloud run's stack."""
    try:
        run_service.stop(ctx, run_name, abort=abort)
        infra_service.release(ctx, run_name)
    except DstackError:
        pass  # the run page shows the run's state; the store holds the rest


def _home_relative(where: str) -> str:
    home = str(Path.home())
    return "~" + where[len(home) :] if where.startswith(home + "/") else where


def _run_params(request: Request) -> tuple[str, str]:
    repo_id = _checked_repo(request.query_params.get("repo", ""))
    return repo_id, _checked_run(request.query_params.get("run", ""))


def _checked_run(run_name: str) -> str:
    if not run_name or "/" in run_name or run_name in (".", "..") or "\0" in run_name:
        raise NotFoundError(f"no run named {run_name!r}")
    return run_name


def _checked_repo(repo_id: str) -> str:
    """A repo id from a request, refused unless it is one (it becomes part of store keys)."""
    segments = repo_id.split("/")
    if len(segments) < 2 or any(s in ("", ".", "..") or "\0" in s for s in segments):
        raise NotFoundError(f"no repo {repo_id!r} in this store")
    return repo_id


def _run_url(repo_id: str, run_name: str) -> str:
    return "/run?" + urlencode({"repo": repo_id, "run": run_name})


def _attachment(name: str) -> dict[str, str]:
    return {"Content-Disposition": f"attachment; filename*=UTF-8''{quote(name)}"}


def _int(value: str | None, default: int) -> int:
    try:
        return int(value) if value else default
    except ValueError:
        return default


def _is_async(fn: Any) -> bool:
    import inspect

    return inspect.iscoroutinefunction(fn)
