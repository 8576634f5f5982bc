"""The queue of complete files: one after another, in the order fileorder.py decides.

Owns the waiting (an append file held back by an upsert, or by the delay after one, says so
once in the log), the retry of a file whose share dropped, and the bounded tries of a file
that cannot be read or sent while the share is there (parked as failed after
watch.file_attempts, the others going meanwhile); each file itself is a FileJob (pipeline.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import replace

from .config import LoadedConfig
from .fileorder import UPSERT, FileInfo, Start, Wait, choose_next
from .filestates import FileState
from .inspection import share_available
from .journal import FileRecord
from .logs import ExportLogger, display_name, export_logger
from .pipeline import READ_AGAIN, SHARE_WAIT_S, WAIT_FOR_SHARE, ExportOf, FileJob
from .ratelimit import file_retry_s
from .sending import FileJobContext
from .statewrites import StateWriteErrors

log = logging.getLogger(__name__)
# While a file waits for an upsert, the journal is looked at again this often: the upsert
# may vanish or fail, which puts nothing in the queue.
RECHECK_S = 1.0


class FileQueue:
    """Runs complete files one after another, each as soon as the order rules allow.

    A file whose share dropped keeps its place and is tried again from its checkpoint.
    """

    def __init__(self, sending: FileJobContext, export_of: ExportOf) -> None:
        self.sending = sending
        self.journal = sending.journal
        self.metrics = sending.metrics
        self._export_of = export_of
        self._queue: dict[int, FileRecord] = {}
        self._queued_ids: set[int] = set()
        self._added = asyncio.Event()
        self.active: FileJob | None = None
        self.share_wait_s = SHARE_WAIT_S
        self._told: set[tuple[int, int | None]] = set()  # (append, its obstacle) logged once
        self._failed_tries: dict[int, int] = {}  # file id -> tries that failed in a row
        self._not_before: dict[int, float] = {}  # file id -> monotonic time of its next try
        self._moves = 0  # files that left the queue: any change means the queue moves
        self._held_by_rule = False  # the last decision was to wait (order rules, not a stall)
        self._moved_at = time.monotonic()
        self._last_seen_move: tuple[int, int | None, int] = (0, None, 0)
        self.state_writes = sending.state_writes

    @property
    def config(self) -> LoadedConfig:
        return self.sending.config

    def apply(self, config: LoadedConfig) -> None:
        """A reloaded configuration: files that start from now on use it."""
        self.sending = replace(self.sending, config=config)

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
        """Pick up files queued by another process (`rpi-braze-sync retry`); keep the age of
        the oldest unfinished file up to date."""
        while True:
            await asyncio.sleep(interval_s)
            self.refresh_from_journal()

    def refresh_from_journal(self) -> None:
        for record in self.journal.queued():
            self.put(record)
        self.metrics.oldest_unfinished_age.set(self.oldest_unfinished_age_s(time.time()))

    async def run(self) -> None:
        while True:
            decision = self._decide()
            self._held_by_rule = isinstance(decision, Wait)
            if decision is None:
                await self._pause(None, self._next_try_in())
                continue
            if isinstance(decision, Wait):
                self._tell(decision)
                await self._pause(decision.until)
                continue
            file_id = decision.file.id
            record = self._queue[file_id]
            try:
                state, reason = await self._run_one(record)
            except StateWriteErrors as exc:
                # The journal refused a write the file could not go on without (its start,
                # its end): the file is tried again, from its checkpoint, once it can.
                self.active = None
                self.state_writes.failed("the journal", exc)
                await asyncio.sleep(self.state_writes.retry_s)
                self._queue[file_id] = self.journal.get(file_id)
                continue
            if state == READ_AGAIN:  # at once, from its checkpoint: not a failed try
                self._logger(record).warning("read again from its checkpoint: %s", reason)
                self._queue[file_id] = self.journal.get(file_id)
                continue
            if state == WAIT_FOR_SHARE:
                base = self.config.base_output_directory
                if not await asyncio.to_thread(share_available, base):
                    await asyncio.sleep(self.share_wait_s)  # then again, from its checkpoint
                    self._queue[file_id] = self.journal.get(file_id)
                    continue
                if not await self._failed_try(record, reason):
                    self._queue[file_id] = self.journal.get(file_id)
                    continue
            self._remove(file_id)

    def _remove(self, file_id: int) -> None:
        del self._queue[file_id]
        self._failed_tries.pop(file_id, None)
        self._not_before.pop(file_id, None)
        self._moves += 1
        self.metrics.backlog_files.set(len(self._queue))

    # --- tries ---------------------------------------------------------------------------------

    def _next_try_in(self) -> float | None:
        """Seconds until a file waiting between tries may go again; None when none waits."""
        waits = [self._not_before[i] for i in self._queue if i in self._not_before]
        return max(0.0, min(waits) - time.monotonic()) if waits else None

    def _logger(self, record: FileRecord) -> logging.Logger | ExportLogger:
        """Log lines about the file, with its export's values (channel, offer, workflow)."""
        export = self._export_of(record.rel_path)
        return export_logger(log, export.values) if export else log

    async def _failed_try(self, record: FileRecord, reason: str) -> bool:
        """A try that failed while the share is there: wait (doubling) and let the others go,
        or, after watch.file_attempts, park the file as failed. True when parked."""
        watch = self.config.settings.watch
        tries = self._failed_tries[record.id] = self._failed_tries.get(record.id, 0) + 1
        logger = self._logger(record)
        if tries >= watch.file_attempts:
            why = (
                f"{reason}; gave up after {tries} tries (watch.file_attempts):"
                " `rpi-braze-sync retry` sends it again"
            )
            logger.error("failed: %s", why)
            await self.sending.writer.write(
                lambda: self.journal.finish(record.id, FileState.FAILED, why)
            )
            self.metrics.files.labels(record.channel or "", FileState.FAILED).inc()
            return True
        wait_s = file_retry_s(tries, watch.file_retry_seconds)
        self._not_before[record.id] = time.monotonic() + wait_s
        logger.warning(
            "try %d of %d failed: %s; next try in %.0f s (other files go meanwhile)",
            tries, watch.file_attempts, reason, wait_s,
        )  # fmt: skip
        return False

    # --- health --------------------------------------------------------------------------------

    def oldest_unfinished_age_s(self, now_epoch: float) -> float:
        """Seconds since the oldest queued file became complete (0 when none is queued)."""
        since = [r.completed_at or r.first_seen_at for r in self._queue.values()]
        return max(0.0, now_epoch - min(since)) if since else 0.0

    def stalled_for_s(self, now: float) -> float:
        """Seconds the queue has held files without moving: no row of the file being sent
        settled, no file finished (0 while it is empty, or waits by the order rules)."""
        active = self.active
        mark = (
            self._moves,
            active.record.id if active else None,
            active.settlement.settled_rows if active else 0,
        )
        if not self._queue or self._held_by_rule or mark != self._last_seen_move:
            self._last_seen_move, self._moved_at = mark, now
        return now - self._moved_at

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

    def _decide(self) -> Start | Wait | None:
        """The file to run now (none between its tries), a wait, or None: nothing to run."""
        now = time.monotonic()
        ready = [r for r in self._queue.values() if self._not_before.get(r.id, 0.0) <= now]
        if not ready:
            return None
        upsert_channels = [n for n, c in self.config.channels.items() if c.settings.mode == UPSERT]
        return choose_next(
            [self._info(record) for record in ready],
            [self._info(record) for record in self.journal.unfinished(upsert_channels)],
            self.journal.last_sent_at(upsert_channels),
            self.config.settings.braze.append_delay_seconds,
            time.time(),
        )

    async def _pause(self, until: float | None, timeout_s: float | None = RECHECK_S) -> None:
        """Until a file is added, `until` (epoch) or `timeout_s`, whichever comes first."""
        timeout = timeout_s if until is None else min(RECHECK_S, max(0.0, until - time.time()))
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
            doing = {FileState.SEEN: "still being written", FileState.SENDING: "being sent"}.get(
                record.state, "queued"
            )
            logger.info(
                "append file waits for the upsert file %s (%s), seen no later than it: Braze "
                "ignores update-only rows for users it does not have yet",
                display_name(upsert.rel_path),
                doing,
            )

    # --- one file ----------------------------------------------------------------------------

    async def _run_one(self, record: FileRecord) -> tuple[str, str]:
        """The file's final state, or WAIT_FOR_SHARE or READ_AGAIN and why."""
        export = self._export_of(record.rel_path)
        channel = self.config.channels.get(export.channel) if export else None
        if export is None or channel is None:
            why = "its channel is no longer configured"
            await self.sending.writer.write(
                lambda: self.journal.finish(record.id, FileState.FAILED, why)
            )
            return FileState.FAILED, ""
        job = FileJob(record, export, channel, self.sending)
        self.active = job  # stays set if cancelled: shutdown checkpoints it after draining
        state = await job.run()
        self.active = None
        return state, job.retry_reason
