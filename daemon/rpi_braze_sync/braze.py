"""The only module that speaks HTTP to Braze, and the pure reading of what Braze answered.

Transports take a request body and give back a `Reply`; failures of the network become
`TransportError`. `classify` turns a reply into what the sender must do. The API key lives in
the session's default headers only: it is never formatted into a message.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import os
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Protocol

import aiohttp
import orjson
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from . import package_version
from .errors import TransportError
from .fileplan import UPDATE_EXISTING_ONLY
from .redact import redact, without
from .secret import Secret
from .statewriter import StateWriter

USER_AGENT = f"rpi-braze-sync/{package_version()}"
# A request refused by the sending gate (HttpTransport.may_send: a pair's lease, leader.py).
NOT_ALLOWED = "not sent: this daemon no longer holds the lease"


@dataclass(frozen=True)
class Reply:
    status: int
    headers: Mapping[str, str]  # case-insensitive
    body: bytes


def describe_failure(
    exc: BaseException, host: str, timeout_s: float, reached: bool
) -> TransportError:
    """What went wrong, from aiohttp's or the OS's exception: refused, DNS, TLS or timeout.

    Only the host is named: aiohttp's own texts are not used (they may grow to hold more)."""
    if isinstance(exc, TimeoutError):  # (aiohttp's connection timeouts are TimeoutErrors too)
        what = "no answer from" if reached else "no connection to"
        return TransportError("timeout", reached, f"{what} {host} within {timeout_s:g} s")
    if isinstance(exc, aiohttp.ClientSSLError):
        return TransportError("tls", reached, f"TLS with {host} failed ({_ssl_reason(exc)})")
    if isinstance(exc, aiohttp.ClientConnectorError):
        if isinstance(exc.os_error, socket.gaierror):
            return TransportError("dns", False, f"cannot resolve {host} (DNS)")
        if exc.os_error.errno == errno.ECONNREFUSED:
            return TransportError("connection", False, f"connection refused by {host}")
        why = exc.os_error.strerror or type(exc.os_error).__name__
        return TransportError("connection", False, f"cannot connect to {host} ({why})")
    if reached:
        return TransportError(
            "connection", True, f"connection to {host} lost before an answer (reset or closed)"
        )
    failed = f"connection to {host} failed ({type(exc).__name__})"
    return TransportError("connection", False, failed)


def _ssl_reason(exc: aiohttp.ClientSSLError) -> str:
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return "certificate not trusted"
    reason = getattr(exc.os_error, "reason", None) if hasattr(exc, "os_error") else None
    return str(reason) if reason else "handshake"


class Transport(Protocol):
    async def post(self, body: bytes, source: str) -> Reply:
        """Send one /users/track body; `source` is the export's relative path (for the outbox)."""
        ...

    def finish(self, source: str) -> None:
        """Every request of `source` was answered and it is done: make what was written for
        it durable (the outbox); nothing to do over HTTP."""
        ...

    async def close(self) -> None: ...


class HttpTransport:
    """POST {api_url}/users/track over one pooled aiohttp session."""

    def __init__(self, api_url: str, api_key: Secret, timeout_s: float, pool_size: int) -> None:
        self.url = f"{api_url}/users/track"
        self._key = api_key.reveal()
        self._headers = {
            "Authorization": f"Bearer {api_key.reveal()}",
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
        }
        self._timeout_s = timeout_s
        self._pool_size = pool_size
        self._session: aiohttp.ClientSession | None = None
        # Asked again at the last moment before a request's first byte is written (_GatedBody):
        # a pair's leader that was paused between its fence's check and aiohttp's write (which
        # comes loop turns later, after a connection is taken) must send nothing on waking.
        self.may_send: Callable[[], bool] = _always

    @property
    def host(self) -> str:
        """host:port of the URL, for messages (the key is never in the URL)."""
        url = URL(self.url)
        return f"{url.host}:{url.port}"

    def set_endpoint(self, api_url: str, api_key: Secret) -> None:
        """A reloaded configuration (a rotated key, a corrected URL): used from the next request."""
        self.url = f"{api_url}/users/track"
        self._key = api_key.reveal()
        self._headers["Authorization"] = f"Bearer {api_key.reveal()}"
        if self._session is not None:
            self._session.headers["Authorization"] = self._headers["Authorization"]

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None:
            # The pool is as large as the sender's own ceiling, so it never caps concurrency.
            connector = aiohttp.TCPConnector(limit=self._pool_size, limit_per_host=0)
            tracing = aiohttp.TraceConfig()
            tracing.on_request_headers_sent.append(_note_sent)
            self._session = aiohttp.ClientSession(
                connector=connector,
                headers=self._headers,
                timeout=aiohttp.ClientTimeout(total=self._timeout_s),
                trace_configs=[tracing],
            )
        return self._session

    async def post(self, body: bytes, source: str) -> Reply:
        session = self._open()
        progress = SimpleNamespace(sent=False, withheld=False)  # how far the request went
        data = _GatedBody(body, self.may_send, progress)
        try:
            async with session.post(self.url, data=data, trace_request_ctx=progress) as response:
                payload = without(await response.read(), self._key)  # an echo of it
                return Reply(
                    response.status, CIMultiDictProxy(CIMultiDict(response.headers)), payload
                )
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            if progress.withheld:  # not a byte of it was written
                raise TransportError("connection", False, NOT_ALLOWED) from None
            raise describe_failure(exc, self.host, self._timeout_s, progress.sent) from None

    def finish(self, source: str) -> None:
        """Braze keeps what it acknowledged: nothing to make durable here."""

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def _always() -> bool:
    return True


class _GatedBody(aiohttp.BytesPayload):
    """A request's body that aiohttp writes only if `may_send` still holds when it writes it.
    aiohttp (3.12 and later) holds the headers back to write them with the body's first
    bytes, so a refusal here leaves the socket untouched and the connection closed."""

    def __init__(self, body: bytes, may_send: Callable[[], bool], progress: Any) -> None:
        super().__init__(body, content_type="application/json")
        self._may_send = may_send
        self._progress = progress

    async def write_with_length(self, writer: Any, content_length: int | None) -> None:
        if not self._may_send():
            self._progress.withheld = True
            raise ConnectionAbortedError(NOT_ALLOWED)
        await super().write_with_length(writer, content_length)


async def _note_sent(
    session: aiohttp.ClientSession, context: SimpleNamespace, params: object
) -> None:
    context.trace_request_ctx.sent = True


class OutboxTransport:
    """Dry run: each body becomes one JSON line in <outbox>/<relative path>.jsonl.

    Written by the state writer's thread (statewriter.py) when given one, like the rejects
    and checkpoints: a body is in the outbox before its reply settles its rows, so before a
    checkpoint covers them.
    """

    def __init__(
        self,
        outbox: Path,
        on_failure: Callable[[str, OSError], None] | None = None,
        writer: StateWriter | None = None,
    ) -> None:
        self.outbox = outbox
        self._files: dict[str, int] = {}  # open descriptors, by source (the writer's side)
        self._on_failure = on_failure  # a full or read-only state directory (statewrites.py)
        self._writer = writer

    def path_for(self, source: str) -> Path:
        return self.outbox / f"{source}.jsonl"

    async def post(self, body: bytes, source: str) -> Reply:
        try:
            if self._writer is not None:
                await self._writer.submit(functools.partial(self._append, source, body + b"\n"))
            else:
                self._append(source, body + b"\n")
                await asyncio.sleep(0)
        except OSError as exc:
            # Like a request that got no answer: the sender tries it again (once it can).
            if self._on_failure is not None:
                self._on_failure("the outbox", exc)
            raise TransportError(
                "connection", False, f"cannot write the outbox: {exc.strerror}"
            ) from None
        count = body.count(b'"%s"' % UPDATE_EXISTING_ONLY.encode())  # (in every object)
        reply = orjson.dumps({"message": "success", "attributes_processed": count})
        return Reply(201, CIMultiDictProxy(CIMultiDict()), reply)

    def _append(self, source: str, line: bytes) -> None:
        """The whole line, or nothing: a write cut short by a full disk is taken back."""
        fd = self._files.get(source)
        if fd is None:
            target = self.path_for(source)
            target.parent.mkdir(parents=True, exist_ok=True)
            flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
            fd = self._files[source] = os.open(target, flags, 0o640)
        start = os.lseek(fd, 0, os.SEEK_END)
        try:
            written = 0
            while written < len(line):
                written += os.write(fd, line[written:])
        except OSError:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, start)
            raise

    def finish(self, source: str) -> None:
        """Made durable in the writer's turn, after the source's last body; not awaited (the
        file's final state is in the journal already: a lost fsync loses a dry run's tail)."""
        if self._writer is None:
            self._close(source)
            return
        self._writer.submit(functools.partial(self._close, source)).add_done_callback(
            self._report_close
        )

    def _report_close(self, closed: asyncio.Future[None]) -> None:
        exc = closed.exception()
        if isinstance(exc, OSError) and self._on_failure is not None:
            self._on_failure("the outbox", exc)
        elif exc is not None:
            raise exc

    def _close(self, source: str) -> None:
        fd = self._files.pop(source, None)
        if fd is not None:
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def _close_all(self) -> None:
        for source in list(self._files):
            self._close(source)

    async def close(self) -> None:
        if self._writer is not None:
            await self._writer.submit(self._close_all)
        else:
            self._close_all()


# --- what an answer means (pure) ---------------------------------------------------------


class Action(Enum):
    SENT = "sent"  # some rows may still be listed as errors
    REJECT_ALL = "reject_all"
    SPLIT = "split"  # too large: smaller batches
    BISECT = "bisect"  # a bad object somewhere: isolate it
    AUTH = "auth"  # key, instance or URL wrong: pause everything
    RATE_LIMITED = "rate_limited"
    RETRY = "retry"


@dataclass(frozen=True)
class Verdict:
    action: Action
    message: str = ""
    errors: dict[int, str] = field(default_factory=dict)  # index in the batch -> reason


def _json(body: bytes) -> dict[str, Any]:
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _row_errors(payload: Mapping[str, Any]) -> dict[int, str]:
    errors: dict[int, str] = {}
    listed = payload.get("errors")
    for error in listed if isinstance(listed, list) else ():
        if not isinstance(error, dict):
            continue
        index = error.get("index")
        if error.get("input_array", "attributes") == "attributes" and isinstance(index, int):
            reason = error.get("type") or error.get("message") or "rejected by Braze"
            errors[index] = redact(str(reason))
    return errors


def _text(body: bytes, limit: int = 200) -> str:
    """A short printable excerpt of a body that may be HTML or binary."""
    text = body[:limit].decode("utf-8", "replace")
    return " ".join(text.split())


def classify(reply: Reply) -> Verdict:
    status = reply.status
    if 200 <= status < 300:
        return Verdict(Action.SENT, errors=_row_errors(_json(reply.body)))
    payload = _json(reply.body)
    message = redact(str(payload.get("message") or _text(reply.body) or f"HTTP {status}"))
    if status == 400:
        if "valid data must be provided" in message.lower():
            return Verdict(Action.REJECT_ALL, message, _row_errors(payload))
        if "max input length" in message.lower():
            return Verdict(Action.SPLIT, message)
        return Verdict(Action.BISECT, message)
    if status == 413:
        return Verdict(Action.SPLIT, message)
    if status in (401, 403, 404, 405):  # a wrong key, instance or URL: configuration
        return Verdict(Action.AUTH, message)
    if status == 429:
        return Verdict(Action.RATE_LIMITED, message)
    return Verdict(Action.RETRY, message)
