r"""Recording a cloud run's stack steps (plan, up, destroy) as its ``InfraRecord``\ s, as the
engine reports them: what `dstack infra RUN` and the dashboard show."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from dstack import state
from dstack.compute.aws import plan as offline_plan
from dstack.compute.aws.config import PROJECT
from dstack.compute.aws.driver import Recorder, StackDriver
from dstack.errors import DstackError
from dstack.models import InfraRecord, RunRecord
from dstack.storage.base import Storage


def run_recorder(
    storage: Storage,
    run: RunRecord,
    driver: StackDriver,
    rendering: offline_plan.Rendering | None,
    say: Callable[[str], None],
    outcome: dict[str, bool] | None = None,
    offers: dict[str, dict[str, Any]] | None = None,
) -> Recorder:
    """Writes each step as the run's InfraRecord, notes its outcome in ``outcome``, and
    reports it through ``say``; a record that cannot be written is said, not raised. A plan
    records ``offers``: the offer each job's instance is tried on."""
    by = who()

    def record(kind: str, fields: dict[str, Any]) -> None:
        if kind == "plan" and rendering is not None:
            fields = {**fields, "resources": [r.as_dict() for r in rendering.resources]}
        if kind == "plan" and offers:
            fields = {**fields, "offers": offers}
        entry = InfraRecord(
            kind=kind,
            stack=run.run_name,
            project=PROJECT,
            backend_url=driver.workspace.backend_url,
            at=time.time(),
            by=by,
            **fields,
        )
        if outcome is not None:
            outcome[kind] = entry.ok
        try:
            state.write_infra_record(storage, run.repo_id, run.run_name, entry)
        except DstackError as exc:
            say(f"could not record the {kind} of stack {run.run_name}: {exc}")
        summary = ", ".join(f"{n} to {op}" for op, n in entry.summary.items())
        status = "" if entry.ok else f" failed: {entry.error}"
        say(f"Stack {run.run_name}: {kind}{status}" + (f" ({summary})" if summary else ""))

    return record


def who() -> str:
    """``user@host`` of whoever drives the stack, as the records say it."""
    import getpass
    import socket

    try:
        return f"{getpass.getuser()}@{socket.gethostname()}"
    except Exception:
        return "unknown"
