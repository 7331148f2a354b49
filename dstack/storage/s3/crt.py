"""Moving batches of files between disk and an S3 bucket through the AWS Common Runtime.

``S3Storage`` hands whole batches to the CRT's S3 client, which signs, sends, checksums (CRC32)
and writes them in native threads; its failures become the botocore exceptions the rest of the
store already classifies. ``engine()`` says whether it can be used (``awscrt``, no proxy, a
region, ``DSTACK_S3_CRT``). Why, and how: docs/design/s3-store.md.
"""

from __future__ import annotations

import errno
import gc
import os
import random
import re
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import quote, urlsplit

from dstack.errors import ConfigError
from dstack.storage.s3 import aws_errors
from dstack.storage.s3.files import Progress, file_mode

DISABLE_ENV = "DSTACK_S3_CRT"
_PROXY_ENV = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")
_PROBE_KEY = "dstack-endpoint-probe"
_CODE = re.compile(rb"<Code>([^<]*)</Code>")
_MESSAGE = re.compile(rb"<Message>([^<]*)</Message>")


def engine() -> bool:
    """Whether the CRT carries transfers in this process. ``DSTACK_S3_CRT`` unset: when it can
    (``awscrt`` installed, no HTTP proxy); ``0``: never; ``1``: always, and a ConfigError
    saying why when it cannot."""
    choice = os.environ.get(DISABLE_ENV, "").strip().lower()
    if choice in ("0", "false", "no", "off"):
        return False
    if choice not in ("", "1", "true", "yes", "on"):
        raise ConfigError(f"{DISABLE_ENV}={choice}: expected 1 (on) or 0 (off), or unset (auto)")
    required = choice != ""
    proxy = next((name for name in _PROXY_ENV if os.environ.get(name)), None)
    if proxy is not None:
        if required:
            raise ConfigError(
                f"{DISABLE_ENV}=1, but {proxy} is set and the AWS CRT does not go through a "
                f"proxy: unset one of them"
            )
        return False
    try:
        import awscrt.s3  # noqa: F401
    except ImportError:
        if required:
            raise ConfigError(
                f"{DISABLE_ENV}=1, but awscrt is not installed: install dstack's aws extra "
                "(`pip install 'dstack[aws]'`), or unset it"
            ) from None
        return False
    return True


@dataclass
class Transfer:
    """One file of a batch: ``path`` is the file sent, or the temporary file received into;
    ``name`` is the caller's name for it."""

    key: str
    path: Path
    meter: Progress
    name: str = ""
    mode: str = "644"  # sent as x-amz-meta-mode
    received_mode: int = 0o644
    _headers: list[tuple[str, str]] = field(default_factory=list, repr=False)


class CrtTransfers:
    """One CRT S3 client for one bucket, bound to the process that made it."""

    in_flight = 256
    #: every instance not yet destroyed, so a forked child can keep them from being destroyed
    live: ClassVar[weakref.WeakSet[CrtTransfers]] = weakref.WeakSet()

    def __init__(
        self,
        client: Any,
        credentials: Any,
        bucket: str,
        *,
        part_size: int,
        threshold: int,
        connect_timeout: float,
        deadline: float,
    ) -> None:
        from awscrt.auth import AwsCredentials, AwsCredentialsProvider
        from awscrt.io import ClientBootstrap, DefaultHostResolver, EventLoopGroup
        from awscrt.s3 import S3Client, S3RequestTlsMode, create_default_s3_signing_config

        url = urlsplit(
            client.generate_presigned_url(
                "get_object", Params={"Bucket": bucket, "Key": _PROBE_KEY}, ExpiresIn=60
            )
        )
        self.scheme, self.host = url.scheme, url.netloc
        self.path_prefix = url.path[: -len(_PROBE_KEY)]
        self.endpoint = f"{url.scheme}://{url.netloc}"
        self.deadline = deadline
        self.threshold = threshold

        def current() -> Any:
            frozen = credentials.get_frozen_credentials()
            return AwsCredentials(frozen.access_key, frozen.secret_key, frozen.token)

        provider = AwsCredentialsProvider.new_delegate(current)
        region = client.meta.region_name
        loop = EventLoopGroup()
        bootstrap = ClientBootstrap(loop, DefaultHostResolver(loop))
        tls = S3RequestTlsMode.ENABLED if url.scheme == "https" else S3RequestTlsMode.DISABLED
        self._client = S3Client(
            bootstrap=bootstrap,
            region=region,
            signing_config=create_default_s3_signing_config(
                region=region, credential_provider=provider
            ),
            tls_mode=tls,
            tls_connection_options=_tls_options() if url.scheme == "https" else None,
            part_size=part_size,
            multipart_upload_threshold=threshold,
            throughput_target_gbps=10.0,
            connect_timeout_ms=int(connect_timeout * 1000),
        )
        CrtTransfers.live.add(self)

    def upload(
        self, transfers: list[Transfer], on_done: Callable[[Transfer], None] | None = None
    ) -> None:
        """Store every file, calling ``on_done`` as each is stored; raise the first final
        failure (or the last transient one)."""
        self._run(transfers, self._put, on_done)

    def download(
        self, transfers: list[Transfer], on_done: Callable[[Transfer], None] | None = None
    ) -> None:
        """Receive every object into its ``path`` (``received_mode`` set from its metadata),
        calling ``on_done`` as each one is complete; raise like ``upload``."""
        self._run(transfers, self._get, on_done)

    # a batch, and its retries

    def _run(
        self,
        transfers: list[Transfer],
        send: Callable[..., Any],
        on_done: Callable[[Transfer], None] | None,
    ) -> None:
        start, attempt = time.monotonic(), 0
        pending = transfers
        while pending:
            failed = self._batch(pending, send, on_done)
            final = [item for item in failed if not aws_errors.is_transient(item[1])]
            if final:
                raise _naming(*final[0])
            if not failed:
                return
            remaining = self.deadline - (time.monotonic() - start)
            if remaining <= 0:
                raise _naming(*failed[-1])
            backoff = random.uniform(0, min(aws_errors.BACKOFF_MAX, 0.1 * 2**attempt))
            time.sleep(min(backoff, remaining))
            pending, attempt = [transfer for transfer, _ in failed], attempt + 1

    def _batch(
        self,
        transfers: list[Transfer],
        send: Callable[..., Any],
        on_done: Callable[[Transfer], None] | None,
    ) -> list[tuple[Transfer, BaseException]]:
        slots = threading.BoundedSemaphore(self.in_flight)
        changed = threading.Condition()
        open_requests: dict[int, Any] = {}
        failed: list[tuple[Transfer, BaseException]] = []

        def finish(transfer: Transfer, request_id: int, exc: BaseException | None) -> None:
            if exc is None and on_done is not None:
                try:
                    on_done(transfer)
                except Exception as callback_error:  # reported as the failure
                    exc = callback_error
            with changed:
                if exc is not None:
                    failed.append((transfer, exc))
                open_requests.pop(request_id, None)
                changed.notify_all()
            slots.release()

        for number, transfer in enumerate(transfers):
            slots.acquire()
            transfer.meter.restart()
            transfer._headers = []
            with changed:
                open_requests[number] = None
            try:
                request = send(transfer, lambda exc, t=transfer, n=number: finish(t, n, exc))
            except Exception as exc:  # refused before it was sent
                finish(transfer, number, _local_error(transfer, str(exc)) or exc)
                continue
            with changed:
                if number in open_requests:
                    open_requests[number] = request  # kept alive until it is done
        with changed:
            changed.wait_for(lambda: not open_requests)
        return failed

    # requests

    def _put(self, transfer: Transfer, done: Callable[[BaseException | None], None]) -> Any:
        from awscrt.s3 import (
            S3ChecksumAlgorithm,
            S3ChecksumConfig,
            S3ChecksumLocation,
            S3RequestType,
        )

        headers = [("Content-Type", "application/octet-stream"), ("x-amz-meta-mode", transfer.mode)]
        return self._client.make_request(
            type=S3RequestType.PUT_OBJECT,
            request=self._request("PUT", transfer.key, headers),
            send_filepath=str(transfer.path),
            checksum_config=S3ChecksumConfig(
                algorithm=S3ChecksumAlgorithm.CRC32, location=S3ChecksumLocation.HEADER
            ),
            on_progress=lambda progress, **_: transfer.meter.on_progress(progress),
            on_done=self._on_done("PutObject", transfer, done),
        )

    def _get(self, transfer: Transfer, done: Callable[[BaseException | None], None]) -> Any:
        from awscrt.s3 import S3ChecksumConfig, S3RequestType

        transfer.path.parent.mkdir(parents=True, exist_ok=True)

        def on_headers(status_code: int, headers: list[tuple[str, str]], **_: Any) -> None:
            transfer._headers = headers

        def on_body_done(exc: BaseException | None) -> None:
            if exc is None:
                meta = {name.lower(): value for name, value in transfer._headers}
                transfer.received_mode = file_mode(meta.get("x-amz-meta-mode"))
            done(exc)

        return self._client.make_request(
            type=S3RequestType.DEFAULT,
            operation_name="GetObject",
            request=self._request("GET", transfer.key, []),
            recv_filepath=str(transfer.path),
            checksum_config=S3ChecksumConfig(validate_response=True),
            on_headers=on_headers,
            on_progress=lambda progress, **_: transfer.meter.on_progress(progress),
            on_done=self._on_done("GetObject", transfer, on_body_done),
        )

    def _request(self, method: str, key: str, headers: list[tuple[str, str]]) -> Any:
        from awscrt.http import HttpHeaders, HttpRequest

        path = self.path_prefix + quote(key, safe="/~")
        return HttpRequest(method, path, HttpHeaders([("Host", self.host), *headers]))

    def _on_done(
        self, operation: str, transfer: Transfer, done: Callable[[BaseException | None], None]
    ) -> Callable[..., None]:
        def on_done(
            error: BaseException | None = None,
            error_headers: list[tuple[str, str]] | None = None,
            error_body: bytes | None = None,
            status_code: int | None = None,
            **_: Any,
        ) -> None:
            if error is None:
                done(None)
            else:
                done(
                    self._exception(
                        operation, transfer, error, error_headers, error_body, status_code
                    )
                )

        return on_done

    def _exception(
        self,
        operation: str,
        transfer: Transfer,
        error: BaseException,
        headers: list[tuple[str, str]] | None,
        body: bytes | None,
        status: int | None,
    ) -> BaseException:
        """The botocore exception a botocore client would have raised for this failure."""
        from botocore.exceptions import ClientError, ConnectionClosedError, SSLError

        name = str(getattr(error, "name", "") or type(error).__name__)
        if status and status >= 300:
            code = _first(_CODE, body) or str(status)
            message = _first(_MESSAGE, body) or name
            response = {
                "Error": {"Code": code, "Message": message},
                "ResponseMetadata": {
                    "HTTPStatusCode": status,
                    "HTTPHeaders": {k.lower(): v for k, v in headers or []},
                },
            }
            return ClientError(response, operation)
        local = _local_error(transfer, name)
        if local is not None:
            return local
        if "TLS" in name or "SSL" in name:
            return SSLError(endpoint_url=self.endpoint, error=name)
        return ConnectionClosedError(endpoint_url=f"{self.endpoint} ({name})")


def _local_error(transfer: Transfer, name: str) -> OSError | None:
    """The CRT could not read or write the file on disk: not worth retrying."""
    if "AWS_ERROR_FILE" not in name and "AWS_ERROR_SYS_CALL" not in name:
        return None
    return OSError(errno.EIO, f"cannot use the file ({name.split(': ')[0]})", str(transfer.path))


def _naming(transfer: Transfer, exc: BaseException) -> BaseException:
    """``exc``, marked with the object key it was for (``dstack_key``)."""
    exc.dstack_key = transfer.key  # type: ignore[attr-defined]
    return exc


def _first(pattern: re.Pattern[bytes], body: bytes | None) -> str | None:
    found = pattern.search(body or b"")
    return found.group(1).decode("utf-8", "replace") if found else None


def _tls_options() -> Any:
    """Trust what botocore would: ``AWS_CA_BUNDLE`` when set, else the system's store."""
    from awscrt.io import ClientTlsContext, TlsContextOptions

    options = TlsContextOptions()
    bundle = os.environ.get("AWS_CA_BUNDLE")
    if bundle:
        options.override_default_trust_store_from_path(ca_filepath=bundle)
    return ClientTlsContext(options).new_connection_options()


#: the CRT clients a forked child inherited from its parent: kept, never used, never destroyed
_INHERITED: list[CrtTransfers] = []


def _keep_inherited() -> None:
    """In a forked child, the parent's CRT objects (clients, requests, credential providers)
    belong to event-loop threads that do not exist here. Destroying one (its last reference
    dropped, or the garbage collector finding it in a cycle) runs native code that waits on
    those threads and crashes the child. So the child holds every client it inherited until
    it exits, and its garbage collector never looks at anything the parent made (``gc.freeze``:
    the parent's leftover garbage is simply not freed in the child). The child makes its own
    clients (``S3Transfers.crt`` checks the process id)."""
    _INHERITED.extend(CrtTransfers.live)
    CrtTransfers.live = weakref.WeakSet()
    gc.freeze()


os.register_at_fork(after_in_child=_keep_inherited)
