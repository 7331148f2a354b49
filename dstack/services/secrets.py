"""The secrets of a repo (`dstack secrets`): names checked, values stored privately. No printing.

A secret is a variable that every job of the repo gets (``runner.extras``), masked as ``***``
in its logs. Values live only in their own records (``state.secret_key``): a file of mode 0600
in the local store, an SSE-KMS encrypted object in an S3 store (the account's ``aws/s3`` key,
so every principal allowed to use the bucket — the runner's instance role too — can read it,
and nobody else). They are never copied into a run or job record, a plan, or any listing:
:func:`list_names` reads names only.
"""

from __future__ import annotations

import re
import time

from dstack import state
from dstack.errors import DstackError
from dstack.models import SecretRecord
from dstack.services.context import Context
from dstack.storage.base import Storage

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Variables dstack sets for a job: a secret of the same name would silently replace them.
RESERVED = frozenset(
    {
        "PATH", "HOME", "VIRTUAL_ENV", "RUN_NAME", "JOB_ID", "JOB_INDEX", "WORKFLOW_NAME",
        "REPO_ID", "REPO_USER_NAME", "REPO_NAME", "REPO_BRANCH", "REPO_HASH", "PYTHONUNBUFFERED",
        "JOB_BIND_ADDRESS", "JOB_HOSTNAME", "JOB_TOKEN", "RUNS_DIR", "NODE_RANK", "NNODES",
        "NPROC_PER_NODE", "RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "GROUP_RANK",
    }
)  # fmt: skip
_RESERVED_PREFIXES = ("DSTACK_", "PORT_", "JOB_PORT_", "MASTER_")
# Variables that change what a job's shell, loader or interpreter runs: whoever may write the
# store could set one's value, so no secret may have such a name.
CODE_VARIABLES = frozenset(
    {
        "BASH_ENV", "ENV", "SHELLOPTS", "BASHOPTS", "PROMPT_COMMAND", "PS4", "IFS", "CDPATH",
        "GLOBIGNORE", "PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONINSPECT",
        "PYTHONUSERBASE", "PERL5OPT", "PERL5LIB", "RUBYOPT", "NODE_OPTIONS", "JAVA_TOOL_OPTIONS",
        "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_CONFIG_FILE", "UV_INDEX_URL",
        "UV_EXTRA_INDEX_URL", "GIT_SSH_COMMAND", "GIT_CONFIG_GLOBAL", "SSL_CERT_FILE",
        "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "TMPDIR",
    }
)  # fmt: skip
_CODE_PREFIXES = ("LD_", "BASH_FUNC_", "GCONV_", "MALLOC_", "GLIBC_")


MAX_NAME = 128
#: The OS limit for one variable (``NAME=value``, MAX_ARG_STRLEN on Linux) is 128 KiB.
MAX_VARIABLE_BYTES = 128 * 1024


def validate_value(name: str, value: str) -> None:
    size = len(name) + 2 + len(value.encode())
    if size > MAX_VARIABLE_BYTES:
        raise DstackError(
            f"secret {name}: the value is {len(value.encode()):,} bytes; one environment "
            f"variable holds at most {MAX_VARIABLE_BYTES - len(name) - 2:,}: store a path or a "
            "file instead"
        )


def validate_name(name: str) -> str:
    """``name`` if it can be a secret's name: a variable name dstack does not set itself."""
    if len(name or "") > MAX_NAME:
        raise DstackError(
            f"the secret name {name[:20]!r}… is {len(name)} characters: at most {MAX_NAME}"
        )
    if not _NAME.match(name or ""):
        raise DstackError(
            f"{name!r} is not a valid secret name: it becomes an environment variable, so use "
            "letters, digits and _, not starting with a digit (e.g. WANDB_API_KEY)"
        )
    if name in RESERVED or name.startswith(_RESERVED_PREFIXES):
        raise DstackError(f"{name!r} is a variable dstack sets for every job; pick another name")
    if name in CODE_VARIABLES or name.startswith(_CODE_PREFIXES):
        raise DstackError(
            f"{name!r} changes what a job's shell or interpreter runs, so it cannot be a secret "
            "(anyone who may write the store could set it); pick another name"
        )
    return name


def givable_names(storage: Storage, repo_id: str) -> list[str]:
    """The names of the repo's secrets a job submitted now gets (pinned in its spec): those
    with a valid name (one planted in the store under any other name is left out)."""
    names = []
    for name in state.list_secret_names(storage, repo_id):
        try:
            names.append(validate_name(name))
        except DstackError:
            continue
    return names


def list_names(ctx: Context) -> list[str]:
    """The names of the repo's secrets, sorted. Values are not read."""
    return state.list_secret_names(ctx.storage, ctx.repo_id)


def exists(ctx: Context, name: str) -> bool:
    return name in list_names(ctx)


def add(ctx: Context, name: str, value: str, *, replace: bool = False) -> bool:
    """Store the secret ``name``; True if it replaced one. A secret that exists is refused
    unless ``replace``."""
    validate_name(name)
    if not value:
        raise DstackError(f"secret {name}: the value is empty")
    validate_value(name, value)
    existed = exists(ctx, name)
    if existed and not replace:
        raise DstackError(
            f"secret {name} exists; confirm replacing it in a terminal, or pass -y to replace it"
        )
    record = SecretRecord(name=name, value=value, updated_at=time.time(), owner=_owner(ctx))
    state.write_secret(ctx.storage, ctx.repo_id, record)
    return existed


def delete(ctx: Context, name: str) -> None:
    validate_name(name)
    if not exists(ctx, name):
        raise DstackError(f"no secret {name} in {ctx.repo_id}; see `dstack secrets list`")
    state.delete_secret(ctx.storage, ctx.repo_id, name)


def _owner(ctx: Context) -> str:
    from dstack.repo import find_repo_root, read_owner

    try:
        return read_owner(find_repo_root(ctx.repo_path)).display
    except DstackError:
        return "unknown"
