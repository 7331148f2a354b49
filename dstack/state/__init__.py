"""Reading and writing the state store: the key layout and every record on a ``Storage``.

The package is the only place that knows where things live; callers use ``dstack.state.X``.
What each module owns:

* :mod:`.keys`     the key layout (documented there): every key and prefix, and head keys
* :mod:`.records`  decoding stored JSON records; an unreadable one is a ``StorageError``
* :mod:`.runs`     run and job records, heads, listing and deleting runs
* :mod:`.jobs`     what a live job writes: heartbeats, stop requests, logs, attempts, app
  tokens, the rendezvous of a multi-node run
* :mod:`.tags`     tags, uploaded tag data, succeeded markers, dependency sources
* :mod:`.infra`    cloud infrastructure records and stack records
* :mod:`.secrets`  a repo's secrets
* :mod:`.repos`    the repos a store holds
"""

from __future__ import annotations

from dstack.state.infra import (
    delete_stack_record,
    list_stack_records,
    read_infra_records,
    read_stack_record,
    write_infra_record,
    write_stack_record,
)
from dstack.state.jobs import (
    HEARTBEAT_INTERVAL,
    HEARTBEAT_TIMEOUT,
    beat,
    last_heartbeat,
    list_attempts,
    next_log_seq,
    read_app_token,
    read_rendezvous,
    record_attempt,
    request_stop,
    stop_requested,
    write_app_token,
    write_log_chunk,
    write_rendezvous,
)
from dstack.state.keys import _INV_BASE as _INV_BASE
from dstack.state.keys import (
    INFRA_KINDS,
    PULUMI_STATE_PREFIX,
    STACK_RECORDS_PREFIX,
    WHEELS_PREFIX,
    active_prefix,
    app_token_key,
    artifacts_prefix,
    attempts_prefix,
    boot_log_key,
    bootstrap_infra_key,
    chunk_time,
    code_key,
    heads_prefix,
    heartbeat_key,
    infra_key,
    infra_prefix,
    job_prefix,
    log_chunk_key,
    logs_prefix,
    name_key,
    pulumi_stacks_prefix,
    rendezvous_key,
    repo_prefix,
    run_index_stems,
    run_key,
    run_prefix,
    secret_key,
    secrets_prefix,
    spec_key,
    stack_record_key,
    state_key,
    stop_key,
    succeeded_prefix,
    tag_data_prefix,
    tag_key,
    tags_prefix,
    wheel_key,
)
from dstack.state.keys import _head_key as _head_key
from dstack.state.keys import _inv as _inv
from dstack.state.keys import _job_head_stem as _job_head_stem
from dstack.state.keys import _parse_head as _parse_head
from dstack.state.repos import list_repos
from dstack.state.runs import _dedupe as _dedupe
from dstack.state.runs import _summarize as _summarize
from dstack.state.runs import (
    create_run,
    delete_run,
    iter_runs,
    latest_run,
    list_active_runs,
    list_heads,
    list_runs,
    read_job_spec,
    read_job_state,
    read_run,
    repo_exists,
    run_heads,
    write_job_state,
)
from dstack.state.secrets import (
    delete_secret,
    list_secret_names,
    read_secret,
    write_secret,
)
from dstack.state.tags import (
    ArtifactSource,
    delete_tag,
    delete_tag_data,
    dependency_sources,
    list_tags,
    mark_job_succeeded,
    read_tag,
    succeeded_jobs,
    write_tag,
)

__all__ = [
    "HEARTBEAT_INTERVAL",
    "HEARTBEAT_TIMEOUT",
    "INFRA_KINDS",
    "PULUMI_STATE_PREFIX",
    "STACK_RECORDS_PREFIX",
    "WHEELS_PREFIX",
    "ArtifactSource",
    "active_prefix",
    "app_token_key",
    "artifacts_prefix",
    "attempts_prefix",
    "beat",
    "boot_log_key",
    "bootstrap_infra_key",
    "chunk_time",
    "code_key",
    "create_run",
    "delete_run",
    "delete_secret",
    "delete_stack_record",
    "delete_tag",
    "delete_tag_data",
    "dependency_sources",
    "heads_prefix",
    "heartbeat_key",
    "infra_key",
    "infra_prefix",
    "iter_runs",
    "job_prefix",
    "last_heartbeat",
    "latest_run",
    "list_active_runs",
    "list_attempts",
    "list_heads",
    "list_repos",
    "list_runs",
    "list_secret_names",
    "list_stack_records",
    "list_tags",
    "log_chunk_key",
    "logs_prefix",
    "mark_job_succeeded",
    "name_key",
    "next_log_seq",
    "pulumi_stacks_prefix",
    "read_app_token",
    "read_infra_records",
    "read_job_spec",
    "read_job_state",
    "read_rendezvous",
    "read_run",
    "read_secret",
    "read_stack_record",
    "read_tag",
    "record_attempt",
    "rendezvous_key",
    "repo_exists",
    "repo_prefix",
    "request_stop",
    "run_heads",
    "run_index_stems",
    "run_key",
    "run_prefix",
    "secret_key",
    "secrets_prefix",
    "spec_key",
    "stack_record_key",
    "state_key",
    "stop_key",
    "stop_requested",
    "succeeded_jobs",
    "succeeded_prefix",
    "tag_data_prefix",
    "tag_key",
    "tags_prefix",
    "wheel_key",
    "write_app_token",
    "write_infra_record",
    "write_job_state",
    "write_log_chunk",
    "write_rendezvous",
    "write_secret",
    "write_stack_record",
    "write_tag",
]
