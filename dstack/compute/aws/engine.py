"""The Pulumi engine (the ``pulumi`` CLI) as dstack runs it.

- where it is (``engine_path``: on PATH, else ``$PULUMI_HOME/bin``) and that the one found is
  the one run (``engine_command`` hands the Automation API that exact path);
- its version floor (``MIN_ENGINE``), checked before anything starts, with one clear line;
- its environment, set explicitly (``engine_env``): the user's ``PULUMI_BACKEND_URL`` or
  ``PULUMI_ACCESS_TOKEN`` never move dstack's stacks elsewhere, and a passphrase the user
  chose (``PULUMI_CONFIG_PASSPHRASE`` or ``PULUMI_CONFIG_PASSPHRASE_FILE``) is kept;
- what its errors say (``brief``: the failed resources and their messages, one line);
- how it is run: in its own process group, so a Ctrl+C reaches it once, as a graceful cancel
  (the engine finishes the operations in flight, writes its state and releases its lock), and
  dstack waits for it to stop before the interrupt goes on. A second Ctrl+C stops it at once.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import threading
from collections.abc import Callable, Mapping
from functools import cache
from pathlib import Path
from typing import Any

from dstack.errors import ComputeError

#: The oldest CLI dstack runs: 3.245 broke the S3 backend's ``endpoint``/``disableSSL``/
#: ``s3ForcePathStyle`` parameters (an S3-compatible store) and 3.246 restored them.
MIN_ENGINE = "3.246.0"

ENGINE_MISSING = (
    "the Pulumi engine is not installed: install the Pulumi CLI so that `pulumi` is on PATH "
    "(or in $PULUMI_HOME/bin), then retry; `dstack run --plan WORKFLOW` works without it"
)
SDK_MISSING = (
    "the Pulumi SDK is not installed: install dstack with its AWS extra "
    "(pip install 'dstack[aws]') to run on AWS; `dstack run --plan` needs it too"
)
#: the user's settings for their own Pulumi projects that must not reach dstack's stacks
_NOT_PASSED = ("PULUMI_ACCESS_TOKEN", "PULUMI_BACKEND_URL")
CANCELLING = (
    "Ctrl+C: the Pulumi engine is cancelling gracefully (it finishes what is in flight and "
    "saves its state); press Ctrl+C again to stop it at once"
)


def engine_path() -> str | None:
    """The ``pulumi`` CLI: on PATH, else in ``$PULUMI_HOME/bin`` (default ``~/.pulumi``)."""
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


def engine_env(
    backend_url: str, base: Mapping[str, str], environ: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The variables dstack sets for the engine on top of ``base`` (region, profile...): the
    backend is dstack's whatever ``PULUMI_BACKEND_URL`` says; dstack's stacks hold no secrets,
    so the passphrase is empty unless the user set one (or a passphrase file)."""
    environ = os.environ if environ is None else environ
    env = {**base, "PULUMI_BACKEND_URL": backend_url, "PULUMI_SKIP_UPDATE_CHECK": "true"}
    if "PULUMI_CONFIG_PASSPHRASE" in environ:
        env["PULUMI_CONFIG_PASSPHRASE"] = environ["PULUMI_CONFIG_PASSPHRASE"]
    elif not environ.get("PULUMI_CONFIG_PASSPHRASE_FILE"):
        env["PULUMI_CONFIG_PASSPHRASE"] = ""
    return env


def engine_command() -> Any:
    """A ``PulumiCommand`` for the engine ``engine_path`` finds, its version checked against
    ``MIN_ENGINE``; ComputeError (one line) when it is missing, broken or too old."""
    require_engine()
    path = engine_path()
    assert path is not None
    return _command(path)


@cache
def _command(path: str) -> Any:
    from pulumi.automation.errors import InvalidVersionError
    from semver import VersionInfo

    folder = Path(path).parent
    # PulumiCommand runs <root>/bin/pulumi, or `pulumi` from PATH without a root
    root = str(folder.parent) if folder.name == "bin" else None
    if root is None and shutil.which("pulumi") != path:
        raise ComputeError(
            f"the Pulumi CLI at {path} is not in a bin folder nor on PATH: put it on PATH"
        )
    try:
        return _graceful_class()(root=root, version=VersionInfo.parse(MIN_ENGINE))
    except InvalidVersionError as exc:
        raise ComputeError(
            f"the Pulumi CLI at {path} is too old or unknown ({exc}); dstack needs "
            f"{MIN_ENGINE} or newer: upgrade the Pulumi CLI, then retry"
        ) from None
    except (OSError, subprocess.CalledProcessError) as exc:
        raise ComputeError(f"the Pulumi CLI at {path} does not run ({exc}): reinstall it") from None


@cache
def _graceful_class() -> type:
    from pulumi.automation import PulumiCommand
    from pulumi.automation._cmd import CommandResult
    from pulumi.automation.errors import create_command_error

    class GracefulCommand(PulumiCommand):
        """``PulumiCommand`` whose engine gets Ctrl+C as a graceful cancel (module docstring)."""

        def run(
            self,
            args: list[str],
            cwd: str,
            additional_env: Mapping[str, str],
            on_output: Callable[[str], Any] | None = None,
            on_error: Callable[[str], Any] | None = None,
        ) -> Any:
            end = args.index("--") if "--" in args else len(args)
            if "--non-interactive" not in args[:end]:
                args.insert(0, "--non-interactive")
            env = {k: v for k, v in os.environ.items() if k not in _NOT_PASSED}
            env.update(additional_env)
            env["PULUMI_AUTOMATION_API"] = "true"
            if os.path.isabs(self.command):
                # the plugins installed beside the engine come first, as the SDK does
                env["PATH"] = os.pathsep.join([os.path.dirname(self.command), env.get("PATH", "")])
            code, out, err = run_gracefully([self.command, *args], cwd, env, on_output, on_error)
            result = CommandResult(stdout="\n".join(out), stderr="\n".join(err), code=code)
            if code != 0:
                raise create_command_error(result)
            return result

    return GracefulCommand


class EngineInterrupted(KeyboardInterrupt):
    """Ctrl+C while the engine ran; it has stopped (gracefully, unless pressed twice)."""


def run_gracefully(
    command: list[str],
    cwd: str | None,
    env: Mapping[str, str],
    on_output: Callable[[str], Any] | None = None,
    on_error: Callable[[str], Any] | None = None,
) -> tuple[int, list[str], list[str]]:
    """Run the engine in its own process group, streaming its output. A Ctrl+C here is sent
    on to it once as SIGINT (a graceful cancel) and waited for; a second one is sent too (the
    engine then stops at once). Raises ``EngineInterrupted`` after it has exited."""
    out: list[str] = []
    err: list[str] = []

    def pump(stream: Any, callback: Callable[[str], Any] | None, chunks: list[str]) -> None:
        for line in iter(stream.readline, ""):
            line = line.rstrip()
            chunks.append(line)
            if callback is not None:
                callback(line)
        stream.close()

    process = subprocess.Popen(
        command, cwd=cwd, env=dict(env), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        encoding="utf-8", errors="replace", start_new_session=True,
    )  # fmt: skip
    readers = [
        threading.Thread(target=pump, args=(process.stdout, on_output, out), daemon=True),
        threading.Thread(target=pump, args=(process.stderr, on_error, err), daemon=True),
    ]
    for reader in readers:
        reader.start()
    interrupts = 0
    while True:
        try:
            process.wait()
            for reader in readers:
                reader.join()
            break
        except KeyboardInterrupt:
            interrupts += 1
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
            if interrupts == 1 and on_output is not None:
                on_output(CANCELLING)
    if interrupts:
        raise EngineInterrupted()
    return process.returncode, out, err


def aws_plugins() -> tuple[tuple[str, str], ...]:
    """The resource plugin dstack's stacks need: ``aws`` at the version of the installed
    ``pulumi-aws`` package (the plugin and the package are released together)."""
    from importlib import metadata

    try:
        return (("aws", metadata.version("pulumi_aws")),)
    except metadata.PackageNotFoundError:
        raise ComputeError(SDK_MISSING) from None


def is_locked(exc: BaseException) -> bool:
    """The engine refused because another update holds the stack's lock."""
    return not isinstance(exc, KeyboardInterrupt) and "currently locked" in str(exc)


def lock_message(name: str) -> str:
    return (
        f"stack {name} is being updated by someone else (the engine holds its lock): wait "
        "until that update ends, then retry"
    )


def brief(exc: BaseException) -> str:
    """The engine's own error, not its whole transcript: each failed resource's error from the
    engine's "Diagnostics:" section ("name: message"; a provider's traceback gives its last
    line), else its ``error:`` lines; the engine's generic lines ("update failed") are left
    out."""
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted"
    text = str(exc)
    lines = _diagnostics(text)
    if not lines:
        errors = [line.strip() for line in text.splitlines() if "error:" in line.lower()]
        errors = [line for line in errors if not _generic(line)] or errors
        lines = errors or [line.strip() for line in text.splitlines() if line.strip()]
    joined = "; ".join(dict.fromkeys(lines[-3:])) if lines else type(exc).__name__
    return joined[:500]


#: what the engine adds to every failure, saying nothing of its cause
_GENERIC = ("update failed", "preview failed", "destroy failed", "refresh failed",
            "resource monitor has terminated")  # fmt: skip
_RESOURCE = re.compile(r"^  (\S.*) \((.+)\):$")


def _generic(line: str) -> bool:
    message = line.strip().lower().removeprefix("error:").strip()
    return message.startswith(_GENERIC)


def _diagnostics(text: str) -> list[str]:
    """``name: message`` for each error of a resource in the engine's Diagnostics section."""
    lines = text.splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.strip() == "Diagnostics:")
    except StopIteration:
        return []
    found: list[str] = []
    name: str | None = None
    block: list[str] = []
    for line in [*lines[start + 1 :], "end"]:
        heading = _RESOURCE.match(line)
        if heading or (line and not line.startswith(" ")):
            if name is not None:
                found += [f"{name}: {message}" for message in _errors(block)]
            if not heading:
                break  # the next section (Resources:, Outputs:)
            name, block = heading.group(2), []
        elif name is not None:
            block.append(line)
    return found


def _errors(block: list[str]) -> list[str]:
    """The error messages of one resource's diagnostics (a traceback: its last line)."""
    messages: list[str] = []
    for i, line in enumerate(block):
        stripped = line.strip()
        if not stripped.startswith("error:"):
            continue
        message = stripped.removeprefix("error:").strip()
        if message.startswith("Traceback"):
            rest: list[str] = []
            for following in block[i + 1 :]:
                if following.strip().startswith("error:"):
                    break
                if following.strip():
                    rest.append(following.strip())
            message = rest[-1] if rest else message
        if message and not _generic(message):
            messages.append(message)
    return messages
