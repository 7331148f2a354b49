"""``stacks/__main__.py`` with the documented example stack configs, under the mock runtime:
what a platform team's ``pulumi preview --stack example`` runs, minus the engine."""

from __future__ import annotations

import json
import runpy
from pathlib import Path
from typing import Any

import pytest
import yaml
from pulumi.runtime import set_all_config

from tests.stacks import properties as prop
from tests.stacks.harness import deploy, of_type

ROOT = Path(__file__).resolve().parents[2]


def _run_main(config_file: str) -> Any:
    config = yaml.safe_load((ROOT / "stacks" / config_file).read_text())["config"]

    def program() -> None:
        set_all_config({k: v if isinstance(v, str) else json.dumps(v) for k, v in config.items()})
        runpy.run_path(str(ROOT / "stacks" / "__main__.py"), run_name="__main__")

    return config, deploy(program).declared


def test_project_file_points_at_the_stacks_folder() -> None:
    project = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())
    assert project["name"] == "dstack"
    assert project["main"] == "stacks/"
    assert project["stackConfigDir"] == "stacks"
    assert project["runtime"]["name"] == "python"


def test_example_run_stack() -> None:
    config, declared = _run_main("Pulumi.example.yaml")
    bucket = config["dstack:bucket"]
    caller = config["dstack:callerCidr"]
    prop.ingress_exactly(declared, [8888], caller)
    prop.imdsv2_required(declared)
    prop.root_volume_encrypted(declared)
    prop.spot_exactly_when(declared, {"example-run-1-job-0": True})
    prop.trusted_by_ec2_only(declared)
    prop.s3_access_scoped(declared, bucket)
    instance = of_type(declared, ":Instance")[0]
    assert instance.inputs["instanceType"] == "g5.xlarge"
    assert instance.inputs["tags"]["team"] == "ml-research"
    assert "python -m dstack.runner" in instance.inputs["userData"]


def test_example_bootstrap_stack() -> None:
    config, declared = _run_main("Pulumi.bootstrap-example.yaml")
    bucket = config["dstack:bucket"]
    prop.bucket_encrypted(declared, bucket)
    prop.bucket_versioned(declared)
    prop.public_access_blocked(declared)
    prop.tls_only(declared, bucket)
    assert of_type(declared, ":Bucket")[0].import_id == bucket


def test_unknown_stack_kind_is_refused() -> None:
    def program() -> None:
        set_all_config({"dstack:stack": "database", "aws:region": "eu-west-1"})
        runpy.run_path(str(ROOT / "stacks" / "__main__.py"), run_name="__main__")

    with pytest.raises(ValueError, match="run or bootstrap"):
        deploy(program)
