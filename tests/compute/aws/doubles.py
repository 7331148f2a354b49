"""``FakeAutomation``: the double standing in for Pulumi's Automation API in these tests.

There is no Pulumi engine here, so nothing can really preview, create or destroy a stack. The
double opens ``RecordingStack``s that record every call (operation and keyword arguments, in
order, in one shared log), return results shaped like the SDK's (``PreviewResult``,
``UpResult``, ``DestroyResult``: ``stdout``, ``change_summary``/``summary``, ``outputs``), and
raise a chosen exception — or ``KeyboardInterrupt``, as Ctrl+C would — at a chosen call. An
``on_up`` hook lets a test do what a real ``up`` would cause (an instance booting); a
``refuse`` hook sees the instances an ``up`` would launch (``launches``: their type, market and
zone, read from the program as the mock runtime renders it) and may return the error AWS
would answer RunInstances with (no capacity for one offer), which ``up`` then raises.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from dstack.compute.aws.driver import StackDriver, Workspace


@dataclass
class FakeAutomation:
    log: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    #: operation -> exceptions to raise on its next calls, in order
    failures: dict[str, list[BaseException]] = field(default_factory=dict)
    programs: dict[str, Callable[[], Any]] = field(default_factory=dict)
    outputs: dict[str, Any] = field(
        default_factory=lambda: {
            "instance_ids": {"0": "i-0123456789abcdef0"},
            "security_group_id": "sg-0abc",
        }
    )
    on_up: Callable[[str, Callable[[], Any]], None] | None = None
    refuse: Callable[[list[Launch]], BaseException | None] | None = None
    #: every instance launch tried, in order (with ``refuse`` set)
    launched: list[Launch] = field(default_factory=list)
    workspaces: list[Workspace] = field(default_factory=list)

    def driver(self, workspace: Workspace) -> StackDriver:
        self.workspaces.append(workspace)
        return StackDriver(workspace, factory=self.open, remover=self.remove)

    def open(self, name: str, program: Callable[[], Any]) -> RecordingStack:
        self._record("open", name, {})
        self.programs[name] = program
        return RecordingStack(name, self)

    def remove(self, stack: Any) -> None:
        self._record("remove", stack.name, {})

    def fail(self, operation: str, *errors: BaseException) -> None:
        self.failures.setdefault(operation, []).extend(errors)

    def calls(self, stack: str | None = None) -> list[str]:
        """The operations made, in order (on one stack, if named)."""
        return [op for op, name, _ in self.log if stack is None or name == stack]

    def _record(self, operation: str, name: str, kwargs: dict[str, Any]) -> None:
        self.log.append((operation, name, kwargs))
        pending = self.failures.get(operation)
        if pending:
            raise pending.pop(0)


class RecordingStack:
    """One stack of ``FakeAutomation`` (see its docstring)."""

    def __init__(self, name: str, automation: FakeAutomation) -> None:
        self.name = name
        self._automation = automation

    def preview(self, **kwargs: Any) -> Any:
        self._automation._record("preview", self.name, kwargs)
        return SimpleNamespace(
            stdout="Previewing update (fake)\n + 5 to create\n",
            stderr="",
            change_summary={"create": 5},
        )

    def up(self, **kwargs: Any) -> Any:
        self._automation._record("up", self.name, kwargs)
        if self._automation.refuse is not None:
            launches = launches_of(self._automation.programs[self.name])
            self._automation.launched.extend(launches)
            error = self._automation.refuse(launches)
            if error is not None:
                raise error
        if self._automation.on_up is not None:
            self._automation.on_up(self.name, self._automation.programs[self.name])
        outputs = {
            k: SimpleNamespace(value=v, secret=False) for k, v in self._automation.outputs.items()
        }
        return SimpleNamespace(
            stdout="Updating (fake)\n + 5 created\n",
            stderr="",
            outputs=outputs,
            summary=SimpleNamespace(resource_changes={"create": 5}),
        )

    def destroy(self, **kwargs: Any) -> Any:
        self._automation._record("destroy", self.name, kwargs)
        return SimpleNamespace(
            stdout="Destroying (fake)\n - 5 deleted\n",
            stderr="",
            summary=SimpleNamespace(resource_changes={"delete": 5}),
        )

    def refresh(self, **kwargs: Any) -> Any:
        self._automation._record("refresh", self.name, kwargs)
        return SimpleNamespace(stdout="", stderr="", summary=SimpleNamespace(resource_changes={}))


class EngineError(Exception):
    """What the Automation API raises when the engine fails (its CommandError carries the
    engine's transcript; ``error:`` lines are what matters)."""

    def __init__(self, message: str) -> None:
        super().__init__(f"code: 255\n stdout: Updating...\n stderr: error: {message}\n")


@dataclass(frozen=True)
class Launch:
    """One instance a stack's ``up`` launches: what a RunInstances call would ask for."""

    job_index: int
    instance_type: str
    market: str
    availability_zone: str | None
    subnet_id: str | None


def launches_of(program: Callable[[], Any]) -> list[Launch]:
    """The instances the program declares, as the mock runtime renders them."""
    from dstack.compute.aws import plan

    rendering = plan.render(program, project="dstack", stack="refuse")
    found = []
    for resource in rendering.cloud_resources:
        if resource.type != "aws:ec2/instance:Instance":
            continue
        inputs = resource.inputs
        found.append(
            Launch(
                job_index=int(resource.name.rsplit("-", 1)[1]),
                instance_type=inputs["instanceType"],
                market="spot" if inputs.get("instanceMarketOptions") else "on-demand",
                availability_zone=inputs.get("availabilityZone"),
                subnet_id=inputs.get("subnetId"),
            )
        )
    return found


def no_capacity(launch: Launch, run_name: str = "run") -> EngineError:
    """terraform-provider-aws's error, through the engine, for a RunInstances of ``launch``
    that AWS has no capacity for."""
    zone = launch.availability_zone or "us-east-1a"
    return EngineError(
        f"aws:ec2/instance:Instance ({run_name}-job-{launch.job_index}): creating EC2 Instance: "
        "operation error EC2: RunInstances, https response error StatusCode: 500, RequestID: "
        "1-2-3, api error InsufficientInstanceCapacity: We currently do not have sufficient "
        f"{launch.instance_type} capacity in the Availability Zone you requested ({zone})."
    )
