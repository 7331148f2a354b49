"""`dstack ps [RUN] [-a] [-w] [--json]`: the runs of this repository (and, for one run, its
deps and its attempts)."""

from __future__ import annotations

import sys
import time

import typer


def register(app: typer.Typer) -> None:
    app.command(
        "ps",
        help="Show runs: the unfinished ones and the latest, or all with -a. Newest first, in the "
        "table as in --json (-n N: the N newest).",
    )(ps)


def ps(
    run_name: str = typer.Argument(None, metavar="RUN", help="Show only this run."),
    all_runs: bool = typer.Option(False, "-a", "--all", help="Show all runs."),
    watch: bool = typer.Option(False, "-w", "--watch", help="Refresh every second."),
    last: int = typer.Option(None, "-n", "--last", help="Show the N newest runs."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    repo: str = typer.Option(
        None, "--repo", metavar="REPO", help="Another repo's runs: HOST/OWNER/NAME or local/NAME."
    ),
) -> None:
    from dstack import api
    from dstack.services import spend

    ctx = api.Context()
    if repo is not None:
        ctx.use_repo(repo)
    while True:
        if run_name:
            view = api.get_run(ctx, run_name)
            rows = [
                {**_view_row(view), "attempts": _attempts(ctx, view), **_stopped_by(ctx, view),
                 "spend_of": spend.spend_of(ctx, view.run)}
            ]  # fmt: skip
        else:
            summaries = api.list_runs(ctx, all_runs=all_runs, limit=last)
            costs = spend.costs_of(ctx, summaries)
            rows = [{**_summary_row(s), "spend_of": costs.get(s.run_name)} for s in summaries]
        if watch and not as_json:
            print("\x1b[2J\x1b[H", end="")
        _show(rows, as_json)
        if not watch:
            if not as_json and not run_name and repo is None:
                _hint_local_runs(ctx)
            return
        time.sleep(1.0)


def _stopped_by(ctx, view) -> dict:  # type: ignore[no-untyped-def]
    """Who asked the run to stop (or abort), if anyone did."""
    from dstack.state.actions import read_stop

    for job in view.jobs:
        action = read_stop(ctx.storage, job.repo.repo_id, job.run_name, job.job_index)
        if action is not None:
            return {"stopped_by": action.who, "stop_request": action.request}
    return {}


def _hint_local_runs(ctx) -> None:  # type: ignore[no-untyped-def]
    from dstack.services.notices import first_time
    from dstack.services.runs import runs_left_under_local_id

    old = runs_left_under_local_id(ctx)
    if old and first_time("local-runs", ctx.repo_id):  # once per repo, as the other notices
        print(
            f"Runs made before this repo had a git remote are under {old}; see them with "
            f"`dstack ps -a --repo {old}`",
            file=sys.stderr,
        )


def _summary_row(summary) -> dict:  # type: ignore[no-untyped-def]
    return {
        "run": summary.run_name,
        "workflow": summary.workflow,
        "submitted_at": summary.submitted_at,
        "owner": summary.owner,
        "status": summary.status,
        "exit_code": summary.exit_code,
        "jobs": summary.job_count,
    }


def _view_row(view) -> dict:  # type: ignore[no-untyped-def]
    reasons = [s.reason for s in view.states if s.reason]
    codes = [s.exit_code for s in view.states if s.exit_code is not None]
    return {
        "run": view.run.run_name,
        "workflow": view.run.workflow,
        "submitted_at": view.run.submitted_at,
        "owner": view.run.owner.display,
        "owner_email": view.run.owner.git_email,
        "owner_user": f"{view.run.owner.user}@{view.run.owner.hostname}",
        "status": view.status,
        "exit_code": codes[0] if codes else None,
        "jobs": view.run.job_count,
        "reason": reasons[0] if reasons else None,
        "branch": view.run.repo.branch,
        "commit": view.run.repo.commit,
        "dirty": view.run.repo.dirty,
        "args": view.run.args,
        "tag": view.run.tag,
        "restarted_from": view.run.restarted_from,
        "deps": [
            {"repo": d.repo_id, "run": d.run_name, "tag": d.tag, "workflow": d.workflow}
            for d in view.run.deps
        ],
    }


def _show(rows: list[dict], as_json: bool) -> None:
    from dstack.cli import render
    from dstack.cli.spend_render import cost_json, spend_lines
    from dstack.services.spend import cost_text

    now = time.time()
    if as_json:
        render.print_json(
            [
                {
                    **{k: v for k, v in r.items() if k != "spend_of"},
                    "status": r["status"].value,
                    "submitted_at": render.iso(r["submitted_at"]),
                    **cost_json(r["spend_of"], now, nodes=len(rows) == 1 and "attempts" in r),
                }
                for r in rows
            ]
        )
        return
    if not rows:
        print(
            "No runs yet: try `dstack run WORKFLOW` (`dstack workflows` lists them)",
            file=sys.stderr,
        )
        return
    table_rows = [
        [
            r["run"],
            r["workflow"],
            render.ago(r["submitted_at"], now),
            r["owner"],
            render.status_text(r["status"])
            + (f" ({r['exit_code']})" if r.get("exit_code") not in (None, 0) else ""),
            cost_text(r["spend_of"], now),
        ]
        for r in rows  # newest first, as --json and the dashboard list them
    ]
    render.table(["RUN", "WORKFLOW", "SUBMITTED", "OWNER", "STATUS", "COST"], table_rows)
    if len(rows) == 1 and "attempts" in rows[0] and rows[0]["spend_of"] is not None:
        print("\n" + "\n".join(spend_lines(rows[0]["spend_of"], now)))
    if len(rows) == 1 and rows[0].get("reason"):
        print(f"\n{rows[0]['run']}: {rows[0]['reason']}")
    if len(rows) == 1 and rows[0].get("stopped_by"):
        verb = "aborted" if rows[0]["stop_request"] == "abort" else "stopped"
        print(f"{verb} by {rows[0]['stopped_by']}")
    if len(rows) == 1 and rows[0].get("deps"):
        print(f"\ndeps: {', '.join(_dep_text(d) for d in rows[0]['deps'])}")
    if len(rows) == 1 and len(rows[0].get("attempts", [])) > 1:
        print()
        for attempt in rows[0]["attempts"]:
            why = f" ({attempt['reason']})" if attempt["reason"] else ""
            print(f"attempt {attempt['attempt']}: {attempt['status']}{why}")


def _attempts(ctx, view) -> list[dict]:  # type: ignore[no-untyped-def]
    """Every attempt of the run's first job, the current one last."""
    from dstack.services.runs import attempts_of

    return [
        {
            "attempt": a.attempt,
            "status": a.status.value,
            "reason": a.reason,
            "exit_code": a.exit_code,
        }
        for a in attempts_of(ctx, view)
    ]


def _dep_text(dep: dict) -> str:
    what = f":{dep['tag']}" if dep["tag"] else dep["workflow"]
    source = f"run {dep['run']}" if dep["run"] else "uploaded files"
    return f"{what} ({source}, {dep['repo']})"
