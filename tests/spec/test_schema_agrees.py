"""`dstack schema` and the validator agree: every workflow the validator accepts, the schema
accepts, and every file the validator refuses for its shape (types, unknown keys, names,
counts, sizes, env items), the schema refuses too.

The cases are the suite's own: the 2022 corpus, the good files of ``test_loader`` and the bad
inputs of ``tests/e2e/test_bad_input``. A few rules span fields, workflows or the file system
(a path escaping the repo, unknown ``${{ }}`` expressions, duplicate names, deps on missing
workflows, a workflow named on the command line); JSON Schema cannot say them, and they are
listed in ``BEYOND_SCHEMA`` so that the rest is checked both ways.
"""

from __future__ import annotations

from pathlib import Path

import jsonschema
import pytest
import yaml

from dstack.errors import SpecError
from dstack.spec import json_schema
from dstack.spec.loader import _Loader, parse_workflow
from tests.e2e.test_bad_input import CASES
from tests.spec import test_loader

CORPUS = Path(__file__).parents[1] / "e2e" / "corpus_2022" / "workflows.yaml"
BEYOND_SCHEMA = {
    "duplicate-names", "unknown-workflow", "unknown-expression", "escapes-repo",
    "working-dir-escapes", "dep-missing-workflow", "requirements-escapes", "file-escapes",
    "broken-yaml", "tab-indent", "empty-file", "duplicate-key",
}  # fmt: skip


def validator_accepts(document: object) -> bool:
    if not isinstance(document, dict) or set(document) != {"workflows"}:
        return False
    entries = document["workflows"]
    if not isinstance(entries, list):
        return False
    try:
        for index, raw in enumerate(entries):
            parse_workflow(raw, source="x", index=index)
    except SpecError:
        return False
    return True


def schema_accepts(document: object) -> bool:
    return jsonschema.Draft202012Validator(json_schema()).is_valid(document)


def test_the_schema_is_a_valid_schema_with_no_foreign_keywords() -> None:
    schema = json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    assert '"ge"' not in str(schema).replace("'", '"')


def good_documents() -> list[object]:
    texts = [CORPUS.read_text()]
    texts += [v for k, v in vars(test_loader).items() if k.isupper() and isinstance(v, str)
              and v.lstrip().startswith("workflows:")]  # fmt: skip
    return [yaml.load(text, Loader=_Loader) for text in texts]


@pytest.mark.parametrize("document", good_documents())
def test_what_the_validator_accepts_the_schema_accepts(document: object) -> None:
    assert validator_accepts(document)
    assert schema_accepts(document)


@pytest.mark.parametrize(("case", "text"), [(c[0], c[1]) for c in CASES if c[1] is not None])
def test_bad_files_are_refused_by_both(case: str, text: str) -> None:
    if case in BEYOND_SCHEMA:
        pytest.skip("a rule JSON Schema cannot express (see the module docstring)")
    try:
        document = yaml.load(text, Loader=_Loader)
    except yaml.YAMLError:
        pytest.skip("not YAML: neither sees a document")
    assert validator_accepts(document) is schema_accepts(document), case


@pytest.mark.parametrize(
    "entry",
    [
        {"name": "w", "commands": ["x"], "ports": 0},
        {"name": "w b", "commands": ["x"]},
        {"name": "w", "commands": ["x"], "env": ["1BAD=x"]},
        {"name": "w", "commands": ["x"], "env": [5]},
        {"name": "w", "commands": ["x"], "env": {"A B": "x"}},
        {"name": "w", "commands": ["x"], "resources": {"cpu": 0}},
        {"name": "w", "commands": ["x"], "resources": {"V100/gpu": 0}},
        {"name": "w", "commands": ["x"], "resources": {"memory": "16XB"}},
        {"name": "w", "commands": ["x"], "deps": [{"tag": "t", "mount": "yes"}]},
        {"name": "w", "commands": ["x"], "colour": "blue"},
        {"name": "w", "provider": "bash", "commands": ["x"], "environment": {}},
        {"name": "w", "provider": "docker", "image": "u", "python": "3.10"},
        {"name": "w", "commands": ["x"], "env": ["FROM_SHELL", "A=1"]},
        {"name": "w", "commands": ["x"], "resources": {"V100/gpu": 2}},
        {"name": "w", "commands": ["x"], "artifacts": ["/root/.cache/hub"]},
        {"name": "w", "commands": ["x"], "deps": [{"workflow": "w", "mount": True}]},
    ],
)
def test_single_entries_agree(entry: dict) -> None:
    document = {"workflows": [entry]}
    assert validator_accepts(document) is schema_accepts(document), entry
