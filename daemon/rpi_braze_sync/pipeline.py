"""One export file from its first row to done, and the queue that runs files in order.

The async shell around the pure core: reading and mapping run in a worker thread, a chunk at
a time, so the event loop that sends never waits on per-row work. Each file's progress is
checkpointed as the contiguous prefix of settled rows, after its rejects are on disk.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import orjson

from .batching import Item, Progress
from .config import Channel, LoadedConfig
from .delivery import Sender
from .errors import ExportFileError, FileChangedError
from .journal import DONE, FAILED, VANISHED, FileRecord, Journal
from .logs import export_logger
from .mapping import Drop, HeaderError, Rejection, RowMapper
from .metrics import Metrics
from .reader import ExportReader, Record, inspect_file
from .rejects import RejectsWriter
from .watchrules import ExportPath

log = logging.getLogger(__name__)
CHUNK_ROWS = 2000
ExportOf = Callable[[str], ExportPath | None]


@dataclass
class _Chunk:
    items: list[Item]
    rejected: list[tuple[Record, str]]
    drops: list[Drop]
    at_end: bool


class FileJob:
    """Sends one export file; settles every record exactly once (sent or rejected)."""

    def __init__(
        self,
        record: FileRecord,
        export: ExportPath,
        channel: Channel,
        config: LoadedConfig,
        journal: Journal,
        sender: Sender,
        metrics: Metrics,
        checkpoint_interval_s: float = 1.0,
    ) -> None:
        self.record = record
        self.source = record.rel_path
        self.path = config.base_output_directory / record.rel_path
        self.export = export
        self.channel = channel
        self.journal = journal
        self.sender = sender
        self.metrics = metrics
        self.rejects_root = config.state_directory / "rejects"
        self.checkpoint_interval_s = checkpoint_interval_s
        self.log = export_logger(log, export.values)
        self.progress = Progress(record.checkpoint)
        self.sent = record.rows_sent
        self.rejected = record.rows_rejected
        self.dropped = record.fields_dropped
        self._outstanding = 0
        self._settled = asyncio.Event()
        self._rejects: RejectsWriter | None = None
        self._rows_label = metrics.rows.labels(channel.name, "sent")
        self._rejected_label = metrics.rows.labels(channel.name, "rejected")

    # --- settlement (called by the sender) -----------------------------------------------

    def settle_sent(self, item: Item) -> None:
        self.sent += 1
        self._rows_label.inc()
        self._settle(item.index)

    def settle_rejected(self, item: Item, reason: str) -> None:
        self._write_reject(item.line_no, item.cells, reason)
        self._settle(item.index)

    def _settle(self, index: int) -> None:
        self.progress.settle(index)
        self._outstanding -= 1
        self.metrics.backlog_rows.dec()
        if self._outstanding == 0:
            self._settled.set()

    def _write_reject(self, line_no: int, cells: list[str], reason: str) -> None:
        assert self._rejects is not None
        self._rejects.reject(line_no, cells, reason)
        self.rejected += 1
        self._rejected_label.inc()

    # --- the run -------------------------------------------------------------------------

    async def run(self) -> str:
        """Send the file; returns its final state (done, failed or vanished)."""
        fmt = self.channel.settings.format
        try:
            inspection = await asyncio.to_thread(inspect_file, self.path, fmt)
        except FileNotFoundError:
            return self._finish(VANISHED, "the file vanished before it was read")
        except FileChangedError as exc:
            return self._finish(FAILED, str(exc))
        except ExportFileError as exc:
            return self._finish(FAILED, str(exc))
        if inspection.used_fallback:
            self.log.warning("not valid %s: read as %s", fmt.encoding, fmt.fallback_encoding)
        self.journal.start(self.record.id, inspection.sha256, inspection.size, inspection.mtime_ns)
        try:
            reader = await asyncio.to_thread(
                ExportReader, self.path, inspection, fmt, self.progress.checkpoint
            )
        except FileNotFoundError:
            return self._finish(VANISHED, "the file vanished before it was read")
        except ExportFileError as exc:
            return self._finish(FAILED, str(exc))
        try:
            try:
                mapper = self.channel.mapping.bind(reader.header, self.export.values)
                stated = reader.stated_count(fmt.record_count) if fmt.record_count else None
            except HeaderError as exc:
                return self._finish(FAILED, f"header: {exc}; nothing was sent")
            except ExportFileError as exc:
                return self._finish(FAILED, f"{exc}; nothing was sent")
            for warning in mapper.warnings:
                self.log.warning("%s", warning)
            resumed = (
                f" from row {self.progress.checkpoint + 1}" if self.progress.checkpoint else ""
            )
            self.log.info("sending%s (%s mode)", resumed, self.channel.settings.mode)
            self._rejects = RejectsWriter(
                self.rejects_root, self.source, reader.header, fresh=not self.progress.checkpoint
            )
            return await self._send_all(reader, mapper, stated)
        finally:
            reader.close()
            if self._rejects is not None:
                self._rejects.close()

    async def _send_all(self, reader: ExportReader, mapper: RowMapper, stated: int | None) -> str:
        checkpointer = asyncio.create_task(self._checkpoint_every())
        try:
            while True:
                await self.sender.wait_room()
                chunk = await asyncio.to_thread(self._read_chunk, reader, mapper)
                self._take(chunk)
                if chunk.at_end:
                    break
            await asyncio.to_thread(reader.check_unchanged)
            await self._wait_settled()
            if stated is not None and stated != reader.records_read:
                return self._finish(
                    FAILED,
                    f"the file states {stated} records but holds {reader.records_read}: "
                    f"truncated or padded? {self.sent} rows were sent, {self.rejected} rejected",
                )
        except (FileChangedError, ExportFileError) as exc:
            # Stop reading; what is in flight still settles, what is queued stays unsent.
            unsent = self.sender.drop_job(self)
            self._outstanding -= len(unsent)
            self.metrics.backlog_rows.dec(len(unsent))
            await self._wait_settled()
            vanished = not self.path.exists()
            reason = (
                f"{exc}; {self.sent} rows were sent,"
                f" rows from {self.progress.checkpoint + 1} on were not"
            )
            return self._finish(VANISHED if vanished else FAILED, reason)
        finally:
            checkpointer.cancel()
            self.write_checkpoint()
        counts = f"{self.sent} sent, {self.rejected} rejected, {self.dropped} fields dropped"
        self.log.info("done: %s", counts)
        return self._finish(DONE)

    def _read_chunk(self, reader: ExportReader, mapper: RowMapper) -> _Chunk:
        """Worker thread: read, map and serialise a chunk of rows (no shared state touched)."""
        records = reader.take(CHUNK_ROWS)
        items: list[Item] = []
        rejected: list[tuple[Record, str]] = []
        drops: list[Drop] = []
        dumps = orjson.dumps
        for record in records:
            result = mapper.map_row(record.cells, record.line_no)
            if isinstance(result, Rejection):
                rejected.append((record, result.reason))
                continue
            if result.drops:
                drops.extend(result.drops)
            items.append(
                Item(
                    self,
                    record.index,
                    record.line_no,
                    result.user,
                    dumps(result.attributes),
                    record.cells,
                )
            )
        return _Chunk(items, rejected, drops, at_end=len(records) < CHUNK_ROWS)

    def _take(self, chunk: _Chunk) -> None:
        assert self._rejects is not None
        for drop in chunk.drops:
            self._rejects.drop(drop)
        if chunk.drops:
            self.dropped += len(chunk.drops)
            self.metrics.fields_dropped.labels(self.channel.name).inc(len(chunk.drops))
        self._outstanding += len(chunk.rejected) + len(chunk.items)
        self.metrics.backlog_rows.inc(len(chunk.rejected) + len(chunk.items))
        if self._outstanding:
            self._settled.clear()
        for record, reason in chunk.rejected:
            self._write_reject(record.line_no, record.cells, reason)
            self._settle(record.index)
        for item in chunk.items:
            self.sender.submit(item)

    async def _wait_settled(self) -> None:
        if self._outstanding:
            self._settled.clear()
            await self._settled.wait()

    async def _checkpoint_every(self) -> None:
        while True:
            await asyncio.sleep(self.checkpoint_interval_s)
            self.write_checkpoint()

    def write_checkpoint(self) -> None:
        """Rejects first, then the journal: a checkpoint never covers a reject not on disk."""
        if self._rejects is not None:
            self._rejects.flush()
        self.journal.checkpoint(
            self.record.id, self.progress.checkpoint, self.sent, self.rejected, self.dropped
        )

    def suspend(self) -> None:
        """Shutdown, after requests in flight settled: record how far the file got."""
        self.write_checkpoint()
        if self._rejects is not None:
            self._rejects.close()

    def _finish(self, state: str, reason: str | None = None) -> str:
        if state != DONE:
            self.log.error("%s: %s", state, reason)
        self.journal.finish(self.record.id, state, reason)
        self.metrics.files.labels(self.channel.name, state).inc()
        finish = getattr(self.sender.transport, "finish", None)
        if finish is not None:
            finish(self.source)
        return state


class FileQueue:
    """Runs complete files one after another, in the order they became complete.

    An append file waits a moment after the last upsert file: Braze applies updates
    asynchronously and silently ignores an update-only row for a user it does not have yet.
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
        self._queue: asyncio.Queue[FileRecord] = asyncio.Queue()
        self.active: FileJob | None = None
        self._last_upsert_done = 0.0

    def put(self, record: FileRecord) -> None:
        self._queue.put_nowait(record)
        self.metrics.backlog_files.set(self._queue.qsize())

    def waiting(self) -> int:
        return self._queue.qsize()

    async def run(self) -> None:
        while True:
            record = await self._queue.get()
            self.metrics.backlog_files.set(self._queue.qsize())
            export = self._export_of(record.rel_path)
            channel = self.config.channels.get(export.channel) if export else None
            if export is None or channel is None:
                self.journal.finish(record.id, FAILED, "its channel is no longer configured")
                continue
            if channel.settings.mode == "append":
                pause = self.config.settings.braze.append_delay_seconds
                wait = self._last_upsert_done + pause - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
            job = FileJob(
                record, export, channel, self.config, self.journal, self.sender, self.metrics
            )
            self.active = job  # stays set if cancelled: shutdown checkpoints it after draining
            await job.run()
            self.active = None
            if channel.settings.mode == "upsert":
                self._last_upsert_done = time.monotonic()
