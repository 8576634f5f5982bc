"""The RPI post-execution calls the daemon keeps: in memory to match files, and in the journal so
that a restart keeps them. Calls expire after hook.call_ttl_seconds and are pruned as they do,
in memory and in the journal; at most MAX_CALLS are kept (the oldest go first: a call is only a
hint), each at most hook.py's MAX_FIELD_CHARS a field. `accept` is the hook's handler
(server.py): the store is injected into the server and the watcher's listener.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Protocol

import orjson

from .errors import JournalError
from .hook import RpiCall, call_for, parse_rpi_call
from .metrics import Metrics

log = logging.getLogger(__name__)

MAX_CALLS = 1_000  # RPI calls once per channel run: far more than a TTL's worth


class CallJournal(Protocol):
    """Where calls are kept across restarts (journal.py)."""

    def store_rpi_call(self, body: str) -> bool: ...

    def rpi_calls_since(self, since: float) -> list[tuple[float, str]]: ...

    def prune_rpi_calls(self, before: float, keep: int) -> None: ...


class RpiCallStore:
    def __init__(
        self,
        ttl_s: Callable[[], float],
        *,
        max_calls: int = MAX_CALLS,
        clock: Callable[[], float] = time.time,
        metrics: Metrics | None = None,
    ) -> None:
        self._ttl_s = ttl_s  # read at each use: a reload may change it
        self._max_calls = max_calls
        self._clock = clock
        self._calls: deque[RpiCall] = deque()  # oldest first
        self._journal: CallJournal | None = None
        self._metrics = metrics or Metrics()  # (a store of its own: tests)
        self._on_accepted: list[Callable[[], None]] = []

    def __len__(self) -> int:
        return len(self._calls)

    def attach(self, journal: CallJournal) -> None:
        """Keep calls in `journal` from now on, and take back the live ones it holds."""
        self._journal = journal
        for received_at, body in journal.rpi_calls_since(self._clock() - self._ttl_s()):
            call = parse_rpi_call(orjson.loads(body), received_at)
            if not isinstance(call, str):
                self._calls.append(call)
        self._prune()

    def on_accepted(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Called after each new call (the watcher looks again at what settles fast); the
        returned function stops that."""
        self._on_accepted.append(listener)
        return lambda: self._on_accepted.remove(listener)

    def accept(self, payload: object) -> tuple[int, str]:
        """The hook's handler: keep the call (before answering), then tell the listeners.
        Returns the HTTP status and its message."""
        call = parse_rpi_call(payload, self._clock())
        if isinstance(call, str):
            self._metrics.hook_calls.labels("invalid").inc()
            return 400, call
        if self._journal is None:
            self._metrics.hook_calls.labels("unavailable").inc()
            return 503, "not started yet"
        try:
            new = self.add(call)
        except JournalError as exc:
            self._metrics.hook_calls.labels("unavailable").inc()
            return 503, f"cannot keep the call now: {exc}"
        if not new:
            self._metrics.hook_calls.labels("duplicate").inc()
            return 200, "already known"
        self._metrics.hook_calls.labels("accepted").inc()
        log.info(
            "RPI says channel %r, offer %r finished (channel execution %s)",
            call.channel,
            call.offer,
            call.channel_execution_id or "?",
        )
        for listener in self._on_accepted:
            listener()
        return 202, "accepted"

    def add(self, call: RpiCall) -> bool:
        """Keep `call` (in the journal first); False if the same call was kept before.
        Raises the journal's error when it cannot be written: the caller answers 503."""
        journal = self._journal
        if journal is not None and not journal.store_rpi_call(
            orjson.dumps(dict(call.fields)).decode()
        ):
            return False
        self._calls.append(call)
        self._prune()
        if self._journal is not None:
            self._journal.prune_rpi_calls(self._clock() - self._ttl_s(), self._max_calls)
        return True

    def call_for(self, values: Mapping[str, str]) -> RpiCall | None:
        """The newest live call for a file's path values (hook.call_for)."""
        self._prune()
        return call_for(values, self._calls, self._clock(), self._ttl_s())

    def _prune(self) -> None:
        expired_before = self._clock() - self._ttl_s()
        calls = self._calls
        while calls and (len(calls) > self._max_calls or calls[0].received_at < expired_before):
            calls.popleft()
