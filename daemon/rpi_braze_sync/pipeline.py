"""One export file from its first row to done (filequeue.py runs the files in order).

The async shell around the pure core: reading and mapping run in a worker thread, a chunk at
a time, so the event loop that sends never waits on per-row work. Each file's progress is
checkpointed as the contiguous prefix of settled rows, after its rejects are on disk.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import orjson

from . import mapping_version
from .afterdone import after_done
from .backlog import Backlog
from .batching import Item
from .chunks import ChunkData, ChunkSource, FileRequest
from .concurrency import Slot
from .config import Channel
from .errors import (
    ExportFileError,
    FileVanishedError,
    HeaderError,
    RequestFailedError,
    ShareUnavailableError,
    WorkspaceChangedError,
)
from .fileidentity import VersionAction
from .fileprogress import FileProgress
from .filestates import FileState
from .fileversions import settle_version
from .inspection import FileInspection, inspect_file, share_available
from .journal import FileRecord
from .logs import export_logger, log_if_failed
from .sending import FileJobContext
from .settlement import Settlement
from .watchrules import ExportPath

if TYPE_CHECKING:
    from .deltafile import DeltaFile  # (imported only when a channel uses delta)

log = logging.getLogger(__name__)
# Not a journal state: the file stays 'sending' and is tried again (filequeue.py counts the
# tries while the share itself is available); FileJob.retry_reason says why.
WAIT_FOR_SHARE = "wait_for_share"
# Not a journal state either: read the file again from its checkpoint at once, not counted as
# a failed try (a reload named another Braze workspace while rows were decided ahead).
READ_AGAIN = "read_again"
# What stops sending a file to try it again from its checkpoint (WAIT_FOR_SHARE).
_TRY_AGAIN = (ShareUnavailableError, RequestFailedError, WorkspaceChangedError)
SHARE_WAIT_S = 5.0


ExportOf = Callable[[str], ExportPath | None]


class FileJob:
    """Sends one export file; settles every record exactly once (sent or rejected)."""

    def __init__(
        self, record: FileRecord, export: ExportPath, channel: Channel, sending: FileJobContext
    ) -> None:
        config, metrics, delta = sending.config, sending.metrics, sending.delta
        self.record = record
        self.open_chunks = sending.open_chunks
        self.source = record.rel_path
        self.base = config.base_output_directory
        self.path = self.base / record.rel_path
        self.archive_root = Path(config.settings.watch.archive_directory or self.base / ".archive")
        self.export = export
        self.channel = channel
        self.journal = sending.journal
        self.writer = sending.writer
        self.sender = sending.sender
        self.metrics = metrics
        self.state_directory = config.state_directory
        self.checkpoint_interval_s = sending.checkpoint_interval_s
        self.progress_interval_s = config.settings.logging.progress_seconds
        self.retry_reason = ""  # why run() returned WAIT_FOR_SHARE
        self.log = export_logger(log, export.values)
        self.settlement = Settlement(
            record, sending.journal, sending.writer, sending.state_writes, metrics, channel.name
        )
        self.report = FileProgress(self.source, self.log, lambda: self.settlement.settled_rows)
        self.backlog = Backlog(metrics.backlog_rows)  # rows taken: not settled, bytes held
        self._broken: str | None = None  # why a request's rows will never settle (fail)
        self.delta: DeltaFile | None = None  # send only what changed (deltarun.py)
        if delta is not None and config.settings.delta_for(channel.name):
            from .deltafile import DeltaFile

            so_far = (record.points_sent or 0, record.points_skipped or 0)  # before a restart
            self.delta = DeltaFile(delta, channel.name, channel.settings.mode, so_far)
            self.settlement.points = self.delta.points

    def status_text(self) -> str:
        return self.report.status_text()

    # --- settlement (called by the sender) -----------------------------------------------

    def settle_sent(self, items: list[Item], slot: Slot) -> None:
        written = self.delta.acknowledged(items) if self.delta is not None and items else None
        if written is not None:
            from .deltawrites import Remembered  # (delta's: imported only when it is used)

            # Settled (and so checkpointed) only once the store holds their values, synced:
            # killed after a checkpoint that covered them with the store's old values, a
            # later row going back to those old values would be skipped while Braze holds the
            # new ones. Their request keeps its place until then, unless the store holds
            # them already and a kill would not send them again (deltawrites.Remembered).
            if isinstance(written, Remembered):
                written.give_back_if_stored(slot)
            written.add_done_callback(lambda _: self._sent_once_stored(items, slot))
            return
        self._sent(items, slot)

    def _sent_once_stored(self, items: list[Item], slot: Slot) -> None:
        """(A done-callback, on the loop, outside the sender's request task: a bug here would
        reach only asyncio's handler, and the file would wait for ever for these rows.)"""
        try:
            self._sent(items, slot)
        except Exception as exc:
            self.log.error("settling rows the delta store holds failed: %r", exc, exc_info=exc)
            slot.release()
            self.fail(exc, items)

    def _sent(self, items: list[Item], slot: Slot) -> None:
        indexes = [item.index for item in items]
        self.settlement.sent_rows(indexes, slot)
        self.backlog.remove(len(indexes))

    def settle_rejected(self, item: Item, reason: str) -> None:
        if self.delta is not None:
            self.delta.abandoned([item])
        self.settlement.reject(item.line_no, item.cells, reason)
        self.settlement.settle([item.index])
        self.backlog.remove(1)

    def fail(self, exc: Exception, items: list[Item]) -> None:
        """(A bug, logged by the caller.) Those of `items` not settled never will be: the
        file stops reading, waits for its other requests and is tried again (its checkpoint)."""
        self._broken = f"a request failed while being sent or settled ({exc!r}; see the log)"
        self.backlog.remove(len(self.settlement.progress.unsettled([i.index for i in items])))

    # --- the run -------------------------------------------------------------------------

    async def run(self) -> str:
        """Send the file; returns its final state (done, failed, vanished), or WAIT_FOR_SHARE
        when the share dropped: the file keeps its checkpoint and is tried again (READ_AGAIN:
        at once)."""
        fmt = self.channel.settings.format
        try:
            inspection = await asyncio.to_thread(inspect_file, self.path, fmt, self.base)
        except FileNotFoundError:
            if not await asyncio.to_thread(share_available, self.base):
                self.retry_reason = "the export folder is not available"
                return WAIT_FOR_SHARE
            return await self._finish(FileState.VANISHED, "the file vanished before it was read")
        except OSError as exc:
            self.retry_reason = f"cannot read the file: {exc.strerror or exc}"
            return WAIT_FOR_SHARE
        except ExportFileError as exc:
            return await self._finish(FileState.FAILED, str(exc))
        if inspection.used_fallback:
            self.log.warning("not valid %s: read as %s", fmt.encoding, fmt.fallback_encoding)
        settled = await self._settle_identity(inspection)
        if settled is not None:
            return settled
        i = inspection
        self.settlement.rows_total = i.records
        progress = self.settlement.progress
        start = (self.record.id, i.sha256, i.size, i.mtime_ns, i.records)
        await self.writer.write(lambda: self.journal.start(*start))
        request = FileRequest(
            self.path, self.base, inspection, self.channel.plan, self._path_values(),
            progress.checkpoint, tuple(progress.ahead),  # settled before a restart: skipped
            delta=self.delta is not None,  # summarise each row for delta in the mapping
            version=mapping_version(),
        )  # fmt: skip
        try:
            source: ChunkSource = await self.open_chunks(request)
        except FileNotFoundError:
            return await self._finish(FileState.VANISHED, "the file vanished before it was read")
        except HeaderError as exc:
            return await self._finish(FileState.FAILED, f"header: {exc}; nothing was sent")
        except ExportFileError as exc:
            return await self._finish(FileState.FAILED, str(exc))
        except (OSError, ShareUnavailableError) as exc:
            self.retry_reason = str(exc.strerror if isinstance(exc, OSError) else exc)
            return WAIT_FOR_SHARE
        try:
            for warning in source.warnings:
                self.log.warning("%s", warning)
            self.report.starting(i.records, progress, self.channel.settings.mode)
            rejects_root = self.state_directory / "rejects"
            self.settlement.open_rejects(rejects_root, self.source, source.header)
            state = await self._send_all(source)
        finally:
            await source.close()
            await self.settlement.close()
        if state == FileState.DONE:
            where = (self.base, self.source, i.identity, self.archive_root, self.state_directory)
            await after_done(self.channel.settings.after_done, *where, self.log)
        return state

    def _path_values(self) -> dict[str, str]:
        """The path's parts, and what RPI's post-execution call said about this file."""
        call = orjson.loads(self.record.rpi_call) if self.record.rpi_call else None
        values, warnings = self.export.sendable_values(
            self.channel.settings.format.fallback_encoding,
            self.channel.plan.mapping.paths_used(),
            str(call.get("channelExecutionID", "")) if call is not None else None,
        )
        for warning in warnings:
            self.log.warning("%s", warning)
        return values

    async def _settle_identity(self, inspection: FileInspection) -> str | None:
        """Compare this version with what was sent before under the same path (the rule is
        fileidentity.py's); returns a final state when nothing is to be sent."""
        where = (self.journal, self.path, self.base, self.log)
        decision = await settle_version(self.record, inspection, *where)
        if decision.action == VersionAction.AS_RECORDED:
            return None
        assert decision.earlier is not None
        if decision.action == VersionAction.SKIP:
            why = f"same content as record {decision.earlier.id}; not sent again"
            return await self._finish(FileState.DONE, why)
        restart = (self.record.id, decision.start, decision.ahead)
        await self.writer.write(lambda: self.journal.restart_from(*restart))
        self.settlement.restart_from(decision.start, decision.ahead)
        if self.delta is not None:
            self.delta.points_sent = self.delta.points_skipped = 0
        return None

    async def _send_all(self, source: ChunkSource) -> str:
        settlement = self.settlement
        self.report.start(settlement.rows_total)
        checkpointer = asyncio.create_task(settlement.checkpoint_every(self.checkpoint_interval_s))
        reporter = asyncio.create_task(self.report.report_every(self.progress_interval_s))
        for helper in (checkpointer, reporter):
            helper.add_done_callback(log_if_failed(self.log))
        records_read = 0
        stopping = False
        outcome: tuple[FileState, str | None] | None = (FileState.DONE, None)  # None: share
        again = False  # outcome None: READ_AGAIN rather than WAIT_FOR_SHARE
        ahead: ChunkData | None = None  # (delta) read, its lookup started
        try:
            while True:
                await self.sender.wait_room()
                await self.backlog.until_room(self._checkpoint, self._is_broken)
                if self._broken is not None:
                    raise RequestFailedError(self._broken)
                skip = self.delta.skip if self.delta is not None else None  # (prefilter)
                chunk = await source.next_chunk(skip) if ahead is None else ahead
                ahead = None
                unchanged = await self.delta.filter(chunk) if self.delta is not None else []
                held = self.delta.held_bytes if self.delta is not None else None
                self.backlog.take(chunk, unchanged, self.settlement, held)
                self.sender.submit(chunk.items_for(self))
                records_read = chunk.records_read
                if chunk.at_end:
                    break
                if self.delta is not None:  # its lookup runs while this chunk's rows are sent
                    ahead = await source.next_chunk(self.delta.skip)
                    self.delta.look_up(ahead)
            await self.backlog.until_settled()
            if self._broken is not None:
                raise RequestFailedError(self._broken)
            stated = source.stated
            if stated is not None and stated != records_read:
                outcome = (
                    FileState.FAILED,
                    f"the file states {stated} records but holds {records_read}: "
                    f"truncated or padded? {settlement.sent} rows were sent,"
                    f" {settlement.rejected} rejected",
                )
        except (ExportFileError, *_TRY_AGAIN) as exc:
            # Stop reading; what is in flight still settles, what is queued stays unsent.
            unsent = self.sender.drop_job(self)
            if self.delta is not None:
                self.delta.abandoned(unsent)
            self.backlog.remove(len(unsent))
            await self.backlog.until_settled()
            if isinstance(exc, _TRY_AGAIN):
                self.retry_reason, outcome = f"{exc}; {settlement.sent} rows sent so far", None
                again = isinstance(exc, WorkspaceChangedError)
            else:
                outcome = (
                    FileState.VANISHED if isinstance(exc, FileVanishedError) else FileState.FAILED,
                    f"{exc} while being sent; {settlement.sent} rows were sent,"
                    f" {settlement.rejected} rejected,"
                    f" rows from {settlement.progress.checkpoint + 1} on were not sent",
                )
        except asyncio.CancelledError:
            stopping = True  # requests in flight may still be answered: see suspend()
            raise
        finally:
            checkpointer.cancel()
            reporter.cancel()
            if self.delta is not None and not stopping:
                self.delta.close()
            settlement.write_checkpoint()
        # The final state after the last checkpoint and its rejects (statewriter.py, point 4).
        await settlement.until_written()
        if outcome is None:
            return READ_AGAIN if again else WAIT_FOR_SHARE
        if outcome[0] == FileState.DONE:
            await settlement.until_rejects_complete()
            counts = settlement.counts()
            if self.delta is not None:
                counts += self.delta.summary()
            self.log.info("done: %s: %s", self.report.summary(), counts)
        return await self._finish(*outcome)

    def _checkpoint(self) -> int:
        return self.settlement.progress.checkpoint

    def _is_broken(self) -> bool:
        return self._broken is not None

    async def suspend(self) -> None:
        """Shutdown, after requests in flight settled: record how far the file got. Delta's
        rows are closed only now, not when sending stopped: a request answered while the
        sender drained must have its values remembered before the checkpoint covers its rows
        (else the store keeps older values, and a later row going back to them is skipped
        while Braze holds the new ones). What is still unanswered never will be: not settled,
        sent again after the restart."""
        if self.delta is not None:
            self.delta.close()
        await self.settlement.write_last()  # (once: a full disk does not hold the shutdown)
        await self.settlement.close()

    async def _finish(self, state: FileState, reason: str | None = None) -> FileState:
        self.metrics.current_file_progress.set(0)
        if state != FileState.DONE:
            self.log.error("%s: %s", state, reason)
        await self.writer.write(lambda: self.journal.finish(self.record.id, state, reason))
        if self.delta is not None:
            self.delta.finished(self.record.id, self.record.rel_path, self.channel.name)
        self.metrics.files.labels(self.channel.name, state).inc()
        self.sender.transport.finish(self.source)
        return state
