"""``dstack.settings``: the config file, its environment overrides, and how it is written."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from dstack import settings
from dstack.errors import ConfigError
from dstack.store_config import LocalStoreConfig, S3StoreConfig

REPO = Path(__file__).resolve().parents[1]


def write_config(text: str) -> None:
    settings.config_path().write_text(text)


def test_no_config_file_means_the_local_store(dstack_home: Path) -> None:
    assert settings.backend() == "local"
    assert settings.store_config() == LocalStoreConfig(root=dstack_home / "store")


def test_aws_backend_from_the_file() -> None:
    write_config(
        "backend: aws\naws:\n  bucket: team-bucket\n  region: eu-west-1\n  profile: team\n"
        "  subnet: subnet-1\n  endpoint_url: http://minio:9000\n  prefix: dstack\n"
    )
    assert settings.store_config() == S3StoreConfig(
        bucket="team-bucket",
        region="eu-west-1",
        profile="team",
        endpoint_url="http://minio:9000",
        prefix="dstack",
    )
    assert settings.aws_section().subnet == "subnet-1"


def test_environment_overrides_the_file(monkeypatch: pytest.MonkeyPatch) -> None:
    write_config("backend: aws\naws:\n  bucket: saved\n  region: eu-west-1\n  profile: team\n")
    monkeypatch.setenv("DSTACK_AWS_S3_BUCKET", "from-ci")
    monkeypatch.setenv("DSTACK_AWS_REGION", "us-west-2")
    monkeypatch.setenv("DSTACK_AWS_PROFILE", "ci")
    monkeypatch.setenv("DSTACK_AWS_ENDPOINT_URL", "http://127.0.0.1:9000")
    config = settings.store_config()
    assert isinstance(config, S3StoreConfig)
    assert (config.bucket, config.region, config.profile, config.endpoint_url) == (
        "from-ci",
        "us-west-2",
        "ci",
        "http://127.0.0.1:9000",
    )


def test_an_environment_bucket_alone_switches_to_s3(monkeypatch: pytest.MonkeyPatch) -> None:
    write_config("backend: local\n")
    monkeypatch.setenv("DSTACK_AWS_S3_BUCKET", "ci-bucket")
    assert settings.backend() == "aws"
    assert settings.store_config() == S3StoreConfig(bucket="ci-bucket")
    monkeypatch.setenv("DSTACK_AWS_S3_BUCKET", "")  # empty means unset
    assert settings.backend() == "local"


def test_other_overrides_alone_do_not_switch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DSTACK_AWS_REGION", "eu-west-1")
    monkeypatch.setenv("DSTACK_AWS_ENDPOINT_URL", "http://127.0.0.1:9000")
    assert settings.store_config().type == "local"


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("backend: gcp\n", ["unknown backend", "gcp", "dstack config"]),
        ("backend: aws\n", ["no bucket", "dstack config --backend aws --bucket"]),
        ("backend: aws\naws: [1]\n", ["aws", "mapping"]),
        ("backend: aws\naws:\n  bucket: b\n  buckt: c\n", ["aws.buckt", "bucket"]),
        ("- a list\n", ["mapping"]),
        ("backend: [aws\n", ["cannot be read"]),
    ],
)
def test_bad_config_files_are_one_clear_error(text: str, words: list[str]) -> None:
    write_config(text)
    with pytest.raises(ConfigError) as info:
        settings.store_config()
    assert str(settings.config_path()) in str(info.value)
    for word in words:
        assert word in str(info.value)


def test_save_config_is_atomic_and_owner_only(dstack_home: Path) -> None:
    path = settings.config_path()
    path.write_text("backend: local\n")
    path.chmod(0o644)
    saved = settings.save_config({"backend": "aws", "aws": {"bucket": "team-bucket"}})
    assert saved == path
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert settings.load_config() == {"backend": "aws", "aws": {"bucket": "team-bucket"}}
    assert sorted(p.name for p in dstack_home.iterdir()) == ["config.yaml"]  # no temp files


def test_save_config_creates_the_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DSTACK_HOME", str(tmp_path / "fresh" / "home"))
    path = settings.save_config({"backend": "local"})
    assert path.read_text() == "backend: local\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_save_config_failure_is_a_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    monkeypatch.setenv("DSTACK_HOME", str(blocker))
    with pytest.raises(ConfigError, match="cannot write"):
        settings.save_config({"backend": "local"})


def test_reading_an_s3_config_imports_no_aws_sdk(dstack_home: Path) -> None:
    write_config("backend: aws\naws:\n  bucket: team-bucket\n")
    code = (
        "import sys\n"
        "from dstack.storage import default_storage\n"
        "default_storage().describe()\n"
        "loaded = sorted(m for m in ('boto3', 'botocore') if m in sys.modules)\n"
        "assert not loaded, loaded\n"
    )
    env = {**os.environ, "DSTACK_HOME": str(dstack_home)}
    subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, check=True, timeout=60)


def test_a_binary_config_file_is_one_line_through_the_cli(dstack_home: Path) -> None:
    settings.config_path().write_bytes(b"\xff\xfe\x00binary\x80\x81")
    env = {**os.environ, "DSTACK_HOME": str(dstack_home)}
    out = subprocess.run(
        [sys.executable, "-m", "dstack", "ps"], env=env, capture_output=True, text=True, cwd=REPO
    )
    assert out.returncode != 0
    assert "Traceback" not in out.stderr
    assert "cannot be read" in out.stderr and len(out.stderr.strip().splitlines()) == 1


def test_a_relative_dstack_home_is_made_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The runner starts in another folder than the command that set DSTACK_HOME=relhome."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DSTACK_HOME", "relhome")
    monkeypatch.setenv("DSTACK_CACHE_DIR", "relcache")
    assert settings.dstack_home() == tmp_path / "relhome"
    assert settings.cache_dir() == tmp_path / "relcache"
