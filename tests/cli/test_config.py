"""`dstack config`, run as a user runs it: by flags, by answering its questions in a terminal,
and what it leaves in ``~/.dstack/config.yaml``.

Most cases call the CLI's ``main`` in this process (the same parsing, error boundary and
output, without a Python and boto3 start-up each); a terminal's questions and a real run use
the real command.
"""

from __future__ import annotations

import contextlib
import io
import os
import stat
import sys
from collections.abc import Iterator
from pathlib import Path

import pexpect
import pytest
import yaml

from dstack.cli.main import main
from tests.e2e.cli import DSTACK, Dstack, Result
from tests.moto_server import MotoServer


class InProcess(Dstack):
    """`dstack` run by calling its ``main`` here, with no terminal on stdin."""

    def __call__(  # type: ignore[override]
        self, *args: str, cwd: Path, timeout: float = 0, input: str | None = None
    ) -> Result:
        out, err, saved = io.StringIO(), io.StringIO(), (sys.argv, sys.stdin, os.getcwd())
        sys.argv, sys.stdin = ["dstack", *args], io.StringIO(input or "")
        os.chdir(cwd)
        code = 0
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                main()
        except SystemExit as exc:
            code = int(exc.code or 0)
        finally:
            sys.argv, sys.stdin = saved[0], saved[1]
            os.chdir(saved[2])
        return Result(code, out.getvalue(), err.getvalue())


@pytest.fixture
def cli(dstack_home: Path, aws_test_env: None) -> Dstack:
    return InProcess(dstack_home)


@pytest.fixture
def eu_bucket(moto_server: MotoServer) -> Iterator[str]:
    client = moto_server.client()
    name = "dstack-cli-eu-bucket"
    client.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    yield name
    client.delete_bucket(Bucket=name)


def saved(home: Path) -> dict:
    return yaml.safe_load((home / "config.yaml").read_text())


def test_flags_configure_a_bucket(
    cli: Dstack, moto_server: MotoServer, s3_bucket: str, tmp_path: Path
) -> None:
    url = moto_server.endpoint_url
    result = cli(
        "config", "--backend", "aws", "--bucket", s3_bucket, "--endpoint-url", url, cwd=tmp_path
    )
    assert result.code == 0, result.err
    assert f"s3://{s3_bucket} in us-east-1 at {url}" in result.out
    assert saved(cli.home) == {
        "backend": "aws",
        "aws": {"bucket": s3_bucket, "region": "us-east-1", "endpoint_url": url},
    }
    assert stat.S_IMODE((cli.home / "config.yaml").stat().st_mode) == 0o600
    # switching back to local keeps the bucket for later
    assert cli("config", "--backend", "local", cwd=tmp_path).code == 0
    assert saved(cli.home)["backend"] == "local"
    assert saved(cli.home)["aws"]["bucket"] == s3_bucket
    # and -y takes the saved answers back
    result = cli("config", "--backend", "aws", "-y", cwd=tmp_path)
    assert result.code == 0, result.err
    assert saved(cli.home)["backend"] == "aws"


def test_a_prefix_keeps_the_state_in_a_folder_of_the_bucket(
    cli: Dstack, moto_server: MotoServer, s3_bucket: str, tmp_path: Path
) -> None:
    url = moto_server.endpoint_url
    args = ("config", "--bucket", s3_bucket, "--endpoint-url", url)
    result = cli(*args, "--prefix", "/ml/dstack/", cwd=tmp_path)
    assert result.code == 0, result.err
    assert f"s3://{s3_bucket}/ml/dstack in us-east-1" in result.out
    assert saved(cli.home)["aws"]["prefix"] == "ml/dstack"
    keys = [
        o["Key"] for o in moto_server.client().list_objects_v2(Bucket=s3_bucket).get("Contents", [])
    ]
    assert keys == [], "the write check left an object behind"
    # a bad prefix is one line, and the saved one stays
    result = cli(*args, "--prefix", "a//b", cwd=tmp_path)
    assert result.code != 0
    assert result.err.strip().count("\n") == 0 and "prefix" in result.err
    assert saved(cli.home)["aws"]["prefix"] == "ml/dstack"
    # '' takes the prefix away
    assert cli(*args, "--prefix", "", cwd=tmp_path).code == 0
    assert "prefix" not in saved(cli.home)["aws"]


def test_bucket_in_another_region_is_refused_in_one_line(
    cli: Dstack, moto_server: MotoServer, eu_bucket: str, tmp_path: Path
) -> None:
    url = moto_server.endpoint_url
    result = cli(
        "config",
        "--bucket",
        eu_bucket,
        "--region",
        "us-east-1",
        "--endpoint-url",
        url,
        cwd=tmp_path,
    )
    assert result.code == 1
    assert result.err.strip().splitlines() == [
        f"Error: the bucket {eu_bucket} belongs to another AWS region (eu-west-1, not "
        "us-east-1): pass --region eu-west-1, or choose another bucket"
    ]
    assert not (cli.home / "config.yaml").exists()
    # without --region the bucket's own region is taken
    result = cli("config", "--bucket", eu_bucket, "--endpoint-url", url, cwd=tmp_path)
    assert result.code == 0, result.err
    assert saved(cli.home)["aws"]["region"] == "eu-west-1"


def test_a_new_bucket_does_not_inherit_the_old_region(
    cli: Dstack, moto_server: MotoServer, eu_bucket: str, s3_bucket: str, tmp_path: Path
) -> None:
    url = moto_server.endpoint_url
    assert cli("config", "--bucket", eu_bucket, "--endpoint-url", url, cwd=tmp_path).code == 0
    result = cli("config", "--bucket", s3_bucket, cwd=tmp_path)
    assert result.code == 0, result.err
    assert saved(cli.home)["aws"] == {
        "bucket": s3_bucket,
        "region": "us-east-1",
        "endpoint_url": url,
    }


def test_missing_bucket(cli: Dstack, moto_server: MotoServer, tmp_path: Path) -> None:
    url = moto_server.endpoint_url
    result = cli(
        "config",
        "--bucket",
        "not-created-yet",
        "--region",
        "eu-west-1",
        "--endpoint-url",
        url,
        cwd=tmp_path,
    )
    assert result.code == 1
    assert "Traceback" not in result.err and len(result.err.strip().splitlines()) == 1
    assert "aws s3 mb s3://not-created-yet --region eu-west-1" in result.err


def test_bad_backend(cli: Dstack, tmp_path: Path) -> None:
    result = cli("config", "--backend", "gcp", cwd=tmp_path)
    assert result.code == 1
    assert result.err.strip() == "Error: --backend: expected local or aws, got 'gcp'"


def test_environment_overrides_are_pointed_out(
    cli: Dstack, s3_bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DSTACK_AWS_S3_BUCKET", s3_bucket)
    result = cli("config", "--backend", "local", cwd=tmp_path)
    assert result.code == 0
    assert "DSTACK_AWS_S3_BUCKET set in this environment overrides" in result.err


def test_questions_in_a_terminal(
    dstack_home: Path, moto_server: MotoServer, s3_bucket: str, tmp_path: Path
) -> None:
    cli = Dstack(dstack_home)
    url = moto_server.endpoint_url
    child = pexpect.spawn(
        DSTACK[0],
        [*DSTACK[1:], "config", "--endpoint-url", url],
        cwd=str(tmp_path),
        env=cli.env,
        timeout=30,
        encoding="utf-8",
    )
    child.expect(r"AWS profile \[default\]: ")  # --endpoint-url means the aws backend
    child.sendline("")
    child.expect(r"AWS region \[us-east-1\]: ")
    child.sendline("")
    child.expect(r"S3 bucket name: ")
    child.sendline("not-created-yet")
    child.expect("does not exist")
    child.expect(r"Choose another bucket\? \[Y/n\]: ")
    child.sendline("y")
    child.expect(r"S3 bucket name: ")
    child.sendline(s3_bucket)
    # only a state store is wanted (no cloud compute configured): no question about subnets
    index = child.expect([f"Saved .*s3://{s3_bucket}", r"EC2 subnet"])
    assert index == 0, "asked for a subnet when only a state store was wanted"
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    # then, with no flag at all, it asks which store first
    child = pexpect.spawn(
        DSTACK[0], [*DSTACK[1:], "config"], cwd=str(tmp_path), env=cli.env, timeout=30,
        encoding="utf-8",
    )  # fmt: skip
    child.expect(r"State store \(local or aws\).*\[aws\]: ")
    child.sendline("local")
    child.expect("Saved .* on this machine")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    assert saved(cli.home)["backend"] == "local"
    assert saved(cli.home)["aws"] == {
        "bucket": s3_bucket,
        "region": "us-east-1",
        "endpoint_url": url,
    }


def test_yes_asks_nothing_in_a_terminal(
    dstack_home: Path, moto_server: MotoServer, s3_bucket: str, tmp_path: Path
) -> None:
    cli = Dstack(dstack_home)
    url = moto_server.endpoint_url
    child = pexpect.spawn(
        DSTACK[0],
        [*DSTACK[1:], "config", "--bucket", s3_bucket, "--endpoint-url", url, "-y"],
        cwd=str(tmp_path),
        env=cli.env,
        timeout=30,
        encoding="utf-8",
    )
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0, child.before
    assert "?" not in (child.before or "") and saved(cli.home)["aws"]["bucket"] == s3_bucket


@pytest.mark.slow
def test_runs_use_the_configured_bucket(
    cli: Dstack,
    moto_server: MotoServer,
    s3_bucket: str,
    repo_factory,  # type: ignore[no-untyped-def]
) -> None:
    repo = repo_factory(
        {".dstack/workflows.yaml": "workflows:\n  - name: hi\n    commands: [echo hi]\n"}
    )
    url = moto_server.endpoint_url
    assert cli("config", "--bucket", s3_bucket, "--endpoint-url", url, cwd=repo).code == 0
    result = Dstack(cli.home)("run", "hi", cwd=repo)  # the real command: it forks a runner
    assert result.code == 0, result.err
    assert result.job_lines == ["hi"]
    keys = [o["Key"] for o in moto_server.client().list_objects_v2(Bucket=s3_bucket)["Contents"]]
    assert any(k.startswith("repos/github.com/acme/mnist/runs/") for k in keys)
    assert not (cli.home / "store").exists()
    assert os.environ.get("DSTACK_AWS_S3_BUCKET") is None
