"""The queue of complete files: one after another, in the order they became complete.

Owns the order rules (an append file waits for the upserts before it) and the retry of a file
whose share dropped; each file itself is a FileJob (pipeline.py).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque

from .config import LoadedConfig
from .delivery import Sender
from .journal import DONE, FAILED, FileRecord, Journal
from .metrics import Metrics
from .pipeline import SHARE_WAIT_S, WAIT_FOR_SHARE, ExportOf, FileJob
from .sources import MappingProcess


class FileQueue:
    """Runs complete files one after another, in the order they became complete.

    An append file waits a moment after the last upsert file: Braze applies updates
    asynchronously and silently ignores an update-only row for a user it does not have yet.
    A file whose share dropped keeps its place at the head of the queue until it is back.
    """

    def __init__(
        self,
        config: LoadedConfig,
        journal: Journal,
        sender: Sender,
        metrics: Metrics,
        export_of: ExportOf,
    ) -> None:
        self.config = config
        self.journal = journal
        self.sender = sender
        self.metrics = metrics
        self._export_of = export_of
        self._queue: deque[FileRecord] = deque()
        self._queued_ids: set[int] = set()
        self._added = asyncio.Event()
        self.active: FileJob | None = None
        self._last_upsert_done = 0.0
        self.share_wait_s = SHARE_WAIT_S
        self.mapping_process: MappingProcess | None = None

    def put(self, record: FileRecord) -> None:
        if record.id in self._queued_ids:
            return
        self._queued_ids.add(record.id)
        self._queue.append(record)
        self._added.set()
        self.metrics.backlog_files.set(len(self._queue))

    def waiting(self) -> int:
        return len(self._queue)

    async def watch_journal(self, interval_s: float = 2.0) -> None:
        """Pick up files queued by another process (`rpi-braze-sync retry`)."""
        while True:
            await asyncio.sleep(interval_s)
            for record in self.journal.queued():
                self.put(record)

    async def run(self) -> None:
        while True:
            while not self._queue:
                self._added.clear()
                await self._added.wait()
            record = self._queue[0]
            state = await self._run_one(record)
            if state == WAIT_FOR_SHARE:
                await asyncio.sleep(self.share_wait_s)  # the same file, from its checkpoint
                self._queue[0] = self.journal.get(record.id)
                continue
            self._queue.popleft()
            self.metrics.backlog_files.set(len(self._queue))

    async def _run_one(self, record: FileRecord) -> str:
        export = self._export_of(record.rel_path)
        channel = self.config.channels.get(export.channel) if export else None
        if export is None or channel is None:
            self.journal.finish(record.id, FAILED, "its channel is no longer configured")
            return FAILED
        if channel.settings.mode == "append":
            pause = self.config.settings.braze.append_delay_seconds
            wait = self._last_upsert_done + pause - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
        job = FileJob(
            record,
            export,
            channel,
            self.config,
            self.journal,
            self.sender,
            self.metrics,
            self.mapping_process,
        )
        self.active = job  # stays set if cancelled: shutdown checkpoints it after draining
        state = await job.run()
        self.active = None
        if channel.settings.mode == "upsert" and state == DONE:
            self._last_upsert_done = time.monotonic()
        return state
