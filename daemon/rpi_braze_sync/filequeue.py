"""The queue of complete files: one after another, in the order fileorder.py decides.

Owns the waiting (an append file held back by an upsert, or by the delay after one, says so
once in the log) and the retry of a file whose share dropped; each file itself is a FileJob
(pipeline.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from .config import LoadedConfig
from .delivery import Sender
from .fileorder import UPSERT, FileInfo, Run, Wait, choose_next
from .journal import FAILED, SEEN, SENDING, FileRecord, Journal
from .logs import export_logger
from .metrics import Metrics
from .pipeline import SHARE_WAIT_S, WAIT_FOR_SHARE, ExportOf, FileJob
from .sources import MappingProcess

log = logging.getLogger(__name__)
# While a file waits for an upsert, the journal is looked at again this often: the upsert
# may vanish or fail, which puts nothing in the queue.
RECHECK_S = 1.0


class FileQueue:
    """Runs complete files one after another, each as soon as the order rules allow.

    A file whose share dropped keeps its place and is tried again from its checkpoint.
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
        self._queue: dict[int, FileRecord] = {}
        self._queued_ids: set[int] = set()
        self._added = asyncio.Event()
        self.active: FileJob | None = None
        self.share_wait_s = SHARE_WAIT_S
        self.mapping_process: MappingProcess | None = None
        self._told: set[tuple[int, int | None]] = set()  # (append, its obstacle) logged once

    def put(self, record: FileRecord) -> None:
        if record.id in self._queued_ids:
            return
        self._queued_ids.add(record.id)
        self._queue[record.id] = record
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
            decision = self._decide()
            if decision is None:
                self._added.clear()
                await self._added.wait()
                continue
            if isinstance(decision, Wait):
                self._tell(decision)
                await self._pause(decision.until)
                continue
            file_id = decision.file.id
            state = await self._run_one(self._queue[file_id])
            if state == WAIT_FOR_SHARE:
                await asyncio.sleep(self.share_wait_s)  # then again, from its checkpoint
                self._queue[file_id] = self.journal.get(file_id)
                continue
            del self._queue[file_id]
            self.metrics.backlog_files.set(len(self._queue))

    # --- order -----------------------------------------------------------------------------

    def _mode(self, channel: str | None) -> str:
        configured = self.config.channels.get(channel or "")
        # A file of a channel no longer configured goes (and fails at once): not held back.
        return configured.settings.mode if configured else UPSERT

    def _info(self, record: FileRecord) -> FileInfo:
        return FileInfo(
            record.id,
            record.rel_path,
            self._mode(record.channel),
            record.first_seen_at,
            record.completed_at if record.completed_at is not None else record.first_seen_at,
            record.mtime_ns,
        )

    def _decide(self) -> Run | Wait | None:
        if not self._queue:
            return None
        upsert_channels = [n for n, c in self.config.channels.items() if c.settings.mode == UPSERT]
        return choose_next(
            [self._info(record) for record in self._queue.values()],
            [self._info(record) for record in self.journal.unfinished(upsert_channels)],
            self.journal.last_sent_at(upsert_channels),
            self.config.settings.braze.append_delay_seconds,
            time.time(),
        )

    async def _pause(self, until: float | None) -> None:
        timeout = RECHECK_S if until is None else min(RECHECK_S, max(0.0, until - time.time()))
        self._added.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._added.wait(), timeout)

    def _tell(self, wait: Wait) -> None:
        """Say once per append file and obstacle why it is not sent yet."""
        for append, upsert in wait.held:
            key = (append.id, upsert.id if upsert else None)
            if key in self._told:
                continue
            self._told.add(key)
            export = self._export_of(append.rel_path)
            logger = export_logger(log, export.values) if export else log
            if upsert is None:
                assert wait.until is not None
                logger.info(
                    "append file waits %.1f s after the last upsert file sent "
                    "(braze.append_delay_seconds): Braze may take a moment to create its users",
                    max(0.0, wait.until - time.time()),
                )
                continue
            record = self.journal.get(upsert.id)
            doing = {SEEN: "still being written", SENDING: "being sent"}.get(record.state, "queued")
            logger.info(
                "append file waits for the upsert file %s (%s), seen no later than it: Braze "
                "ignores update-only rows for users it does not have yet",
                upsert.rel_path,
                doing,
            )

    # --- one file ----------------------------------------------------------------------------

    async def _run_one(self, record: FileRecord) -> str:
        export = self._export_of(record.rel_path)
        channel = self.config.channels.get(export.channel) if export else None
        if export is None or channel is None:
            self.journal.finish(record.id, FAILED, "its channel is no longer configured")
            return FAILED
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
        return state
