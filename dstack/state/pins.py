"""Pinning a job's spec: what the submitter wrote is what every attempt runs.

``spec.json`` lives in the store, and anyone who may write the store may overwrite it. So the
submitter keeps the SHA-256 of the exact bytes it wrote (``create_run`` returns them), and the
runner gets that digest from its launcher, outside the store: its process arguments on this
machine (the supervisor keeps it for every attempt), its instance's user data on AWS (which
nobody can change through the bucket). The runner, the supervisor and a cloud launcher read a
spec only through :func:`read_pinned_spec`, which refuses any other bytes.

Everything else a runner must trust is inside the spec and so covered by its digest: the code
tree's content address (``repo.code_key``; its blobs are content-addressed too), the deps
resolved at submit, the names of the secrets the job gets, the commands, args and env.

The digests of the jobs a user submitted are also kept in their own dstack home (the *pin
book*, private files), so that a later attempt started from this machine (a lost runner's job
retried by `ps`, `logs` or an attached `dstack run`, or a cloud job's next instance) is pinned
too. A machine without the pin does not start another attempt.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from pathlib import Path
from urllib.parse import quote

from dstack import settings
from dstack.errors import TamperedError
from dstack.models import JobSpec
from dstack.state.keys import spec_key
from dstack.state.records import load_record
from dstack.storage.base import Storage


def spec_digest(data: bytes) -> str:
    """The pin of a spec: the SHA-256 of its stored bytes, in hex."""
    return hashlib.sha256(data).hexdigest()


def read_pinned_spec(
    storage: Storage, repo_id: str, run_name: str, job_index: int, digest: str
) -> JobSpec:
    """The job's spec, if its stored bytes are the ones pinned by ``digest``; otherwise
    ``TamperedError`` (the line to show and record)."""
    key = spec_key(repo_id, run_name, job_index)
    data = storage.get(key)
    found = spec_digest(data)
    if not digest or found != digest.lower():
        raise TamperedError(
            f"refused to run: {key} is not the spec its submitter wrote (sha256 {found[:16]}…, "
            f"pinned {(digest or 'nothing')[:16]}…); someone rewrote it in the store, so "
            "nothing of it was run"
        )
    spec = load_record(JobSpec, data, key)
    if (spec.repo.repo_id, spec.run_name, spec.job_index) != (repo_id, run_name, job_index):
        raise TamperedError(f"refused to run: {key} describes another job")
    return spec


def remember(storage: Storage, repo_id: str, run_name: str, digests: dict[int, str]) -> None:
    """Keep the pins of a run's jobs in this user's dstack home (best effort: a machine that
    cannot keep them starts no later attempt of a lost runner's job, nothing worse)."""
    folder = _book(storage, repo_id, run_name)
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        for index, digest in digests.items():
            fd, tmp = tempfile.mkstemp(dir=folder, prefix=".pin-")
            with os.fdopen(fd, "w") as out:
                out.write(digest)
            os.replace(tmp, folder / str(index))
    except OSError:
        return


def recall(storage: Storage, repo_id: str, run_name: str, job_index: int) -> str | None:
    """The pin this machine kept for the job, or None."""
    try:
        text = (_book(storage, repo_id, run_name) / str(job_index)).read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None
    return text if len(text) == 64 and all(c in "0123456789abcdef" for c in text) else None


def forget(storage: Storage, repo_id: str, run_name: str) -> None:
    """Drop a removed run's pins."""
    folder = _book(storage, repo_id, run_name)
    with contextlib.suppress(OSError):
        for path in folder.iterdir():
            path.unlink()
        folder.rmdir()


def _book(storage: Storage, repo_id: str, run_name: str) -> Path:
    store = hashlib.sha256(storage.describe().encode()).hexdigest()[:16]
    return settings.dstack_home() / "pins" / store / quote(repo_id, safe="") / run_name


def pinned_run_specs(
    storage: Storage, repo_id: str, run_name: str, job_count: int, given: list[JobSpec]
) -> tuple[list[JobSpec], dict[int, str]]:
    """Every spec of a run, each the one its submitter wrote, with the pins a launcher hands
    its runners. A spec in ``given`` whose bytes are the pinned ones is used as it is (no read);
    the others are read through their pins. ``ComputeError`` when this machine holds no pin of
    a job (it did not submit the run, so it launches nothing of it), or when a spec is not the
    one pinned (saying so)."""
    from dstack.errors import ComputeError
    from dstack.models import dump

    digests: dict[int, str] = {}
    for index in range(job_count):
        pin = recall(storage, repo_id, run_name, index)
        if pin is None:
            raise ComputeError(
                f"job {run_name}-{index}: this machine did not submit it (no pin of its spec "
                "in the dstack home), so it starts no attempt of it"
            )
        digests[index] = pin
    known = {job.job_index: job for job in given}
    specs = []
    for index in range(job_count):
        job = known.get(index)
        if job is None or spec_digest(dump(job)) != digests[index]:
            try:
                job = read_pinned_spec(storage, repo_id, run_name, index, digests[index])
            except TamperedError as exc:
                raise ComputeError(str(exc)) from None
        specs.append(job)
    return specs, digests
