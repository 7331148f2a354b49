"""The boot script checked the way it will run: its wheel download and digest check executed
(with a stand-in boto3 that copies a local file), its reboot guard present, its dependencies
constrained, and the whole script passing shellcheck."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from dstack.compute.aws import userdata
from dstack.compute.aws.userdata import render_user_data
from tests.compute.aws.test_userdata import boot

FAKE_BOTO3 = textwrap.dedent(
    '''
    """A stand-in for boto3 in the boot script's download: S3's object is a local file, and
    the first ``FAIL_FIRST`` downloads fail as a role not yet propagated would."""
    import os, shutil
    _calls = {"n": 0}
    class _S3:
        def download_file(self, bucket, key, path):
            _calls["n"] += 1
            if _calls["n"] <= int(os.environ.get("FAIL_FIRST", "0")):
                raise RuntimeError("Unable to locate credentials")
            shutil.copyfile(os.environ["WHEEL_SOURCE"], path)
    def client(name):
        return _S3()
    '''
)


def _download_block(script: str) -> str:
    """The Python the script runs to fetch the wheel (the heredoc holding ``download_file``)."""
    blocks = script.split('<<"PY"\n')[1:]
    for block in blocks:
        body = block.split("\nPY\n", 1)[0]
        if "download_file" in body:
            return body
    raise AssertionError("no download block")


def _run_download(tmp_path: Path, data: bytes, expected_sha: str | None, key_digest: str,
                  fail_first: int = 0) -> subprocess.CompletedProcess:  # fmt: skip
    (tmp_path / "fake").mkdir(exist_ok=True)
    (tmp_path / "fake" / "boto3.py").write_text(FAKE_BOTO3)
    source = tmp_path / "source.whl"
    source.write_bytes(data)
    target = tmp_path / "dstack-0.1.0-py3-none-any.whl"
    key = f"dist/{key_digest}/dstack-0.1.0-py3-none-any.whl"
    script = render_user_data(boot(wheel_key=key, wheel_sha256=expected_sha))
    code = _download_block(script).replace("/opt/dstack/dstack-0.1.0-py3-none-any.whl", str(target))
    code = code.replace("time.sleep(5 * (attempt + 1))", "time.sleep(0)")
    env = {"PYTHONPATH": str(tmp_path / "fake"), "WHEEL_SOURCE": str(source),
           "FAIL_FIRST": str(fail_first), "PATH": "/usr/bin:/bin"}  # fmt: skip
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)


def test_the_wheel_is_installed_only_with_its_digest(tmp_path: Path) -> None:
    data = b"the real wheel"
    sha = hashlib.sha256(data).hexdigest()
    assert _run_download(tmp_path, data, sha, sha[:20]).returncode == 0
    tampered = _run_download(tmp_path, b"a tampered wheel", sha, sha[:20])
    assert tampered.returncode != 0 and "not installed" in tampered.stderr
    # without the full digest, the one the key is named by is checked
    assert _run_download(tmp_path, data, None, sha[:20]).returncode == 0
    assert _run_download(tmp_path, b"other", None, sha[:20]).returncode != 0


def test_the_first_download_is_retried(tmp_path: Path) -> None:
    data = b"wheel"
    sha = hashlib.sha256(data).hexdigest()
    done = _run_download(tmp_path, data, sha, sha[:20], fail_first=3)
    assert done.returncode == 0 and done.stderr.count("retrying") == 3
    given_up = _run_download(tmp_path, data, sha, sha[:20], fail_first=userdata.DOWNLOAD_ATTEMPTS)
    assert given_up.returncode != 0


def test_a_reboot_powers_the_instance_off() -> None:
    script = render_user_data(boot())
    assert f"systemctl enable {Path(userdata.REBOOT_UNIT).name}" in script
    unit = script.split(f"cat >{userdata.REBOOT_UNIT} <<'UNIT'\n", 1)[1].split("\nUNIT\n")[0]
    assert "ExecStart=/sbin/shutdown -h now" in unit and "WantedBy=multi-user.target" in unit
    # the unit is written before anything that can fail (set -e) runs
    assert script.index(userdata.REBOOT_UNIT) < script.index("python3 -m venv")


def test_dependencies_are_installed_under_the_constraints() -> None:
    script = render_user_data(boot(constraints=["boto3==1.35.16", "pydantic==2.9.2"]))
    assert "boto3==1.35.16\npydantic==2.9.2\n" in script
    installs = [line for line in script.splitlines() if " pip install " in line]
    runner_installs = [line for line in installs if f"--python {userdata.VENV}/" in line]
    assert len(runner_installs) == 2
    assert all(f"-c {userdata.CONSTRAINTS}" in line for line in runner_installs)


def test_the_runner_venv_is_the_clients_python_for_which_the_pins_resolve() -> None:
    """The pins are this client's installed versions; some need this client's Python (from a
    3.11 client, typer and annotated-doc need >= 3.11). The runner's virtualenv must be made from
    a Python of the same X.Y, not from the AMI's python3 (3.9 or 3.10): pip cannot resolve the
    pins there, and dstack itself needs 3.10. The box tier proves the install on Python 3.9."""
    import sys
    from importlib import metadata

    from packaging.specifiers import SpecifierSet

    from dstack.compute.aws.wheel import pinned_requirements, python_version

    here = python_version()
    assert here == f"{sys.version_info.major}.{sys.version_info.minor}"
    script = render_user_data(boot(runner_python=here, constraints=pinned_requirements()))
    made = [line for line in script.splitlines() if line.endswith(f" {userdata.VENV}")]
    assert made == [f"{userdata.UV} venv -q --python {here} {userdata.VENV}"], made
    assert f"{userdata.UV} python install {here}" in script.splitlines()
    micro = f"{here}.{sys.version_info.micro}"
    for pin in pinned_requirements():
        name = pin.split("==")[0]
        requires = metadata.distribution(name).metadata.get("Requires-Python") or ""
        assert micro in SpecifierSet(requires), f"{pin} needs Python {requires}"


def test_pinned_requirements_are_what_this_cli_runs_with() -> None:
    from importlib import metadata

    from dstack.compute.aws.wheel import pinned_requirements

    pins = dict(line.split("==") for line in pinned_requirements())
    assert pins["boto3"] == metadata.version("boto3")
    assert pins["pydantic"] == metadata.version("pydantic")
    assert "botocore" in pins  # dependencies of dependencies too
    assert "pulumi" not in pins  # the CLI's own extras are not the runner's


@pytest.mark.parametrize(
    "changes",
    [{}, {"docker": True, "python": None, "ports": []}, {"constraints": ["boto3==1.35.16"]}],
    ids=["default", "docker", "constrained"],
)
def test_user_data_passes_shellcheck(changes: dict, tmp_path: Path) -> None:
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck is not installed (Debian package shellcheck; .ci/run installs it)")
    script = tmp_path / "user_data.sh"
    script.write_text(render_user_data(boot(**changes)))
    done = subprocess.run(
        [shellcheck, "--shell=bash", "--severity=style", str(script)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout


@pytest.mark.parametrize("asked", ["same-minor", "same-micro", "other"])
def test_the_jobs_python_is_the_machines_own_when_it_is_that_version(
    asked: str, tmp_path: Path
) -> None:
    """A job asking for the Python the machine's ``python3`` is (Ubuntu 22.04's 3.10 for
    ``python: 3.10``) uses it: no download. Any other version is installed by uv. The script's
    lines run here, with this interpreter as ``python3`` and uv a recorder."""
    minor = f"{sys.version_info.major}.{sys.version_info.minor}"
    version = {
        "same-minor": minor,
        "same-micro": f"{minor}.{sys.version_info.micro}",
        "other": f"{sys.version_info.major}.{sys.version_info.minor + 1}",
    }[asked]
    script = render_user_data(boot(runner_python="3.0", python=version))
    start = script.index("if python3 -c ")
    lines = script[start : script.index("\nfi\n", start) + 4]
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python3").symlink_to(sys.executable)
    uv = tmp_path / "uv"
    uv.write_text('#!/bin/sh\necho "uv $*"\n')
    uv.chmod(0o755)
    done = subprocess.run(
        ["bash", "-c", 'step() { echo "step $*"; }\n' + lines.replace(userdata.UV, str(uv))],
        env={"PATH": f"{bin_dir}:/usr/bin:/bin"}, capture_output=True, text=True, check=True,
    )  # fmt: skip
    if asked == "other":
        assert done.stdout.splitlines() == [
            f"step installing Python {version}",
            f"uv python install {version}",
        ]
    else:
        assert done.stdout.splitlines() == [f"step using python3 for Python {version}"]
