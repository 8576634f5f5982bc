"""/readyz's verdict: what stops the daemon from doing its job now, one sentence a problem.
It reads the components' public state; it changes nothing.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from .delivery import Sender
from .filequeue import FileQueue
from .statewrites import StateWrites
from .watch import Watcher

UNREACHABLE_AFTER_S = 60.0  # retries through shorter blips stay "ready"
# Files queued and none moving (no row settled, no file finished) for this long while Braze
# answers: the queue is stuck (a file that never ends), not waiting for Braze.
STALLED_AFTER_S = 300.0


class PairView(Protocol):
    """An active/standby pair's own verdict and role (pair.PairState)."""

    def problems(self) -> list[str]: ...

    def role_line(self) -> str: ...

    def role(self) -> str:
        """leader or standby (the status page's word)."""
        ...


@dataclass
class Readiness:
    """The parts /readyz looks at; None until the daemon has opened them."""

    base_output_directory: Path
    state_writes: StateWrites
    journal_open: bool = False
    watcher: Watcher | None = None
    sender: Sender | None = None
    queue: FileQueue | None = None
    pair: PairView | None = None  # journal.url: the database and the lease
    delta_writes: StateWrites | None = None  # delta's store (deltarun.DeltaRun.writes)

    def problems(self) -> list[str]:
        problems = []
        if self.pair is not None:
            problems += self.pair.problems()
            if self.sender is None:  # a standby watches nothing: ready while it can lead
                return problems
        if not self.journal_open:
            problems.append("the journal is not open")
        watcher, sender, queue = self.watcher, self.sender, self.queue
        if watcher is None or not watcher.running:
            problems.append("the watcher is not running")
        elif not watcher.initialized:
            # Before the first scan, a file dropped now could be taken for history.
            problems.append("the first scan of the export folder has not completed")
        if sender is not None and sender.auth_failing:
            problems.append(f"Braze refuses the API key or URL ({sender.auth_message})")
        if sender is not None and sender.failing_for_s() > UNREACHABLE_AFTER_S:
            problems.append(
                f"Braze has not answered well for {sender.failing_for_s():.0f} s (retrying)"
            )
        for writes in (self.state_writes, self.delta_writes):
            if writes is not None and writes.problem is not None:
                problems.append(f"{writes.problem}: sending is paused")
        if queue is not None and sender is not None and not sender.auth_failing:
            stalled_s = queue.stalled_for_s(time.monotonic())
            if stalled_s > STALLED_AFTER_S and sender.failing_for_s() < UNREACHABLE_AFTER_S:
                age_s = queue.oldest_unfinished_age_s(time.time())
                problems.append(
                    f"no queued file has moved for {stalled_s:.0f} s while Braze answers"
                    f" (the oldest unfinished file is {age_s:.0f} s old); see the log and"
                    " `rpi-braze-sync status`"
                )
        if watcher is not None and not watcher.share_available:
            problems.append(f"the export folder {self.base_output_directory} is not available")
        return problems
