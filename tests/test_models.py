"""The models build their validators on first use (pydantic's ``defer_build``): a command pays
for the models it uses, not for all of them at import. Deferring must hide no broken model, so
every one of them is built here."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys

import pytest
from pydantic import BaseModel

#: every module that defines models
MODEL_MODULES = (
    "dstack.models",
    "dstack.spec.base",
    "dstack.spec.models",
    "dstack.spec.app_models",
    "dstack.spec.workflows",
    "dstack.spec.overrides",
    "dstack.spec.retry_spec",
    "dstack.state.actions",
    "dstack.store_config",
)


def _subclasses(cls: type) -> list[type]:
    found = []
    for sub in cls.__subclasses__():
        found += [sub, *_subclasses(sub)]
    return found


def dstack_models() -> list[type[BaseModel]]:
    for module in MODEL_MODULES:
        importlib.import_module(module)
    models = {cls for cls in _subclasses(BaseModel) if cls.__module__.startswith("dstack.")}
    return sorted(models, key=lambda cls: f"{cls.__module__}.{cls.__qualname__}")


@pytest.mark.parametrize("model", dstack_models(), ids=lambda cls: cls.__qualname__)
def test_every_model_builds(model: type[BaseModel]) -> None:
    model.model_rebuild(raise_errors=True)
    assert model.__pydantic_complete__
    assert model.model_json_schema()


def test_importing_the_cli_the_api_and_the_runner_builds_no_model() -> None:
    code = f"""
import importlib, json, sys
from pydantic import BaseModel
for module in ("dstack.cli.main", "dstack.api", "dstack.spec.loader", "dstack.runner.agent",
               *{MODEL_MODULES!r}):
    importlib.import_module(module)
def subclasses(cls):
    for sub in cls.__subclasses__():
        yield sub
        yield from subclasses(sub)
built = sorted({{c.__qualname__ for c in subclasses(BaseModel)
                 if c.__module__.startswith("dstack.") and c.__pydantic_complete__}})
print(json.dumps(built))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []
