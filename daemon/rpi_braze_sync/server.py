"""The daemon's HTTP server: /metrics for Prometheus, /healthz and /readyz for probes.

Only adapts the app's state to HTTP; it owns no logic of its own.
"""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from .metrics import Metrics

Readiness = Callable[[], list[str]]  # what keeps the daemon from being ready; empty when ready


def build_app(metrics: Metrics, readiness: Readiness) -> web.Application:
    async def get_metrics(_: web.Request) -> web.Response:
        body = generate_latest(metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(_: web.Request) -> web.Response:
        problems = readiness()
        if problems:
            return web.Response(
                status=503, text="not ready:\n" + "".join(f"- {p}\n" for p in problems)
            )
        return web.Response(text="ready\n")

    app = web.Application()
    app.router.add_get("/metrics", get_metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    return app


async def start_server(app: web.Application, listen: str) -> web.AppRunner:
    host, _, port = listen.rpartition(":")
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host.strip("[]"), int(port))
    await site.start()
    return runner
