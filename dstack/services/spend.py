"""What runs spent, for `dstack ps`, `dstack cost` and the dashboard: each cloud run's
recorded spend (``dstack.state.spend``), or its estimate while it runs or until its stack is
destroyed; a local run costs nothing (None). Sums by repo, user and month over every repo of
the store."""

from __future__ import annotations

import datetime
import re
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from dstack import state
from dstack.errors import DstackError, InvalidStateError, RunNotFoundError
from dstack.models import RunRecord, RunSummary
from dstack.services.context import Context
from dstack.state import spend
from dstack.state.spend import RunSpend
from dstack.storage.base import Storage

GROUPINGS = ("repo", "user", "month")
#: runs read at once by `ps` (each a few requests on S3)
_READERS = 8
_MONTH = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")


def costs_of(
    ctx: Context, summaries: Iterable[RunSummary], now: float | None = None
) -> dict[str, RunSpend | None]:
    """The spend of each listed run of the current repo (None: it ran nothing in a cloud).
    One listing finds the repo's cloud runs; only those are read."""
    at = time.time() if now is None else now
    cloud = spend.cloud_runs(ctx.storage, ctx.repo_id)
    names = [s.run_name for s in summaries]
    read = [name for name in names if name in cloud]

    def one(name: str) -> RunSpend | None:
        return _spend_of_name(ctx.storage, ctx.repo_id, name, at)

    with ThreadPoolExecutor(_READERS) as pool:  # a few requests each, on S3
        spends = dict(zip(read, pool.map(one, read), strict=True))
    return {name: spends.get(name) for name in names}


def money(usd: float) -> str:
    """``$1,234.50``; ``<$0.01`` for a fraction of a cent."""
    if 0 < usd < 0.01:
        return "<$0.01"
    return f"${usd:,.2f}"


def cost_text(found: RunSpend | None, now: float | None = None) -> str:
    """A run's cost in one cell: ``-`` for one that cost nothing (local), ``$1.23``, and
    ``$1.23+`` while it runs."""
    if found is None:
        return "-"
    at = time.time() if now is None else now
    return money(found.total(at)) + ("+" if found.running else "")


def cost_note(found: RunSpend | None) -> str:
    """Where the cost comes from, in a few words."""
    if found is None:
        return "it ran on this machine"
    if found.running:
        return "so far: still running"
    return "recorded" if found.final else "from its runners' times, until its stack is destroyed"


def spend_of(ctx: Context, run: RunRecord, now: float | None = None) -> RunSpend | None:
    try:
        return spend.spend_of(ctx.storage, run, time.time() if now is None else now)
    except DstackError:
        return None


@dataclass
class CostRow:
    """What the cloud runs of one group (a repo, a user or a month) spent."""

    key: str
    runs: int = 0
    running: int = 0
    usd: float = 0.0
    hours: float = 0.0


@dataclass
class CostReport:
    by: str
    since: str | None
    rows: list[CostRow] = field(default_factory=list)
    #: runs whose records could not be read (damaged), left out of the sums
    skipped: int = 0

    @property
    def total(self) -> float:
        return sum(row.usd for row in self.rows)


def parse_month(text: str) -> float:
    """``2026-11`` → the month's first second (UTC); InvalidStateError otherwise."""
    match = _MONTH.match(text.strip())
    if match is None:
        raise InvalidStateError(
            f"--since {text!r} is not a month: write it as YYYY-MM (for example 2026-11)"
        )
    year, month = int(match.group(1)), int(match.group(2))
    return datetime.datetime(year, month, 1, tzinfo=datetime.UTC).timestamp()


def month_of(at: float) -> str:
    return datetime.datetime.fromtimestamp(at, datetime.UTC).strftime("%Y-%m")


def cost_report(
    ctx: Context, *, by: str = "repo", since: str | None = None, now: float | None = None
) -> CostReport:
    """What the cloud runs of every repo of the store spent, summed by ``by``; a run counts
    in the month it was submitted (UTC), and only from ``since`` (``YYYY-MM``) on."""
    if by not in GROUPINGS:
        raise InvalidStateError(f"--by {by!r}: choose one of {', '.join(GROUPINGS)}")
    now = time.time() if now is None else now
    start = parse_month(since) if since else None
    report = CostReport(by=by, since=since)
    rows: dict[str, CostRow] = {}
    for repo_id in list(spend.spending_repos(ctx.storage)):
        for run_name in spend.cloud_runs(ctx.storage, repo_id):
            try:
                found = _spend_of_any(ctx.storage, repo_id, run_name, now)
            except DstackError:
                report.skipped += 1
                continue
            if found is None or (start is not None and found.submitted_at < start):
                continue
            key = {"repo": repo_id, "user": found.owner, "month": month_of(found.submitted_at)}
            row = rows.setdefault(key[by], CostRow(key[by]))
            row.runs += 1
            row.running += 1 if found.running else 0
            row.usd += found.total(now)
            row.hours += sum(node.hours(now) for node in found.nodes)
    report.rows = sorted(rows.values(), key=lambda r: (-r.usd, r.key) if by != "month" else r.key)
    return report


def _spend_of_any(storage: Storage, repo_id: str, run_name: str, now: float) -> RunSpend | None:
    """A run's spend, or a removed run's kept one; DstackError if neither can be read."""
    try:
        run = state.read_run(storage, repo_id, run_name)
    except RunNotFoundError:
        kept = spend.read_spend(storage, repo_id, run_name)
        if kept is None:
            raise
        return kept
    return spend.spend_of(storage, run, now)


def _spend_of_name(storage: Storage, repo_id: str, run_name: str, now: float) -> RunSpend | None:
    try:
        recorded = spend.read_spend(storage, repo_id, run_name)
        if recorded is not None and recorded.final:
            return recorded
        return spend.spend_of(storage, state.read_run(storage, repo_id, run_name), now)
    except DstackError:
        return None
