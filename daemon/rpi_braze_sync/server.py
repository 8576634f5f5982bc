"""The daemon's HTTP server: /metrics for Prometheus, /healthz and /readyz for probes, and
POST /rpi/post-execution for RPI's post-execution call.

Only adapts the app's state to HTTP. The hook's token guards that route alone (Prometheus
scrapes freely); without a token the route answers only callers on loopback. Slow or idle
clients are bounded: at most MAX_CONNECTIONS at once (more are answered 503 and closed), a
request's headers within IDLE_TIMEOUT_S of the connection or of the previous answer, a body
within BODY_TIMEOUT_S.
"""

from __future__ import annotations

import asyncio
import errno
import hmac
import ipaddress
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass

import orjson
from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from prometheus_client.aiohttp import make_aiohttp_handler

from .errors import ListenError
from .metrics import Metrics
from .secret import Secret

log = logging.getLogger(__name__)
Readiness = Callable[[], list[str]]  # what keeps the daemon from being ready; empty when ready
HOOK_PATH = "/rpi/post-execution"
MAX_HOOK_BODY = 64 * 1024
# Prometheus, probes and RPI need a handful; the rest of the 1,024 descriptors systemd gives a
# service by default stay for the journal, the share and Braze.
MAX_CONNECTIONS = 128
IDLE_TIMEOUT_S = 15.0  # no complete request headers by then: the connection is closed
BODY_TIMEOUT_S = 10.0
_REFUSAL = (
    b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 19\r\n"
    b"Content-Type: text/plain\r\n\r\ntoo many connections"
)


@dataclass(frozen=True)
class HookRoute:
    accept: Callable[[object], tuple[int, str]]  # the parsed JSON body -> status, message
    token: Callable[[], Secret | None]  # asked at each call: a reload may rotate it


class AccessLogger(AbstractAccessLogger):
    """Method, path (never the query string: it may hold the hook's token), status, time."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.debug(
            "%s %s %s %d %.3fs", request.remote, request.method, request.path, response.status, time
        )

    @property
    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.DEBUG)


def _is_loopback(remote: str | None) -> bool:
    try:
        return remote is not None and ipaddress.ip_address(remote).is_loopback
    except ValueError:
        return False


def authorised(request: web.Request, token: Secret | None) -> bool:
    """`Authorization: Bearer <token>`, else `?token=`; any other Authorization header (a
    scheme of its own, no token, bytes that are not text) is refused, never an error."""
    if token is None:
        return _is_loopback(request.remote)
    header = request.headers.get("Authorization")
    if header is not None:
        scheme, _, given = header.strip().partition(" ")
        if scheme.lower() != "bearer":
            return False
    else:
        given = request.query.get("token", "")
    try:
        offered = given.strip().encode("utf-8")
    except UnicodeEncodeError:  # undecodable bytes, as aiohttp passes them on
        return False
    return hmac.compare_digest(offered, token.reveal().encode())


async def _read_body(request: web.Request) -> bytes | None:
    """The whole body, sent with Content-Length or chunked; None when over MAX_HOOK_BODY."""
    if request.content_length is not None and request.content_length > MAX_HOOK_BODY:
        return None
    body = bytearray()
    while len(body) <= MAX_HOOK_BODY:
        chunk = await request.content.read(MAX_HOOK_BODY + 1 - len(body))
        if not chunk:
            return bytes(body)
        body += chunk
    return None


def build_app(
    metrics: Metrics,
    readiness: Readiness,
    hook: HookRoute | None = None,
    role: Callable[[], str | None] = lambda: None,
) -> web.Application:
    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(_: web.Request) -> web.Response:
        problems = readiness()
        said = role()  # an active/standby pair's: leader or standby, ready either way
        said = f"{said}\n" if said else ""
        if problems:
            return web.Response(
                status=503,
                text="not ready:\n" + "".join(f"- {p}\n" for p in problems) + said,
            )
        return web.Response(text="ready\n" + said)

    async def post_execution(request: web.Request) -> web.Response:
        assert hook is not None
        token = hook.token()
        if not authorised(request, token):
            metrics.hook_calls.labels("unauthorised").inc()
            return web.json_response({"error": "unauthorised"}, status=401 if token else 403)
        try:
            async with asyncio.timeout(BODY_TIMEOUT_S):
                body = await _read_body(request)
        except TimeoutError:
            metrics.hook_calls.labels("invalid").inc()
            return web.json_response({"error": "the body came too slowly"}, status=408)
        if body is None:
            metrics.hook_calls.labels("invalid").inc()
            return web.json_response({"error": "body too large"}, status=413)
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError:
            metrics.hook_calls.labels("invalid").inc()
            return web.json_response({"error": "the body is not JSON"}, status=400)
        status, message = hook.accept(payload)
        key = "error" if status >= 400 else "status"
        return web.json_response({key: message}, status=status)

    app = web.Application()
    # prometheus_client's own handler: OpenMetrics or the text format as the scraper asks,
    # gzip when it accepts it.
    app.router.add_get("/metrics", make_aiohttp_handler(metrics.registry))
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    if hook is not None:
        app.router.add_post(HOOK_PATH, post_execution)
    return app


class _Refused(asyncio.Protocol):
    """A connection over the cap: told why, and closed at once (its descriptor with it)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        transport.write(_REFUSAL)
        transport.close()


class _Capped:
    """aiohttp's protocol factory, answering 503 past `limit` open connections."""

    def __init__(self, server: web.Server, limit: int) -> None:
        self._server = server
        self._limit = limit
        self.refused = 0

    def __call__(self) -> asyncio.BaseProtocol:
        if len(self._server.connections) >= self._limit:
            self.refused += 1
            log.warning("too many HTTP connections (%d open): refusing more", self._limit)
            return _Refused()
        return self._server()


class HttpServer:
    """The listening socket and aiohttp's runner behind it; `cleanup` closes both."""

    def __init__(self, runner: web.AppRunner, listener: asyncio.Server, capped: _Capped) -> None:
        self._runner = runner
        self._listener = listener
        self._capped = capped

    @property
    def refused(self) -> int:
        return self._capped.refused

    async def cleanup(self) -> None:
        self._listener.close()
        await self._runner.cleanup()  # open connections: answered, then closed


async def start_server(
    app: web.Application, listen: str, max_connections: int = MAX_CONNECTIONS
) -> HttpServer:
    host, _, port = listen.rpartition(":")
    runner = web.AppRunner(
        app,
        access_log_class=AccessLogger,
        access_log=logging.getLogger("rpi_braze_sync.access"),
        keepalive_timeout=IDLE_TIMEOUT_S,  # aiohttp counts it from the connection's start too
    )
    await runner.setup()
    assert runner.server is not None
    capped = _Capped(runner.server, max_connections)
    try:
        listener = await asyncio.get_running_loop().create_server(
            capped, host.strip("[]"), int(port), reuse_address=True, backlog=64
        )
    except OSError as exc:
        await runner.cleanup()
        raise ListenError(f"cannot listen on {listen}: {_why(exc)}") from None
    return HttpServer(runner, listener, capped)


def _why(exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        return "the address is already in use (another rpi-braze-sync, or another program)"
    if exc.errno == errno.EADDRNOTAVAIL:
        return "no interface of this machine has that address"
    if exc.errno == errno.EACCES:
        return "permission denied (ports below 1024 need privileges)"
    if isinstance(exc, socket.gaierror):
        return f"unknown host ({exc.strerror})"
    return exc.strerror or str(exc)
