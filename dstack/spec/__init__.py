"""The workflow file: its schema (``models``), reading it (``loader``) and `dstack run` flags
that override it (``overrides``)."""

from dstack.spec.loader import get_workflow, json_schema, load_workflows
from dstack.spec.models import DepRef
from dstack.spec.overrides import RunOverrides, apply_overrides
from dstack.spec.workflows import Workflow

__all__ = [
    "DepRef",
    "RunOverrides",
    "Workflow",
    "apply_overrides",
    "get_workflow",
    "json_schema",
    "load_workflows",
]
