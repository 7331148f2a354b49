"""dstack's Python API: what the CLI does, importable.

from dstack import api
ctx = api.Context()                       # the configured store, this machine, cwd's repo
sub = api.submit(ctx, "train", args=["--epochs", "3"])
for event in api.follow(ctx, api.get_run(ctx, sub.run.run_name)):
    ...
"""

from __future__ import annotations

from dstack.services.artifacts import (
    ArtifactFile,
    download_artifacts,
    list_artifacts,
    list_tag_artifacts,
)
from dstack.services.context import Context
from dstack.services.logs import Missing, Output, StatusChange, StoreProblem, follow
from dstack.services.metrics import MetricPoint, last_values, read_run_metrics
from dstack.services.runs import (
    RunView,
    Submission,
    get_run,
    list_runs,
    refuse_if_tagged,
    remove,
    stop,
    submit,
    view_of,
)
from dstack.services.tags import (
    UploadFile,
    add_run_tag,
    add_upload_tag,
    collect_upload,
    delete_tag,
    find_tag,
    get_tag,
    list_tags,
    tags_by_run,
)

__all__ = [
    "ArtifactFile",
    "Context",
    "MetricPoint",
    "Missing",
    "Output",
    "RunView",
    "StatusChange",
    "StoreProblem",
    "Submission",
    "UploadFile",
    "add_run_tag",
    "add_upload_tag",
    "collect_upload",
    "delete_tag",
    "download_artifacts",
    "find_tag",
    "follow",
    "get_run",
    "get_tag",
    "last_values",
    "list_artifacts",
    "list_runs",
    "list_tag_artifacts",
    "list_tags",
    "read_run_metrics",
    "refuse_if_tagged",
    "remove",
    "stop",
    "submit",
    "tags_by_run",
    "view_of",
]
