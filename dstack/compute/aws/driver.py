"""Driving Pulumi stacks through the Automation API: preview → record → up, and destroy.

The plan is recorded *before anything is created*; a run's stack whose ``up`` fails or is
interrupted is destroyed before the error leaves, while the lasting bootstrap stack is left as
the engine left it. Tests inject a ``StackFactory`` in place of the Automation API. The
sequences and why: docs/design/cloud-runs.md.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from dstack.compute.aws.engine import (
    ENGINE_MISSING,
    SDK_MISSING,
    engine_command,
    engine_env,
    engine_path,
    require_engine,
)
from dstack.compute.aws.engine import brief as _brief
from dstack.compute.aws.engine import is_locked as _locked
from dstack.compute.aws.engine import lock_message as _lock_message
from dstack.errors import ComputeError

logger = logging.getLogger(__name__)

__all__ = [
    "ENGINE_MISSING",
    "SDK_MISSING",
    "ProvisioningInterrupted",
    "StackDriver",
    "Workspace",
    "engine_path",
    "require_engine",
]

Program = Callable[[], Any]
#: called with a record kind (plan, up, destroy) and the record's fields
Recorder = Callable[[str, dict[str, Any]], None]
#: the prefix of the folders the Automation API works in (removed when a sequence ends)
WORK_DIR_PREFIX = "dstack-pulumi-"


class ProvisioningInterrupted(ComputeError):
    """Ctrl+C while a stack was being created or updated (the message says what is left)."""

    exit_code = 130


class StackLike(Protocol):
    """The part of ``pulumi.automation.Stack`` the driver uses."""

    name: str

    def preview(self, **kwargs: Any) -> Any: ...
    def up(self, **kwargs: Any) -> Any: ...
    def destroy(self, **kwargs: Any) -> Any: ...
    def refresh(self, **kwargs: Any) -> Any: ...


#: opens (creates or selects) a stack by name with an inline program
StackFactory = Callable[[str, Program], StackLike]
#: removes a stack (and its history) from the backend
StackRemover = Callable[[StackLike], None]


@dataclass(frozen=True)
class Workspace:
    """Where stacks live and what the engine runs with."""

    project: str
    backend_url: str
    region: str
    secrets_provider: str = "passphrase"
    profile: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    #: resource plugins the programs need, as (name, version): installed before anything starts
    plugins: Sequence[tuple[str, str]] = ()

    def engine_env(self) -> dict[str, str]:
        base = {"AWS_REGION": self.region, "AWS_DEFAULT_REGION": self.region, **self.env}
        if self.profile:
            base["AWS_PROFILE"] = self.profile
        return engine_env(self.backend_url, base)


class StackDriver:
    """Runs the preview/up/destroy sequences of one project's stacks."""

    def __init__(
        self,
        workspace: Workspace,
        *,
        factory: StackFactory | None = None,
        remover: StackRemover | None = None,
        on_output: Callable[[str], None] | None = None,
    ) -> None:
        self.workspace = workspace
        self._injected = factory is not None
        self._factory = factory or automation_factory(workspace)
        self._remover = remover or _remove_with_workspace
        self.on_output = on_output

    def check(self) -> None:
        """ComputeError unless stacks can be driven here (the engine is installed and recent
        enough)."""
        if not self._injected:
            engine_command()

    def provision(
        self,
        stack_name: str,
        program: Program,
        record: Recorder,
        *,
        refresh: bool = False,
        ephemeral: bool = True,
    ) -> dict[str, Any]:
        """Preview (recorded before anything is created), then create or update the stack;
        return its outputs. When ``up`` fails or is interrupted, an ephemeral stack is
        destroyed first; a lasting one is left as it is."""
        self.check()
        stack = self._open(stack_name, program)
        try:
            return self._provision(stack, record, refresh=refresh, ephemeral=ephemeral)
        finally:
            _discard_work_dir(stack)

    def destroy(self, stack_name: str, record: Recorder, program: Program | None = None) -> bool:
        """Destroy the stack and remove it; True when nothing of it is left."""
        self.check()
        stack = self._open(stack_name, program or _no_program)
        try:
            return self._destroy(stack, record)
        finally:
            _discard_work_dir(stack)

    # helpers

    def _provision(
        self, stack: StackLike, record: Recorder, *, refresh: bool, ephemeral: bool
    ) -> dict[str, Any]:
        name = stack.name
        logger.info("stack %s: preview (refresh=%s)", name, refresh)
        try:
            preview = stack.preview(on_output=self._echo, diff=True, refresh=refresh or None)
        except BaseException as exc:
            logger.debug("stack %s: preview failed", name, exc_info=True)
            record("plan", {"ok": False, "error": _brief(exc)})
            if _locked(exc):
                raise ComputeError(_lock_message(name)) from exc
            if ephemeral:
                self._remove_quietly(stack)  # nothing was created
            if isinstance(exc, KeyboardInterrupt):
                raise ProvisioningInterrupted("interrupted before anything was created") from None
            raise ComputeError(f"previewing stack {name} failed: {_brief(exc)}") from exc
        record(
            "plan",
            {"ok": True, "summary": _summary(preview.change_summary), "diff": preview.stdout},
        )
        logger.info("stack %s: up", name)
        try:
            result = stack.up(on_output=self._echo, refresh=refresh or None)
        except BaseException as exc:
            logger.debug("stack %s: up failed", name, exc_info=True)
            record("up", {"ok": False, "error": _brief(exc)})
            if _locked(exc):  # another update holds the stack: this one changed nothing
                raise ComputeError(_lock_message(name)) from exc
            interrupted = isinstance(exc, KeyboardInterrupt)
            what = "interrupted while updating" if interrupted else "updating"
            if not ephemeral:
                left = (
                    f"what stack {name} had is left in place (see `dstack infra`); fix the "
                    "cause and run `dstack config` again"
                )
                if interrupted:
                    raise ProvisioningInterrupted(f"{what} stack {name}; {left}") from None
                raise ComputeError(f"{what} stack {name} failed: {_brief(exc)}; {left}") from exc
            try:
                destroyed = self._destroy(stack, record)
            except KeyboardInterrupt:
                destroyed = False
            left = (
                "what it had created was destroyed (see `dstack infra`)"
                if destroyed
                else "what it had created could not all be destroyed (see `dstack infra`); "
                "`dstack prune` retries"
            )
            if interrupted:
                raise ProvisioningInterrupted(
                    f"interrupted while creating stack {name}; {left}"
                ) from None
            raise ComputeError(f"creating stack {name} failed: {_brief(exc)}; {left}") from exc
        outputs = {key: getattr(value, "value", value) for key, value in result.outputs.items()}
        logger.info("stack %s: up done, outputs %s", name, sorted(outputs))
        record(
            "up",
            {
                "ok": True,
                "summary": _summary(getattr(result.summary, "resource_changes", None)),
                "outputs": outputs,
                "diff": result.stdout,
            },
        )
        return outputs

    def _open(self, stack_name: str, program: Program) -> StackLike:
        try:
            return self._factory(stack_name, program)
        except ComputeError:
            raise
        except Exception as exc:
            raise ComputeError(
                f"cannot open stack {stack_name} in {self.workspace.backend_url}: {_brief(exc)}"
            ) from exc

    def _destroy(self, stack: StackLike, record: Recorder) -> bool:
        """Destroy, retrying once after a refresh; then remove the stack. Pending creates are
        kept (the caller's sweep by tags finds what they launched). A Ctrl+C is recorded and
        goes on (`dstack prune` finishes the clean-up)."""
        logger.info("stack %s: destroy", stack.name)
        try:
            try:
                result = stack.destroy(on_output=self._echo)
            except KeyboardInterrupt:
                raise
            except Exception:
                logger.debug("stack %s: destroy failed; refresh, then again", stack.name,
                             exc_info=True)  # fmt: skip
                stack.refresh(on_output=self._echo)
                result = stack.destroy(on_output=self._echo)
            self._remover(stack)
        except KeyboardInterrupt:
            record("destroy", {"ok": False, "error": "interrupted; run `dstack prune`"})
            raise
        except Exception as exc:
            logger.debug("stack %s: destroy failed", stack.name, exc_info=True)
            record("destroy", {"ok": False, "error": f"{_brief(exc)}; run `dstack prune`"})
            return False
        record(
            "destroy",
            {
                "ok": True,
                "summary": _summary(getattr(result.summary, "resource_changes", None)),
                "diff": result.stdout,
            },
        )
        return True

    def _remove_quietly(self, stack: StackLike) -> None:
        try:
            self._remover(stack)
        except Exception:  # an empty stack left behind costs nothing; `dstack prune` removes it
            logger.debug("stack %s: not removed", stack.name, exc_info=True)

    def _echo(self, line: str) -> None:
        logger.debug("engine: %s", line.rstrip())
        if self.on_output is not None:
            self.on_output(line.rstrip("\n"))


def automation_factory(workspace: Workspace) -> StackFactory:
    """Opens stacks with the real Automation API (needs the engine), each in a work folder of
    its own that the driver removes when its sequence ends."""

    def open_stack(stack_name: str, program: Program) -> StackLike:
        command = engine_command()
        from pulumi import automation as auto

        work_dir = tempfile.mkdtemp(prefix=WORK_DIR_PREFIX)
        options = auto.LocalWorkspaceOptions(
            work_dir=work_dir,
            pulumi_command=command,
            project_settings=auto.ProjectSettings(
                name=workspace.project,
                runtime="python",
                backend=auto.ProjectBackend(url=workspace.backend_url),
            ),
            secrets_provider=workspace.secrets_provider,
            env_vars=workspace.engine_env(),
        )
        try:
            stack = auto.create_or_select_stack(
                stack_name=stack_name, project_name=workspace.project, program=program,
                opts=options,
            )  # fmt: skip
            _install_plugins(stack.workspace, workspace.plugins)
            stack.set_config("aws:region", auto.ConfigValue(value=workspace.region))
        except BaseException:
            shutil.rmtree(work_dir, ignore_errors=True)
            raise
        result: StackLike = stack  # type: ignore[assignment]
        return result

    return open_stack


def _install_plugins(workspace: Any, plugins: Sequence[tuple[str, str]]) -> None:
    """Install the resource plugins the program needs now, not in the middle of a preview:
    ComputeError (one line, what to run) when one cannot be installed."""
    if not plugins:
        return
    installed = {(p.name, str(p.version or "").lstrip("v")) for p in workspace.list_plugins()}
    for name, version in plugins:
        if (name, version.lstrip("v")) in installed:
            continue
        try:
            workspace.install_plugin(name, f"v{version.lstrip('v')}")
        except Exception as exc:
            raise ComputeError(
                f"the Pulumi plugin {name} v{version} is not installed and could not be "
                f"installed ({_brief(exc)}): run `pulumi plugin install resource {name} "
                f"{version}` where the internet is reachable, then retry"
            ) from None


def _discard_work_dir(stack: Any) -> None:
    """Remove the Automation API's work folder of this stack (only one dstack made)."""
    work_dir = getattr(getattr(stack, "workspace", None), "work_dir", None)
    if isinstance(work_dir, str) and Path(work_dir).name.startswith(WORK_DIR_PREFIX):
        shutil.rmtree(work_dir, ignore_errors=True)


def _remove_with_workspace(stack: Any) -> None:
    stack.workspace.remove_stack(stack.name)


def _no_program() -> None:
    """Destroying needs no program: the engine works from the stack's state."""


def _summary(changes: Any) -> dict[str, int]:
    if not changes:
        return {}
    return {str(getattr(op, "value", op)): int(count) for op, count in dict(changes).items()}
