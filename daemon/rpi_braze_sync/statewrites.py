"""Whether the state directory takes writes (a full disk, a read-only remount, lost
permissions): a write of the journal, the rejects or the outbox that fails marks it failing,
which pauses sending and makes /readyz say why; the next write that succeeds clears it.

The writers keep what they could not write and try again; this object only keeps the
verdict, says it once in the log, and tells the sender.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from .errors import JournalError

log = logging.getLogger(__name__)
RETRY_S = 2.0
StateWriteErrors = (OSError, JournalError)  # what a write of the state directory can raise


class StateWrites:
    def __init__(self, retry_s: float = RETRY_S) -> None:
        self.retry_s = retry_s
        self.problem: str | None = None
        self._listeners: list[Callable[[bool], None]] = []  # called with `writable`

    def on_change(self, listener: Callable[[bool], None]) -> Callable[[], None]:
        """Call `listener` when writability changes; the returned function stops that."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    @property
    def writable(self) -> bool:
        return self.problem is None

    def failed(self, what: str, exc: BaseException) -> None:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        problem = f"{what} cannot be written: {why}"
        first, self.problem = self.problem is None, problem  # (listeners read `writable`)
        if first:
            log.error(
                "%s; sending is paused until it can (nothing is counted as sent meanwhile: "
                "rows Braze acknowledged are checkpointed once the state directory takes "
                "writes again)",
                problem,
            )
            for listener in self._listeners:
                listener(False)

    def succeeded(self) -> None:
        if self.problem is None:
            return
        log.info("the state directory takes writes again: sending resumes")
        self.problem = None
        for listener in self._listeners:
            listener(True)

    async def probe_while_failing(self, probe: Callable[[], None]) -> None:
        """Every retry_s while failing, try `probe` (a small real write): when nothing else
        writes (no file being sent), this is what notices that the disk has room again."""
        while True:
            await asyncio.sleep(self.retry_s)
            if self.problem is None:
                continue
            try:
                probe()
            except StateWriteErrors:
                continue
            self.succeeded()
