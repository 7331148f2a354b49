"""Driving Pulumi stacks through the Automation API: preview → record → up, and destroy.

One ``StackDriver`` per project workspace (the project's state lives in the state bucket, see
``config.state_backend_url``). Its sequences are the heart of "no leaked cost":

- ``provision``: open (create or select) the stack → ``preview`` and hand the diff to the
  recorder *before anything is created* → ``up`` and record the outputs. If ``up`` fails or
  is interrupted (Ctrl+C), whatever it created is destroyed before the error leaves — always;
- ``destroy``: ``destroy`` → remove the stack. If destroy fails (an interrupted update can
  leave pending operations), ``refresh`` with pending creates cleared, then destroy again.
  Whatever is left after that is reported, and the caller's ``sweep`` (terminate instances by
  tag) runs last.

The engine is the ``pulumi`` CLI: without it, nothing here can run, and ``require_engine``
says what to install. Tests inject a ``StackFactory`` in place of the Automation API.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from dstack.errors import ComputeError

ENGINE_MISSING = (
    "the Pulumi engine is not installed: install the Pulumi CLI so that `pulumi` is on PATH "
    "(or in $PULUMI_HOME/bin), then retry; `dstack run --plan WORKFLOW` works without it"
)
SDK_MISSING = (
    "the Pulumi SDK is not installed: install dstack with its AWS extra "
    "(pip install 'dstack[aws]') to run on AWS; `dstack run --plan` needs it too"
)

Program = Callable[[], Any]
#: called with a record kind (plan, up, destroy) and the record's fields
Recorder = Callable[[str, dict[str, Any]], None]


class ProvisioningInterrupted(ComputeError):
    """Ctrl+C while a stack was being created; what had been created was destroyed."""

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

    def engine_env(self) -> dict[str, str]:
        env = {"AWS_REGION": self.region, "AWS_DEFAULT_REGION": self.region, **self.env}
        if self.profile:
            env["AWS_PROFILE"] = self.profile
        # dstack's stacks hold no secrets; the passphrase provider still wants a passphrase
        env.setdefault("PULUMI_CONFIG_PASSPHRASE", os.environ.get("PULUMI_CONFIG_PASSPHRASE", ""))
        return env


def engine_path() -> str | None:
    """The ``pulumi`` CLI, if it is installed where the Automation API looks for it."""
    found = shutil.which("pulumi")
    if found:
        return found
    home = Path(os.environ.get("PULUMI_HOME") or Path.home() / ".pulumi")
    candidate = home / "bin" / "pulumi"
    return str(candidate) if candidate.is_file() and os.access(candidate, os.X_OK) else None


def require_engine() -> None:
    """ComputeError saying what to install, unless the Pulumi SDK and engine are both here."""
    try:
        import pulumi.automation  # noqa: F401
    except ImportError:
        raise ComputeError(SDK_MISSING) from None
    if engine_path() is None:
        raise ComputeError(ENGINE_MISSING)


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
        """ComputeError unless stacks can be driven here (the engine is installed)."""
        if not self._injected:
            require_engine()

    def provision(
        self, stack_name: str, program: Program, record: Recorder, *, refresh: bool = False
    ) -> dict[str, Any]:
        """Preview (recorded before anything is created), then create the stack; return its
        outputs. On any failure or Ctrl+C during ``up``, destroy what was created first."""
        self.check()
        stack = self._open(stack_name, program)
        try:
            preview = stack.preview(on_output=self._echo, diff=True, refresh=refresh or None)
        except BaseException as exc:
            record("plan", {"ok": False, "error": _brief(exc)})
            self._remove_quietly(stack)  # nothing was created
            if isinstance(exc, KeyboardInterrupt):
                raise ProvisioningInterrupted("interrupted before anything was created") from None
            raise ComputeError(f"previewing stack {stack_name} failed: {_brief(exc)}") from exc
        record(
            "plan",
            {"ok": True, "summary": _summary(preview.change_summary), "diff": preview.stdout},
        )
        try:
            result = stack.up(on_output=self._echo, refresh=refresh or None)
        except BaseException as exc:
            record("up", {"ok": False, "error": _brief(exc)})
            self._destroy(stack, record)
            if isinstance(exc, KeyboardInterrupt):
                raise ProvisioningInterrupted(
                    f"interrupted while creating stack {stack_name}; what it had created was "
                    "destroyed (see `dstack infra`)"
                ) from None
            raise ComputeError(
                f"creating stack {stack_name} failed: {_brief(exc)}; what it had created was "
                "destroyed (see `dstack infra`)"
            ) from exc
        outputs = {key: getattr(value, "value", value) for key, value in result.outputs.items()}
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

    def destroy(self, stack_name: str, record: Recorder, program: Program | None = None) -> bool:
        """Destroy the stack and remove it; True when nothing of it is left."""
        self.check()
        stack = self._open(stack_name, program or _no_program)
        return self._destroy(stack, record)

    # helpers

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
        """Destroy, retrying once after clearing pending creates; then remove the stack.
        A second Ctrl+C abandons the clean-up (`dstack prune` finishes it)."""
        try:
            try:
                result = stack.destroy(on_output=self._echo)
            except KeyboardInterrupt:
                raise
            except Exception:
                stack.refresh(on_output=self._echo, clear_pending_creates=True)
                result = stack.destroy(on_output=self._echo)
            self._remover(stack)
        except KeyboardInterrupt:
            record("destroy", {"ok": False, "error": "interrupted; run `dstack prune`"})
            raise
        except Exception as exc:
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
        except Exception:
            pass  # an empty stack left behind costs nothing; `dstack prune` removes it

    def _echo(self, line: str) -> None:
        if self.on_output is not None:
            self.on_output(line.rstrip("\n"))


def automation_factory(workspace: Workspace) -> StackFactory:
    """Opens stacks with the real Automation API (needs the engine)."""

    def open_stack(stack_name: str, program: Program) -> StackLike:
        require_engine()
        from pulumi import automation as auto

        options = auto.LocalWorkspaceOptions(
            project_settings=auto.ProjectSettings(
                name=workspace.project,
                runtime="python",
                backend=auto.ProjectBackend(url=workspace.backend_url),
            ),
            secrets_provider=workspace.secrets_provider,
            env_vars=workspace.engine_env(),
        )
        stack = auto.create_or_select_stack(
            stack_name=stack_name, project_name=workspace.project, program=program, opts=options
        )
        stack.set_config("aws:region", auto.ConfigValue(value=workspace.region))
        result: StackLike = stack  # type: ignore[assignment]
        return result

    return open_stack


def _remove_with_workspace(stack: Any) -> None:
    stack.workspace.remove_stack(stack.name)


def _no_program() -> None:
    """Destroying needs no program: the engine works from the stack's state."""


def _summary(changes: Any) -> dict[str, int]:
    if not changes:
        return {}
    return {str(getattr(op, "value", op)): int(count) for op, count in dict(changes).items()}


def _brief(exc: BaseException) -> str:
    """The engine's own error line(s), not its whole transcript."""
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted"
    text = str(exc)
    errors = [line.strip() for line in text.splitlines() if "error:" in line.lower()]
    lines = errors or [line.strip() for line in text.splitlines() if line.strip()]
    brief = "; ".join(dict.fromkeys(lines[-3:])) if lines else type(exc).__name__
    return brief[:500]
