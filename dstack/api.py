"""dstack's Python API: what the CLI does, importable.

from dstack import api
ctx = api.Context()                       # the configured store, this machine, cwd's repo
sub = api.submit(ctx, "train", args=["--epochs", "3"])
for event in api.follow(ctx, api.get_run(ctx, sub.run.run_name)):
    ...
"""

from __future__ import annotations

from dstack.services.artifacts import ArtifactFile, download_artifacts, list_artifacts
from dstack.services.context import Context
from dstack.services.logs import Output, StatusChange, follow
from dstack.services.runs import RunView, Submission, get_run, list_runs, remove, stop, submit

__all__ = [
    "ArtifactFile",
    "Context",
    "Output",
    "RunView",
    "StatusChange",
    "Submission",
    "download_artifacts",
    "follow",
    "get_run",
    "list_artifacts",
    "list_runs",
    "remove",
    "stop",
    "submit",
]
