"""The reference pages are generated from the code (scripts/docs_reference.py), whole: every
command of the CLI, every provider of the workflow file, every key of the config file, each
key with a description."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType

import pytest
from typer.testing import CliRunner

from dstack.cli.main import app
from dstack.spec.workflows import WORKFLOW_MODELS
from dstack.store_config import AwsComputeConfig, AwsSection, LocalStoreConfig, S3StoreConfig

ROOT = Path(__file__).resolve().parents[2]


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "docs_reference", ROOT / "scripts/docs_reference.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def pages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    out = tmp_path_factory.mktemp("docs")
    generator = _generator()
    assert generator.main([str(out)]) == 0
    return {name: (out / name).read_text() for name in generator.GENERATED}


@pytest.mark.parametrize("model", [AwsSection, AwsComputeConfig, S3StoreConfig, LocalStoreConfig])
def test_every_config_field_has_a_description(model: type) -> None:
    missing = [name for name, field in model.model_fields.items() if not field.description]  # type: ignore[attr-defined]
    assert not missing, f"{model.__name__}: add Field(description=...) to {', '.join(missing)}"


def test_the_cli_page_has_every_command_and_option(pages: dict[str, str]) -> None:
    page = pages["reference/cli.md"]
    shown = CliRunner().invoke(app, ["--help"], terminal_width=200).output
    listed = re.findall(r"^│ (\w+)\s", shown, flags=re.M) or re.findall(
        r"^  (\w+)\s", shown, flags=re.M
    )
    assert "run" in listed, shown
    for command in listed:
        assert f"## dstack {command}\n" in page, command
    for option in ("--detach", "--tag", "--plan", "--retry"):  # of `dstack run`
        assert f"`{option}" in page or f", {option}" in page, option
    assert "## dstack tags add\n" in page and "## dstack secrets delete\n" in page


def test_the_workflow_page_has_every_provider_and_property(pages: dict[str, str]) -> None:
    page = pages["reference/workflow-file.md"]
    for provider, model in WORKFLOW_MODELS.items():
        assert f"## {provider}\n" in page, provider
        for name in model.model_fields:
            if name != "provider":
                assert f"| `{name}` |" in page, (provider, name)


def test_the_config_page_has_every_key_with_its_description(pages: dict[str, str]) -> None:
    page = pages["reference/config.md"]
    for section, model in (("aws", AwsSection), ("compute", AwsComputeConfig)):
        text = page.split(f"\n## {section}\n", 1)[1].split("\n## ", 1)[0]
        for name, field in model.model_fields.items():
            row = next((line for line in text.splitlines() if line.startswith(f"| `{name}` |")), "")
            assert field.description and field.description.split("`")[0] in row, (section, name)
