"""The daemon's HTTP server: /metrics for Prometheus, /healthz and /readyz for probes, and
POST /rpi/post-execution for RPI's post-execution call.

Only adapts the app's state to HTTP. The hook's token guards that route alone (Prometheus
scrapes freely); without a token the route answers only callers on loopback.
"""

from __future__ import annotations

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

from .config import Secret
from .errors import ListenError
from .metrics import Metrics

log = logging.getLogger(__name__)
Readiness = Callable[[], list[str]]  # what keeps the daemon from being ready; empty when ready
HOOK_PATH = "/rpi/post-execution"
MAX_HOOK_BODY = 64 * 1024


@dataclass(frozen=True)
class HookRoute:
    accept: Callable[[object], tuple[int, str]]  # the parsed JSON body -> status, message
    token: Secret | None


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


def _authorised(request: web.Request, token: Secret | None) -> bool:
    if token is None:
        return _is_loopback(request.remote)
    header = request.headers.get("Authorization", "")
    given = header[7:] if header[:7].lower() == "bearer " else request.query.get("token", "")
    return hmac.compare_digest(given.encode(), token.reveal().encode())


def build_app(
    metrics: Metrics, readiness: Readiness, hook: HookRoute | None = None
) -> web.Application:
    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(_: web.Request) -> web.Response:
        problems = readiness()
        if problems:
            return web.Response(
                status=503, text="not ready:\n" + "".join(f"- {p}\n" for p in problems)
            )
        return web.Response(text="ready\n")

    async def post_execution(request: web.Request) -> web.Response:
        assert hook is not None
        if not _authorised(request, hook.token):
            metrics.hook_calls.labels("unauthorised").inc()
            return web.json_response({"error": "unauthorised"}, status=401 if hook.token else 403)
        body = await request.content.read(MAX_HOOK_BODY + 1)
        if len(body) > MAX_HOOK_BODY:
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


async def start_server(app: web.Application, listen: str) -> web.AppRunner:
    host, _, port = listen.rpartition(":")
    runner = web.AppRunner(
        app, access_log_class=AccessLogger, access_log=logging.getLogger("rpi_braze_sync.access")
    )
    await runner.setup()
    site = web.TCPSite(runner, host.strip("[]"), int(port))
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise ListenError(f"cannot listen on {listen}: {_why(exc)}") from None
    return runner


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
