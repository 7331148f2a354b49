"""`dstack cost [--by repo|user|month] [--since YYYY-MM] [--json]`: what the cloud runs of
every repo in the store spent, summed."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    app.command(
        "cost",
        help="Show what cloud runs spent, summed by repo, user or month, over every repo in the "
        "state store (a run counts in the month it was submitted, UTC; local runs cost nothing).",
    )(cost)


def cost(
    by: str = typer.Option(
        "repo", "--by", metavar="repo|user|month", help="What to sum by (default: repo)."
    ),
    since: str = typer.Option(
        None, "--since", metavar="YYYY-MM", help="Only runs submitted in this month or later."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    from dstack import api
    from dstack.cli import render
    from dstack.services.spend import cost_report, money

    report = cost_report(api.Context(), by=by, since=since)
    if as_json:
        render.print_json(
            {
                "by": report.by,
                "since": report.since,
                "total_usd": round(report.total, 4),
                "rows": [
                    {by: row.key, "runs": row.runs, "running": row.running,
                     "usd": round(row.usd, 4), "hours": round(row.hours, 4)}
                    for row in report.rows
                ],
                "skipped": report.skipped,
            }
        )  # fmt: skip
        return
    if not report.rows:
        since_text = f" since {since}" if since else ""
        print(f"No cloud run has spent anything{since_text} in this state store")
        return
    table = [
        [row.key, str(row.runs), money(row.usd) + ("+" if row.running else ""), f"{row.hours:.1f}"]
        for row in report.rows
    ]
    table.append(["total", str(sum(r.runs for r in report.rows)), money(report.total), ""])
    render.table([by.upper(), "RUNS", "COST", "HOURS"], table)
    if any(row.running for row in report.rows):
        print("\n+: runs still running, counted up to now")
    if report.skipped:
        print(f"{report.skipped} run(s) with unreadable records were left out")
