"""The Automation API driver: the exact calls it makes and their order, with ``FakeAutomation``
standing in for Pulumi (no engine here). The rule under test: whatever ``up`` may have
created is destroyed before an error or Ctrl+C leaves — a partial ``up`` is always followed
by ``destroy``."""

from __future__ import annotations

from typing import Any

import pytest

from dstack.compute.aws import driver as driver_module
from dstack.compute.aws.driver import (
    ENGINE_MISSING,
    ProvisioningInterrupted,
    StackDriver,
    Workspace,
    require_engine,
)
from dstack.errors import ComputeError
from tests.compute.aws.doubles import EngineError, FakeAutomation

WORKSPACE = Workspace(
    project="dstack", backend_url="s3://b/pulumi?region=eu-west-1", region="eu-west-1"
)


class Records:
    def __init__(self) -> None:
        self.items: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, kind: str, fields: dict[str, Any]) -> None:
        self.items.append((kind, fields))

    def kinds(self) -> list[tuple[str, bool]]:
        return [(kind, fields["ok"]) for kind, fields in self.items]


def program() -> None:
    """Never run by the double."""


def test_provision_previews_and_records_before_creating(automation: FakeAutomation) -> None:
    records = Records()
    order: list[str] = []
    driver = automation.driver(WORKSPACE)
    automation.on_up = lambda name, _: order.append(f"up after {len(records.items)} record(s)")

    outputs = driver.provision("wise-owl-1", program, records)

    assert automation.calls() == ["open", "preview", "up"]
    assert order == ["up after 1 record(s)"]  # the plan was recorded before anything was made
    preview_kwargs = automation.log[1][2]
    assert preview_kwargs["diff"] is True
    assert records.kinds() == [("plan", True), ("up", True)]
    assert records.items[0][1]["summary"] == {"create": 5}
    assert "5 to create" in records.items[0][1]["diff"]
    assert outputs == {"instance_ids": {"0": "i-0123456789abcdef0"}, "security_group_id": "sg-0abc"}
    assert records.items[1][1]["outputs"] == outputs


def test_failed_up_destroys_what_it_created(automation: FakeAutomation) -> None:
    records = Records()
    automation.fail("up", EngineError("creating ec2:Instance: InsufficientInstanceCapacity"))

    with pytest.raises(ComputeError, match=r"InsufficientInstanceCapacity.*destroyed"):
        automation.driver(WORKSPACE).provision("wise-owl-1", program, records)

    assert automation.calls() == ["open", "preview", "up", "destroy", "remove"]
    assert records.kinds() == [("plan", True), ("up", False), ("destroy", True)]
    assert "InsufficientInstanceCapacity" in records.items[1][1]["error"]


def test_ctrl_c_during_up_destroys_then_reports_the_interruption(
    automation: FakeAutomation,
) -> None:
    records = Records()
    automation.fail("up", KeyboardInterrupt())

    with pytest.raises(ProvisioningInterrupted, match="destroyed") as caught:
        automation.driver(WORKSPACE).provision("wise-owl-1", program, records)

    assert caught.value.exit_code == 130
    assert automation.calls() == ["open", "preview", "up", "destroy", "remove"]
    assert records.kinds() == [("plan", True), ("up", False), ("destroy", True)]


def test_destroy_that_fails_refreshes_and_tries_again_keeping_pending_creates(
    automation: FakeAutomation,
) -> None:
    """A first destroy that fails is retried after a refresh; pending creates are never
    cleared (that would forget instances EC2 did launch: the sweep by tags finds them)."""
    records = Records()
    automation.fail("up", KeyboardInterrupt())
    automation.fail("destroy", EngineError("the stack has pending operations"))

    with pytest.raises(ProvisioningInterrupted):
        automation.driver(WORKSPACE).provision("wise-owl-1", program, records)

    assert automation.calls() == [
        "open", "preview", "up", "destroy", "refresh", "destroy", "remove",
    ]  # fmt: skip
    refresh_kwargs = automation.log[4][2]
    assert "clear_pending_creates" not in refresh_kwargs
    assert records.kinds()[-1] == ("destroy", True)


def test_second_ctrl_c_abandons_the_clean_up_and_says_so(automation: FakeAutomation) -> None:
    records = Records()
    automation.fail("up", KeyboardInterrupt())
    automation.fail("destroy", KeyboardInterrupt())

    with pytest.raises(ProvisioningInterrupted) as caught:
        automation.driver(WORKSPACE).provision("wise-owl-1", program, records)

    assert "could not all be destroyed" in str(caught.value)
    assert "dstack prune" in str(caught.value)

    assert automation.calls() == ["open", "preview", "up", "destroy"]
    assert records.items[-1] == (
        "destroy",
        {"ok": False, "error": "interrupted; run `dstack prune`"},
    )


def test_failed_up_whose_destroy_fails_never_claims_it_destroyed(
    automation: FakeAutomation,
) -> None:
    records = Records()
    automation.fail("up", EngineError("creating ec2:Instance: InsufficientInstanceCapacity"))
    automation.fail(
        "destroy", EngineError("DependencyViolation"), EngineError("DependencyViolation")
    )

    with pytest.raises(ComputeError) as caught:
        automation.driver(WORKSPACE).provision("wise-owl-1", program, records)

    message = str(caught.value)
    assert "InsufficientInstanceCapacity" in message
    assert "was destroyed" not in message
    assert "could not all be destroyed" in message and "dstack prune" in message
    assert records.kinds() == [("plan", True), ("up", False), ("destroy", False)]


@pytest.mark.parametrize("failure", [EngineError("AccessDenied"), KeyboardInterrupt()])
def test_failed_update_of_a_lasting_stack_leaves_it_in_place(
    automation: FakeAutomation, failure: BaseException
) -> None:
    """The bootstrap is shared and lasting: a failed or interrupted update never destroys
    nor removes it."""
    records = Records()
    automation.fail("up", failure)

    with pytest.raises(ComputeError) as caught:
        automation.driver(WORKSPACE).provision("bootstrap", program, records, ephemeral=False)

    assert automation.calls() == ["open", "preview", "up"]
    assert "left in place" in str(caught.value) and "destroyed" not in str(caught.value)
    assert records.kinds() == [("plan", True), ("up", False)]


def test_failed_preview_of_a_lasting_stack_does_not_remove_it(
    automation: FakeAutomation,
) -> None:
    automation.fail("preview", EngineError("AccessDenied"))
    with pytest.raises(ComputeError):
        automation.driver(WORKSPACE).provision("bootstrap", program, Records(), ephemeral=False)
    assert automation.calls() == ["open", "preview"]


def test_the_work_folder_of_each_sequence_is_removed(
    automation: FakeAutomation, tmp_path: Any
) -> None:
    """The Automation API's work folder (one per opened stack) goes when the sequence ends."""
    from types import SimpleNamespace

    folders: list[Any] = []

    def opener(name: str, program: Any) -> Any:
        stack = automation.open(name, program)
        folder = tmp_path / f"{driver_module.WORK_DIR_PREFIX}{len(folders)}"
        folder.mkdir()
        (folder / "Pulumi.yaml").write_text("name: dstack\n")
        folders.append(folder)
        stack.workspace = SimpleNamespace(work_dir=str(folder))  # type: ignore[attr-defined]
        return stack

    driver = StackDriver(WORKSPACE, factory=opener, remover=automation.remove)
    driver.provision("wise-owl-1", program, Records())
    automation.fail("destroy", EngineError("x"), EngineError("x"))
    driver.destroy("wise-owl-1", Records())
    assert len(folders) == 2 and not any(folder.exists() for folder in folders)


def test_destroy_failing_twice_is_recorded_for_prune(automation: FakeAutomation) -> None:
    records = Records()
    automation.fail(
        "destroy", EngineError("DependencyViolation"), EngineError("DependencyViolation")
    )

    assert automation.driver(WORKSPACE).destroy("wise-owl-1", records) is False

    assert automation.calls() == ["open", "destroy", "refresh", "destroy"]
    assert records.kinds() == [("destroy", False)]
    assert "DependencyViolation" in records.items[0][1]["error"]


def test_failed_preview_creates_nothing_and_removes_the_empty_stack(
    automation: FakeAutomation,
) -> None:
    records = Records()
    automation.fail("preview", EngineError("no valid credential sources found"))

    with pytest.raises(ComputeError, match=r"previewing stack wise-owl-1 failed: .*credential"):
        automation.driver(WORKSPACE).provision("wise-owl-1", program, records)

    assert automation.calls() == ["open", "preview", "remove"]
    assert records.kinds() == [("plan", False)]


def test_ctrl_c_during_preview_removes_the_empty_stack(automation: FakeAutomation) -> None:
    automation.fail("preview", KeyboardInterrupt())
    with pytest.raises(ProvisioningInterrupted, match="before anything was created"):
        automation.driver(WORKSPACE).provision("wise-owl-1", program, Records())
    assert automation.calls() == ["open", "preview", "remove"]


def test_destroy_removes_the_stack(automation: FakeAutomation) -> None:
    records = Records()
    assert automation.driver(WORKSPACE).destroy("wise-owl-1", records) is True
    assert automation.calls() == ["open", "destroy", "remove"]
    assert records.items == [
        (
            "destroy",
            {"ok": True, "summary": {"delete": 5}, "diff": "Destroying (fake)\n - 5 deleted\n"},
        )
    ]


def test_retry_attempt_refreshes_before_updating(automation: FakeAutomation) -> None:
    automation.driver(WORKSPACE).provision("wise-owl-1", program, Records(), refresh=True)
    assert automation.log[1][2]["refresh"] is True and automation.log[2][2]["refresh"] is True


def test_engine_output_goes_to_the_reporter(automation: FakeAutomation) -> None:
    lines: list[str] = []
    driver = automation.driver(WORKSPACE)
    driver.on_output = lines.append
    driver.provision("wise-owl-1", program, Records())
    driver._echo("Updating (dstack/wise-owl-1)\n")
    assert lines == ["Updating (dstack/wise-owl-1)"]
    assert automation.log[1][2]["on_output"] == driver._echo


def test_without_the_engine_the_real_driver_stops_with_what_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("PULUMI_HOME", str(tmp_path / "pulumi-home"))
    assert driver_module.engine_path() is None
    with pytest.raises(ComputeError) as caught:
        require_engine()
    assert str(caught.value) == ENGINE_MISSING
    assert "install the Pulumi CLI" in ENGINE_MISSING and "http" not in ENGINE_MISSING
    with pytest.raises(ComputeError, match="Pulumi engine is not installed"):
        StackDriver(WORKSPACE).provision("wise-owl-1", program, Records())


def test_an_up_refused_by_the_lock_destroys_nothing(automation: FakeAutomation) -> None:
    """Another client's update holds the stack: this up changed nothing, so nothing of the
    stack (the other client's) is destroyed, and the user gets one line saying why."""
    records = Records()
    automation.fail("up", EngineError("the stack is currently locked by 1 lock(s). Either wait"))
    with pytest.raises(ComputeError) as caught:
        automation.driver(WORKSPACE).provision("wise-owl-1", program, records)
    assert automation.calls() == ["open", "preview", "up"]
    assert "being updated by someone else" in str(caught.value)
    assert "\n" not in str(caught.value)


#: what the engine (3.274) printed for a resource whose provider failed (paths shortened)
ENGINE_FAILURE = """
 code: 1
 stdout: Updating (dbg-1):

 +  pulumi:pulumi:Stack dstack-dbg-1 creating (0s)
 +  dstack:aws:Bootstrap dstack creating (0s)
 +  pulumi:pulumi:Stack dstack-dbg-1 creating (0s) warning: using pulumi-resource-pulumi-python from $PATH at /plugins/pulumi-resource-pulumi-python
@ updating....
 +  pulumi-python:dynamic/standin/s3:Bucket dstack-state creating (0s)
 +  pulumi-python:dynamic/standin/iam:Role dstack-runner creating (0s)
 +  pulumi-python:dynamic/standin/s3:Bucket dstack-state created (0.01s)
 +  pulumi-python:dynamic/standin/iam:Role dstack-runner creating (0s) error: Traceback (most recent call last):
 +  pulumi-python:dynamic/standin/iam:Role dstack-runner **creating failed** error: Traceback (most recent call last):
 +  pulumi:pulumi:Stack dstack-dbg-1 creating (1s) error: update failed
 +  pulumi:pulumi:Stack dstack-dbg-1 creating (1s) error: Resource monitor has terminated, shutting down
 +  pulumi:pulumi:Stack dstack-dbg-1 **creating failed** 2 errors; 1 warning
 +  dstack:aws:Bootstrap dstack created
Diagnostics:
  pulumi:pulumi:Stack (dstack-dbg-1):
    warning: using pulumi-resource-pulumi-python from $PATH at /plugins/pulumi-resource-pulumi-python
    error: update failed
    error: Resource monitor has terminated, shutting down

  pulumi-python:dynamic/standin/iam:Role (dstack-runner):
    error: Traceback (most recent call last):
      File "/venv/site-packages/pulumi/dynamic/__main__.py", line 84, in wrapper
        return fn(self, request, context)
               ^^^^^^^^^^^^^^^^^^^^^^^^^^
      File "/venv/site-packages/pulumi/dynamic/__main__.py", line 170, in Create
        result = provider.create(props)
                 ^^^^^^^^^^^^^^^^^^^^^^
      File "/src/tests/engine/cloudless.py", line 67, in create
        self._maybe_slow_or_failing()
      File "/src/tests/engine/cloudless.py", line 115, in _maybe_slow_or_failing
        raise Exception(failure)
    Exception: LimitExceeded: roles per account

Resources:
    + 3 created
    2 errored

Duration: 2s

"""


def test_the_engines_diagnostics_become_one_line() -> None:
    """The failed resource and its provider's message, not the transcript nor the engine's
    generic lines ("update failed", "Resource monitor has terminated")."""
    assert driver_module._brief(Exception(ENGINE_FAILURE)) == (
        "dstack-runner: Exception: LimitExceeded: roles per account"
    )
