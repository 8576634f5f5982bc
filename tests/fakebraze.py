"""A real aiohttp server that behaves like Braze's POST /users/track, for tests and benchmarks.

It records every request, enforces its own sliding-window rate limit (answering 429 like
Braze), notices two concurrent requests that touch one user, and can be scripted: a queue of
canned answers (429 in both header styles, HTML 5xx, resets, stalls, 401) and per-user minor
errors. Like Braze, it ignores an update-only object for a user it does not have (and counts
it). With `workers` it slows under load as a real service does: each request waits its
latency, then for one of a fixed number of workers, which takes `service_s` to process it, so
extra concurrency only queues. Run it alone with
`python tests/fakebraze.py --port N [--latency-ms 100]`.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

API_KEY = "test-key-5f1c9a"
VALID_DATA_MESSAGE = (
    "Valid data must be provided in the 'attributes', 'events', or 'purchases' fields."
)


@dataclass
class Scripted:
    """One canned answer, used instead of the normal one for the next request."""

    kind: str  # "status", "reset", "stall"
    status: int = 500
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    stall_s: float = 0.0


def html_error(status: int) -> Scripted:
    page = f"<html><body><h1>{status} Bad Gateway</h1></body></html>".encode()
    return Scripted("status", status, page, {"Content-Type": "text/html"})


def rate_limited(style: str, wait_s: float = 0.2) -> Scripted:
    if style == "retry-after":
        return Scripted(
            "status", 429, b'{"message":"Rate Limited"}', {"X-Ratelimit-Retry-After": str(wait_s)}
        )
    reset = str(int(time.time() + wait_s + 1)) if style == "epoch" else str(wait_s)
    headers = {
        "X-RateLimit-Limit": "3000",
        "X-RateLimit-Remaining": "0",
        "X-RateLimit-Reset": reset,
    }
    return Scripted("status", 429, b'{"message":"Rate Limited"}', headers)


_CONTROL = ("external_id", "_merge_objects", "_update_existing_only")


def apply_object(profile: dict[str, Any], obj: dict[str, Any]) -> None:
    """One accepted attributes object applied to a profile as Braze does: a standard field
    set, a nested object merged key by key under _merge_objects (replaced otherwise), array
    values added at the end (one already there moves to the end) or removed."""
    merge = obj.get("_merge_objects") is True
    for key, value in obj.items():
        if key in _CONTROL:
            continue
        if isinstance(value, dict) and value and set(value) <= {"add", "remove"}:
            array = profile.setdefault(key, [])
            for item in value.get("add", []):
                if item in array:
                    array.remove(item)
                array.append(item)
            for item in value.get("remove", []):
                while item in array:
                    array.remove(item)
        elif isinstance(value, dict) and merge and not any(k.startswith("$") for k in value):
            profile.setdefault(key, {}).update(value)
        else:
            profile[key] = value


class FakeBraze:
    def __init__(
        self,
        *,
        rate_limit: tuple[int, float] | None = None,
        latency_s: float = 0.0,
        max_objects: int = 75,
        api_key: str = API_KEY,
        workers: int | None = None,
        service_s: float = 0.0,
    ) -> None:
        self.api_key = api_key
        self.rate_limit = rate_limit
        self.latency_s = latency_s
        self.max_objects = max_objects
        self.service_s = service_s
        self._workers = asyncio.Semaphore(workers) if workers else None
        self.profiles: set[str] = set()  # users created by an upsert object
        # What a profile holds after the accepted objects, as Braze applies them (apply_object)
        self.attributes: dict[str, dict[str, Any]] = {}
        self.ignored_updates: list[str] = []  # update-only objects for users it did not have
        # Requests and rows between their arrival and their answer, now and at the most.
        self.in_flight_requests = self.in_flight_rows = 0
        self.peak_requests = self.peak_rows = 0
        self.arrived_rows = 0  # rows of every request read, answered or not
        self.script: collections.deque[Scripted] = collections.deque()
        self.minor_errors: dict[str, str] = {}  # external_id -> error type (201 with errors)
        self.invalid_users: set[str] = set()  # a request holding one of these gets a plain 400
        self.requests: list[dict[str, Any]] = []  # accepted bodies (201), in arrival order
        self.starts: list[float] = []  # monotonic start of every request, answered or not
        self.statuses: list[int] = []
        self.auth_headers: set[str] = set()
        self.user_agents: set[str] = set()
        self.overlaps: list[set[str]] = []  # users seen in two concurrent requests
        self._in_flight: collections.Counter[str] = collections.Counter()
        self.on_request: Callable[[dict[str, Any]], None] | None = None
        self.on_arrival: Callable[[list[dict[str, Any]]], None] | None = None  # its objects
        self.runner: web.AppRunner | None = None
        self.url = ""

    def slow_under_load(self, workers: int, service_s: float) -> None:
        """From now on, requests wait for one of `workers`, each taking `service_s`."""
        self._workers = asyncio.Semaphore(workers)
        self.service_s = service_s

    # --- what it received ----------------------------------------------------------------

    def objects(self) -> list[dict[str, Any]]:
        return [obj for body in self.requests for obj in body["attributes"]]

    def users(self) -> list[str]:
        return [obj["external_id"] for obj in self.objects()]

    def max_in_window(self, window_s: float) -> int:
        starts = sorted(self.starts)
        best, lo = 0, 0
        for hi, t in enumerate(starts):
            while t - starts[lo] >= window_s:
                lo += 1
            best = max(best, hi - lo + 1)
        return best

    # --- serving -------------------------------------------------------------------------

    def _over_rate(self, now: float) -> bool:
        if self.rate_limit is None:
            return False
        limit, window = self.rate_limit
        recent = [t for t in self.starts[-limit - 1 :] if now - t < window]
        return len(recent) > limit

    async def handle(self, request: web.Request) -> web.StreamResponse:
        now = time.monotonic()
        self.starts.append(now)
        auth = request.headers.get("Authorization", "")
        self.auth_headers.add(auth)
        self.user_agents.add(request.headers.get("User-Agent", ""))
        raw = await request.read()
        if self.script:
            scripted = self.script.popleft()
            if scripted.kind == "reset":
                assert request.transport is not None
                request.transport.abort()
                return web.Response(status=500)
            if scripted.kind == "stall":
                await asyncio.sleep(scripted.stall_s)
            else:
                return self._answer(scripted.status, scripted.body, scripted.headers)
        if auth != f"Bearer {self.api_key}":
            return self._answer(401, b'{"message":"Invalid API key: ..."}')
        if self._over_rate(now):
            return self._answer(
                429, b'{"message":"Rate Limited"}', {"X-Ratelimit-Retry-After": "1"}
            )
        body = orjson.loads(raw)
        objects = body.get("attributes", [])
        if not any(body.get(kind) for kind in ("attributes", "events", "purchases")):
            # Braze's answer to a request with nothing in it (check --online sends one).
            return self._answer(400, orjson.dumps({"message": VALID_DATA_MESSAGE}))
        if len(objects) > self.max_objects:
            return self._answer(400, b'{"message":"Max Input Length Exceeded"}')
        users = {o.get("external_id") for o in objects}
        if users & self.invalid_users:
            return self._answer(400, b'{"message":"Invalid attribute value"}')
        clash = {u for u in users if self._in_flight[u]}
        if clash:
            self.overlaps.append(clash)
        self._in_flight.update(users)
        self.in_flight_requests += 1
        self.in_flight_rows += len(objects)
        self.arrived_rows += len(objects)
        self.peak_requests = max(self.peak_requests, self.in_flight_requests)
        self.peak_rows = max(self.peak_rows, self.in_flight_rows)
        if self.on_arrival is not None:
            self.on_arrival(objects)
        try:
            if self.latency_s:
                await asyncio.sleep(self.latency_s)
            if self._workers is not None:
                async with self._workers:
                    await asyncio.sleep(self.service_s)
        finally:
            self._in_flight.subtract(users)
            self.in_flight_requests -= 1
            self.in_flight_rows -= len(objects)
        errors = [
            {"type": self.minor_errors[o["external_id"]], "input_array": "attributes", "index": i}
            for i, o in enumerate(objects)
            if o.get("external_id") in self.minor_errors
        ]
        if errors and len(errors) == len(objects):
            refusal = {"message": VALID_DATA_MESSAGE, "errors": errors}
            return self._answer(400, orjson.dumps(refusal))
        self.requests.append(body)
        refused = {error["index"] for error in errors}
        for index, obj in enumerate(objects):
            user = obj.get("external_id")
            if index in refused:
                continue
            if not obj.get("_update_existing_only"):
                self.profiles.add(user)
            elif user not in self.profiles:
                self.ignored_updates.append(user)  # Braze's answer is still a 201
                continue
            apply_object(self.attributes.setdefault(user, {}), obj)
        if self.on_request is not None:
            self.on_request(body)
        reply: dict[str, Any] = {"message": "success", "attributes_processed": len(objects)}
        if errors:
            reply["errors"] = errors
        return self._answer(201, orjson.dumps(reply))

    def _answer(
        self, status: int, body: bytes, headers: dict[str, str] | None = None
    ) -> web.Response:
        self.statuses.append(status)
        merged = {"Content-Type": "application/json", **(headers or {})}
        return web.Response(status=status, body=body, headers=merged)

    async def start(self, port: int = 0) -> str:
        app = web.Application(client_max_size=8 << 20)
        app.router.add_post("/users/track", self.handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", port)
        await site.start()
        server = site._server
        assert server is not None
        bound = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        self.url = f"http://127.0.0.1:{bound}"
        return self.url

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


class CountingBraze:
    """For benchmarks: answers 201 as cheaply as possible and only counts (no JSON parsing),
    so that the fake is not what limits the measured rate. GET /stats reports."""

    def __init__(self, latency_s: float, rate_limit: tuple[int, float] | None) -> None:
        self.latency_s = latency_s
        self.rate_limit = rate_limit
        self.starts: list[float] = []
        self.objects = 0
        self.refused = 0
        self.first = self.last = 0.0

    async def track(self, request: web.Request) -> web.Response:
        now = time.monotonic()
        self.starts.append(now)
        body = await request.read()
        if self.rate_limit is not None:
            limit, window = self.rate_limit
            recent = self.starts[-limit - 1 :]
            if len(recent) > limit and now - recent[0] < window:
                self.refused += 1
                return web.Response(status=429, headers={"X-Ratelimit-Retry-After": "1"})
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        self.objects += body.count(b'"_update_existing_only"')
        self.first = self.first or now
        self.last = time.monotonic()
        return web.Response(
            status=201, body=b'{"message":"success"}', content_type="application/json"
        )

    async def stats(self, _: web.Request) -> web.Response:
        window = self.rate_limit[1] if self.rate_limit else 3.0
        probe = FakeBraze()
        probe.starts = self.starts
        return web.json_response(
            {
                "requests": len(self.starts),
                "objects": self.objects,
                "refused": self.refused,
                "first": self.first,
                "last": self.last,
                "max_in_window": probe.max_in_window(window),
                "window_s": window,
            }
        )


async def _serve(port: int, latency_ms: float, rate: int | None) -> None:
    fake = CountingBraze(latency_ms / 1000, (rate, 3.0) if rate else None)
    app = web.Application(client_max_size=8 << 20)
    app.router.add_post("/users/track", fake.track)
    app.router.add_get("/stats", fake.stats)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, backlog=1024).start()
    print(f"fake Braze at http://127.0.0.1:{port}", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--rate-limit", type=int, default=None)
    args = parser.parse_args()
    asyncio.run(_serve(args.port, args.latency_ms, args.rate_limit))
