"""What a runner watches on a cloud instance besides its job (``--cloud aws``).

A ``MachineWatch`` thread, beside the ``Agent``:

- polls the instance metadata service (IMDSv2: a session token, then
  ``spot/instance-action``) for a spot interruption notice; on one, it asks the agent to stop
  the job, save logs and artifacts and record ``interrupted`` (AWS gives two minutes);
- at the run's maximum duration, asks the agent to stop the job gracefully (artifacts saved;
  the boot script's hard power-off follows ten minutes later whatever happens);
- probes the store; when it has not been reachable for ``store_timeout`` seconds, it calls
  ``on_store_lost`` (the runner then kills the job and exits; the boot script powers the
  machine off, which terminates it): a machine that cannot report must not run up a bill.

The metadata endpoint is ``DSTACK_IMDS_ENDPOINT`` when set (tests point it at a fake on
127.0.0.1), else the link-local address every EC2 instance has.
"""

from __future__ import annotations

import json
import os
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

from dstack import state
from dstack.errors import StorageError
from dstack.models import JobSpec
from dstack.storage.base import Storage

IMDS_ENDPOINT = "http://169.254.169.254"
TOKEN_TTL = 21600
POLL_INTERVAL = 5.0
PROBE_INTERVAL = 30.0


class Imds:
    """A minimal IMDSv2 client: every read carries a session token (IMDSv1 is off)."""

    def __init__(self, endpoint: str | None = None, timeout: float = 2.0) -> None:
        self.endpoint = (
            endpoint or os.environ.get("DSTACK_IMDS_ENDPOINT") or IMDS_ENDPOINT
        ).rstrip("/")
        self.timeout = timeout
        self._token: str | None = None
        self._token_at = 0.0

    def get(self, path: str) -> str | None:
        """The metadata at ``path`` (``meta-data/instance-id``), None if there is none (404)
        or the service cannot be reached."""
        try:
            return self._get(path)
        except urllib.error.HTTPError as exc:
            if exc.code == 401:  # the token expired early: one fresh try
                self._token = None
                try:
                    return self._get(path)
                except (OSError, ValueError):
                    return None
            return None
        except (OSError, ValueError):
            return None

    def instance_id(self) -> str | None:
        return self.get("meta-data/instance-id")

    def address(self) -> str | None:
        """Where clients reach this instance: its public IPv4 address, else (an instance
        without one, in a private subnet) its private one."""
        return self.get("meta-data/public-ipv4") or self.get("meta-data/local-ipv4")

    def spot_action(self) -> dict[str, Any] | None:
        """The pending spot interruption (``{"action": "terminate", "time": …}``), or None."""
        raw = self.get("meta-data/spot/instance-action")
        if not raw:
            return None
        try:
            data = json.loads(raw)
        except ValueError:
            return {"action": raw}
        return data if isinstance(data, dict) else {"action": str(data)}

    def _get(self, path: str) -> str:
        request = urllib.request.Request(
            f"{self.endpoint}/latest/{path}", headers={"X-aws-ec2-metadata-token": self._session()}
        )
        with urllib.request.urlopen(request, timeout=self.timeout) as response:
            return str(response.read().decode())

    def _session(self) -> str:
        if self._token is None or time.monotonic() - self._token_at > TOKEN_TTL / 2:
            request = urllib.request.Request(
                f"{self.endpoint}/latest/api/token",
                method="PUT",
                headers={"X-aws-ec2-metadata-token-ttl-seconds": str(TOKEN_TTL)},
            )
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                self._token = str(response.read().decode())
            self._token_at = time.monotonic()
        return self._token


class MachineWatch(threading.Thread):
    """Spot notices, the time limit and the store's reachability, in one daemon thread."""

    def __init__(
        self,
        storage: Storage,
        spec: JobSpec,
        *,
        request: Callable[[str], None],
        on_store_lost: Callable[[], None],
        imds: Imds | None = None,
        max_duration: float | None = None,
        store_timeout: float | None = None,
        poll_interval: float = POLL_INTERVAL,
        probe_interval: float = PROBE_INTERVAL,
        say: Callable[[str], None] | None = None,
    ) -> None:
        super().__init__(name="machine-watch", daemon=True)
        self.storage = storage
        self.spec = spec
        self.imds = imds
        self.max_duration = max_duration
        self.store_timeout = store_timeout
        self.poll_interval = poll_interval
        self.probe_interval = probe_interval
        self._request = request
        self._on_store_lost = on_store_lost
        self._say = say or (lambda line: None)
        self._stopped = threading.Event()
        self.notice: dict[str, Any] | None = None

    def stop(self) -> None:
        self._stopped.set()

    def run(self) -> None:
        started = last_ok = last_probe = time.monotonic()
        timed_out = False
        while not self._stopped.is_set():
            now = time.monotonic()
            if self.imds is not None and self.notice is None:
                self.notice = self.imds.spot_action()
                if self.notice is not None:
                    self._say(f"spot interruption notice: {self.notice}; stopping the job")
                    self._request("interrupt")
            if self.max_duration and not timed_out and now - started >= self.max_duration:
                timed_out = True
                self._say(f"the run reached its maximum duration ({self.max_duration:.0f}s)")
                self._request("timeout")
            if self.store_timeout and now - last_probe >= self.probe_interval:
                last_probe = now
                if self._store_reachable():
                    last_ok = now
                elif now - last_ok >= self.store_timeout:
                    self._say(f"the store has been unreachable for {now - last_ok:.0f}s")
                    self._on_store_lost()
                    return
            self._stopped.wait(self.poll_interval)

    def _store_reachable(self) -> bool:
        try:
            state.stop_requested(self.storage, self.spec)
        except StorageError:
            return False
        return True
