"""Showing a run's output live in the terminal, with Ctrl+C handling, for `run` and `logs`."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from dstack.errors import StorageError
from dstack.models import JobStatus
from dstack.services.context import Context
from dstack.services.runs import RunView


def stream_run(
    ctx: Context,
    view: RunView,
    *,
    attach: bool,
    since: float | None = None,
    interactive: bool = False,
    stop_on_signal: bool = False,
) -> int:
    """Print the run's output to stdout (status lines to stderr); return the exit code that
    `dstack run` should exit with: the job's own, 0 when done, 1 otherwise.

    Ctrl+C in a terminal asks whether to stop the run. Without a terminal (CI, ``timeout -s
    INT``) SIGINT and SIGTERM stop the run when ``stop_on_signal`` (the attached `dstack run`),
    and only detach otherwise (`dstack logs -a`)."""
    import signal

    previous = signal.getsignal(signal.SIGTERM)
    if stop_on_signal:
        signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        return _stream(ctx, view, attach=attach, since=since, interactive=interactive,
                       stop_on_signal=stop_on_signal)  # fmt: skip
    finally:
        if stop_on_signal:
            signal.signal(signal.SIGTERM, previous)


def follow_new_run(
    ctx: Context, name: str, header: str, warnings: list[str], view: Callable[[], RunView]
) -> int:
    """An attached `dstack run` or `restart` from the line naming the run (``header``) to its
    end: ``stream_run``'s exit code. A Ctrl+C before the output is followed is one while
    following it."""
    try:
        print(header, file=sys.stderr, flush=True)
        print_warnings(warnings)
        current = view()
    except KeyboardInterrupt:
        return on_interrupt(ctx, name, interactive=True, stop_on_signal=True)
    return stream_run(ctx, current, attach=True, interactive=True, stop_on_signal=True)


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _stream(
    ctx: Context,
    view: RunView,
    *,
    attach: bool,
    since: float | None,
    interactive: bool,
    stop_on_signal: bool,
) -> int:
    from dstack.cli.apps import AppAnnouncer
    from dstack.cli.control_strings import ControlStringFilter
    from dstack.services.logs import Missing, Output, StatusChange, StoreProblem, follow

    name = view.run.run_name
    statuses = [s.status for s in view.states]
    reasons: list[str | None] = [s.reason for s in view.states]
    exit_codes: list[int | None] = [s.exit_code for s in view.states]
    spinner = _Spinner(enabled=interactive and attach and sys.stderr.isatty())
    out = sys.stdout.buffer
    controls = ControlStringFilter()  # another user's output never drives your terminal
    announcer = AppAnnouncer(ctx, view, enabled=attach)  # prints app URLs once they answer
    try:
        if attach and interactive and not view.status.is_finished:
            # before anything of the job's: whatever the job prints first, this line comes
            # first; and a Ctrl+C the moment it is seen is handled as any later one
            print("To interrupt, press Ctrl+C.\n", file=sys.stderr, flush=True)
        for event in follow(ctx, view, attach=attach, since=since):
            if isinstance(event, Output):
                spinner.done()
                out.write(controls.feed(event.data))
                out.flush()
            elif isinstance(event, StoreProblem):
                spinner.done()
                out.flush()
                if event.message:
                    print(f"[dstack] {event.message}; the run's output and status wait in its "
                          "runner until space is freed", file=sys.stderr)  # fmt: skip
                else:
                    print("[dstack] the store can be written again", file=sys.stderr)
            elif isinstance(event, Missing):
                spinner.done()
                out.flush()
                print(f"[dstack] {event.message}", file=sys.stderr)
            elif isinstance(event, StatusChange):
                statuses[event.job_index] = event.state.status
                reasons[event.job_index] = event.state.reason
                exit_codes[event.job_index] = event.state.exit_code
                announcer.on_state(event.job_index, event.state)
                if event.state.status in (JobStatus.SUBMITTED, JobStatus.PROVISIONING):
                    spinner.start("Provisioning...")
                elif event.state.status is JobStatus.DOWNLOADING:
                    spinner.start("Downloading deps...")
                elif event.state.status is JobStatus.RUNNING:
                    spinner.done()
    except KeyboardInterrupt:
        spinner.done()
        return on_interrupt(ctx, name, interactive, stop_on_signal)
    except StorageError as exc:  # the store is gone for longer than its retries: not the run
        spinner.done()
        if not attach:
            raise
        raise StorageError(
            f"{exc}; the run {name} goes on: re-attach with `dstack logs -a {name}`"
        ) from exc
    finally:
        announcer.close()
        out.write(controls.flush())
        out.flush()
    spinner.done()
    return _report(name, statuses, reasons, exit_codes, attach)


def _report(
    name: str,
    statuses: list[JobStatus],
    reasons: list[str | None],
    exit_codes: list[int | None],
    attach: bool,
) -> int:
    from dstack.models import run_status

    status = run_status(statuses)
    if not status.is_finished:
        return 0
    if status is JobStatus.DONE:
        return 0
    reason = next((r for s, r in zip(statuses, reasons, strict=True) if s is status and r), None)
    if attach or status is not JobStatus.DONE:
        print(f"Run {name} {status.value}" + (f": {reason}" if reason else ""), file=sys.stderr)
    # the exit code of a failed job (the other nodes of a multi-node run were stopped)
    failed = [c for s, c in zip(statuses, exit_codes, strict=True) if s is JobStatus.FAILED]
    code = next((c for c in failed + exit_codes if c), None)
    return code if status is JobStatus.FAILED and code else 1


def on_interrupt(ctx: Context, name: str, interactive: bool, stop_on_signal: bool) -> int:
    """What a Ctrl+C (or SIGTERM) on an attached run does: without a terminal it stops the
    run when ``stop_on_signal``; in one it asks; otherwise it detaches. The exit code (130)."""
    from dstack.services.runs import stop

    if stop_on_signal and not sys.stdin.isatty():  # nobody to ask: the run ends with us
        view = stop(ctx, name)
        print(f"\nRun {name} {view.status.value} (interrupted without a terminal)", file=sys.stderr)
        return 130
    if interactive and sys.stdin.isatty():
        try:
            answer = input(f"\nStop the run {name}? [y/N] ").strip().lower()
        except (EOFError, KeyboardInterrupt):
            answer = ""
        if answer in ("y", "yes"):
            view = stop(ctx, name)
            print(f"Run {name} {view.status.value}", file=sys.stderr)
            return 130
    print(f"\nDetached; the run goes on. Re-attach with `dstack logs -a {name}`", file=sys.stderr)
    return 130


def print_warnings(warnings: list[str]) -> None:
    for warning in warnings:
        print(f"Warning: {warning}", file=sys.stderr)


class _Spinner:
    """rich's status spinner on a terminal; nothing otherwise."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._status: Any = None
        self._text = ""

    def start(self, text: str) -> None:
        if not self.enabled or self._status is not None:
            return
        from rich.console import Console

        self._status = Console(stderr=True).status(text)
        self._text = text
        self._status.start()

    def done(self) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None
            print(f"{self._text} done", file=sys.stderr)
