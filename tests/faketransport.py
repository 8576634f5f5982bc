"""An in-memory Transport for Sender unit tests (as httpx's MockTransport): each request's
body is kept and answered by a script, with no socket and no server."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Iterable

import orjson
from multidict import CIMultiDict, CIMultiDictProxy

from rpi_braze_sync.braze import Reply
from rpi_braze_sync.errors import TransportError

Answer = Reply | TransportError


def reply(status: int, payload: object = None, **headers: str) -> Reply:
    body = orjson.dumps(payload if payload is not None else {"message": "success"})
    return Reply(status, CIMultiDictProxy(CIMultiDict(headers)), body)


def success(body: bytes) -> Reply:
    return reply(201, {"message": "success", "attributes_processed": len(users_of(body))})


def users_of(body: bytes) -> list[str]:
    return [obj["external_id"] for obj in orjson.loads(body)["attributes"]]


class MemoryTransport:
    """Answers each request with the next scripted answer (a Reply, or a TransportError to
    raise), then with `default(body)` once the script is used up."""

    def __init__(
        self, script: Iterable[Answer] = (), default: Callable[[bytes], Answer] = success
    ) -> None:
        self.script: deque[Answer] = deque(script)
        self.default = default
        self.bodies: list[bytes] = []
        self.finished: list[str] = []
        self.closed = False

    async def post(self, body: bytes, source: str) -> Reply:
        self.bodies.append(body)
        await asyncio.sleep(0)  # a request takes at least a turn of the loop
        answer = self.script.popleft() if self.script else self.default(body)
        if isinstance(answer, TransportError):
            raise answer
        return answer

    def finish(self, source: str) -> None:
        self.finished.append(source)

    async def close(self) -> None:
        self.closed = True

    def users(self) -> list[str]:
        """Every user in every request, in order (a resent user appears again)."""
        return [user for body in self.bodies for user in users_of(body)]
