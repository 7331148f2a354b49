"""How dstack finds, checks, configures and runs the Pulumi engine, without the engine: a
``pulumi`` shell script stands in for the CLI where one must run (it answers ``version`` and
prints its environment), and a small Python child stands in for an engine receiving Ctrl+C.
The real engine is met in ``tests/engine``."""

from __future__ import annotations

import inspect
import os
import signal
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from dstack.compute.aws import driver as driver_module
from dstack.compute.aws import engine
from dstack.compute.aws.compute import AwsCompute
from dstack.compute.aws.config import AwsComputeConfig
from dstack.errors import ComputeError
from dstack.store_config import S3StoreConfig


def fake_cli(folder: Path, version: str = "v3.274.0") -> Path:
    """A stand-in for the ``pulumi`` CLI: ``version`` prints ``version``; anything else
    prints the environment it was given, one VAR=value a line."""
    folder.mkdir(parents=True, exist_ok=True)
    binary = folder / "pulumi"
    binary.write_text(f'#!/bin/sh\nif [ "$1" = version ]; then echo {version}; exit 0; fi\nenv\n')
    binary.chmod(0o755)
    return binary


@pytest.fixture(autouse=True)
def fresh_commands() -> Any:
    engine._command.cache_clear()
    yield
    engine._command.cache_clear()


def test_the_engine_found_in_pulumi_home_is_the_one_run(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """engine_path() accepted ~/.pulumi/bin while the Automation API ran `pulumi` from PATH."""
    binary = fake_cli(tmp_path / "home" / "bin")
    monkeypatch.setenv("PATH", str(tmp_path / "empty") + os.pathsep + "/usr/bin:/bin")
    monkeypatch.setenv("PULUMI_HOME", str(tmp_path / "home"))
    assert engine.engine_path() == str(binary)
    command = engine.engine_command()
    assert command.command == str(binary)
    assert str(command.version) == "3.274.0"


def test_an_engine_older_than_the_floor_is_refused_with_one_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fake_cli(tmp_path / "bin", version="v3.100.0")
    monkeypatch.setenv("PATH", str(tmp_path / "bin") + os.pathsep + "/usr/bin:/bin")
    with pytest.raises(ComputeError) as caught:
        engine.engine_command()
    message = str(caught.value)
    assert "\n" not in message
    assert "3.100.0" in message and f"{engine.MIN_ENGINE} or newer" in message
    assert "upgrade the Pulumi CLI" in message
    with pytest.raises(ComputeError, match="or newer"):
        driver_module.StackDriver(
            driver_module.Workspace(project="dstack", backend_url="s3://b/p", region="x")
        ).check()


def test_the_users_pulumi_settings_do_not_reach_dstacks_engine(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """PULUMI_BACKEND_URL would win over the project's backend; PULUMI_ACCESS_TOKEN is for the
    user's own Pulumi Cloud: the engine dstack runs sees neither."""
    fake_cli(tmp_path / "bin")
    monkeypatch.setenv("PATH", str(tmp_path / "bin") + os.pathsep + "/usr/bin:/bin")
    monkeypatch.setenv("PULUMI_BACKEND_URL", "https://api.pulumi.example")
    monkeypatch.setenv("PULUMI_ACCESS_TOKEN", "pul-users-own-token")
    monkeypatch.delenv("PULUMI_CONFIG_PASSPHRASE", raising=False)
    monkeypatch.delenv("PULUMI_CONFIG_PASSPHRASE_FILE", raising=False)
    workspace = driver_module.Workspace(
        project="dstack", backend_url="s3://team/pulumi?region=eu-west-1", region="eu-west-1"
    )
    result = engine.engine_command().run(["stack", "ls"], str(tmp_path), workspace.engine_env())
    seen = dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)
    assert seen["PULUMI_BACKEND_URL"] == "s3://team/pulumi?region=eu-west-1"
    assert "PULUMI_ACCESS_TOKEN" not in seen
    assert seen["PULUMI_CONFIG_PASSPHRASE"] == ""
    assert seen["AWS_REGION"] == "eu-west-1"


def test_a_passphrase_the_user_chose_is_kept() -> None:
    """The passphrase was forced empty over PULUMI_CONFIG_PASSPHRASE_FILE (the variable wins
    over the file in the engine)."""
    with_file = engine.engine_env("s3://b/p", {}, {"PULUMI_CONFIG_PASSPHRASE_FILE": "/k/pass"})
    assert "PULUMI_CONFIG_PASSPHRASE" not in with_file
    with_phrase = engine.engine_env("s3://b/p", {}, {"PULUMI_CONFIG_PASSPHRASE": "team"})
    assert with_phrase["PULUMI_CONFIG_PASSPHRASE"] == "team"
    assert engine.engine_env("s3://b/p", {}, {})["PULUMI_CONFIG_PASSPHRASE"] == ""


ENGINE_STAND_IN = """
import signal, sys, time
def cancel(*_):
    print("cancelling gracefully", flush=True)
    time.sleep(0.5)
    print("cancelled; state saved", flush=True)
    sys.exit(255)
signal.signal(signal.SIGINT, cancel)
print("creating", flush=True)
time.sleep(30)
print("finished without a cancel", flush=True)
"""


def test_ctrl_c_reaches_the_engine_once_and_is_waited_for() -> None:
    """The SDK closed the engine's pipes on Ctrl+C (it died of SIGPIPE mid-create): the Ctrl+C
    must reach the engine as one SIGINT, and dstack must wait until it has stopped."""
    lines: list[str] = []
    main = threading.get_ident()

    def press_ctrl_c() -> None:
        deadline = time.monotonic() + 20
        while "creating" not in lines and time.monotonic() < deadline:
            time.sleep(0.05)
        signal.pthread_kill(main, signal.SIGINT)

    threading.Thread(target=press_ctrl_c, daemon=True).start()
    with pytest.raises(KeyboardInterrupt):
        engine.run_gracefully([sys.executable, "-c", ENGINE_STAND_IN], None, os.environ,
                              lines.append)  # fmt: skip
    assert lines[0] == "creating"
    assert engine.CANCELLING in lines
    assert lines[-2:] == ["cancelling gracefully", "cancelled; state saved"]


def test_plugins_are_installed_before_anything_starts() -> None:
    installed: list[tuple[str, str]] = []
    workspace = SimpleNamespace(
        list_plugins=lambda: [SimpleNamespace(name="random", version="4.0.0")],
        install_plugin=lambda name, version: installed.append((name, version)),
    )
    driver_module._install_plugins(workspace, [("random", "4.0.0"), ("aws", "7.51.1")])
    assert installed == [("aws", "v7.51.1")]

    def offline(name: str, version: str) -> None:
        raise RuntimeError("code: 1\n stderr: error: could not download plugin: no network\n")

    workspace.install_plugin = offline
    with pytest.raises(ComputeError) as caught:
        driver_module._install_plugins(workspace, [("aws", "7.51.1")])
    message = str(caught.value)
    assert "\n" not in message and "could not download plugin" in message
    assert "pulumi plugin install resource aws 7.51.1" in message


def test_run_stacks_ask_for_the_aws_plugin_of_the_installed_package() -> None:
    from importlib import metadata

    compute = AwsCompute(AwsComputeConfig(region="eu-west-1"))
    driver = compute.driver(S3StoreConfig(bucket="team", region="eu-west-1"))
    assert driver.workspace.plugins == (("aws", metadata.version("pulumi_aws")),)


def test_the_driver_calls_exist_on_the_installed_automation_api() -> None:
    """Every keyword the driver passes is one the installed ``pulumi.automation`` takes."""
    from pulumi import automation as auto

    def takes(function: Any, *names: str) -> None:
        parameters = inspect.signature(function).parameters
        missing = [name for name in names if name not in parameters]
        assert not missing, f"{function.__qualname__} lacks {missing}"

    takes(auto.Stack.preview, "on_output", "diff", "refresh")
    takes(auto.Stack.up, "on_output", "refresh")
    takes(auto.Stack.destroy, "on_output")
    takes(auto.Stack.refresh, "on_output")
    takes(auto.Stack.set_config, "key", "value")
    takes(auto.create_or_select_stack, "stack_name", "project_name", "program", "opts")
    takes(auto.LocalWorkspaceOptions, "work_dir", "pulumi_command", "project_settings",
          "secrets_provider", "env_vars")  # fmt: skip
    takes(auto.LocalWorkspace.install_plugin, "name", "version")
    takes(auto.LocalWorkspace.list_plugins)
    takes(auto.LocalWorkspace.remove_stack, "stack_name")
    takes(auto.ProjectSettings, "name", "runtime", "backend")
    takes(auto.ProjectBackend, "url")
    takes(auto.PulumiCommand, "root", "version")
    takes(auto.PulumiCommand.run, "args", "cwd", "additional_env", "on_output", "on_error")
    takes(auto.ConfigValue, "value")
