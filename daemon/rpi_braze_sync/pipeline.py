"""One export file from its first row to done (filequeue.py runs the files in order).

The async shell around the pure core: reading and mapping run in a worker thread, a chunk at
a time, so the event loop that sends never waits on per-row work. Each file's progress is
checkpointed as the contiguous prefix of settled rows, after its rejects are on disk.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

import orjson

from .afterdone import apply_after_done
from .batching import Item, SettledRecords
from .chunks import ChunkData, ChunkSource, Drop, FileRequest
from .config import Channel
from .deltarun import DeltaFile
from .errors import (
    ExportFileError,
    FileVanishedError,
    HeaderError,
    NotRegularFileError,
    ShareUnavailableError,
)
from .fileidentity import (
    Action,
    Seen,
    decide,
    earlier_version,
    needs_prefix_hash,
    needs_previous,
    version_of,
)
from .filestates import FileState
from .inspection import FileInspection, inspect_file, prefix_sha256, share_available
from .journal import FileRecord
from .logs import export_logger
from .progress import ProgressMeter, plural
from .rejects import RejectsWriter
from .sending import Sending
from .statewrites import StateWriteErrors
from .watchrules import ExportPath, sendable_text

log = logging.getLogger(__name__)
# Not a journal state: the file stays 'sending' and is tried again (filequeue.py counts the
# tries while the share itself is available); FileJob.retry_reason says why.
WAIT_FOR_SHARE = "wait_for_share"
SHARE_WAIT_S = 5.0
# Rows read and not yet settled hold their bodies and source rows: at most about this many
# bytes of them (the sender's own bounds count rows, and rows can be 1 MiB each).
MAX_HELD_BYTES = 64 << 20
# Benchmarks only (tests/benchmarks measure the journal's cost): no checkpoint while sending.
CHECKPOINTS = not os.environ.get("RPI_BRAZE_SYNC_BENCH_NO_CHECKPOINTS")


ExportOf = Callable[[str], ExportPath | None]


class FileJob:
    """Sends one export file; settles every record exactly once (sent or rejected)."""

    def __init__(
        self,
        record: FileRecord,
        export: ExportPath,
        channel: Channel,
        sending: Sending,
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
        self.sender = sending.sender
        self.metrics = metrics
        self.rejects_root = config.state_directory / "rejects"
        self.state_directory = config.state_directory
        self.checkpoint_interval_s = sending.checkpoint_interval_s
        self.state_writes = sending.state_writes
        self.progress_interval_s = config.settings.logging.progress_seconds
        self.meter: ProgressMeter | None = None  # from the first row sent
        self.retry_reason = ""  # why run() returned WAIT_FOR_SHARE
        self.rows_total: int | None = None
        self._started_at = 0.0  # monotonic, when run() began
        self.log = export_logger(log, export.values)
        self.progress = SettledRecords(record.checkpoint, record.ahead)
        self.sent = record.rows_sent
        self.rejected = record.rows_rejected
        self.dropped = record.fields_dropped
        self._outstanding = 0
        # Chunks taken: (index after their last row, their bytes), released once the
        # checkpoint passes them (rows settled ahead of it are still counted: a bound).
        self._held: deque[tuple[int, int]] = deque()
        self._held_bytes = 0
        self._checkpoint_due = False
        # Dropped fields of rows sent but not settled: written and counted once their row is
        # (a row sent again after a kill would otherwise list its drops twice).
        self._drops: dict[int, list[Drop]] = {}
        self._settled = asyncio.Event()
        self._rejects: RejectsWriter | None = None
        # A journal shared by a pair (pgjournal.py) also keeps every rejected row, so that the
        # rejects file holds the rows the other daemon rejected too: these are not stored yet.
        self._shared_rejects: list[tuple[int, list[str], str]] | None = (
            [] if hasattr(self.journal, "store_rejects") else None
        )
        self._rows_label = metrics.rows.labels(channel.name, "sent")
        self._rejected_label = metrics.rows.labels(channel.name, "rejected")
        self.delta: DeltaFile | None = None  # send only what changed (deltarun.py)
        if delta is not None and config.settings.delta_for(channel.name):
            self.delta = delta.for_file(channel.name, channel.settings.mode)

    # --- settlement (called by the sender) -----------------------------------------------

    def settle_sent(self, items: list[Item]) -> None:
        written = self.delta.acknowledged(items) if self.delta is not None else None
        if written is not None:
            # Settled (and so checkpointed) only once the store holds their values: killed
            # after a checkpoint that covered them with the store's old values, a later row
            # going back to those old values would be skipped while Braze holds the new ones.
            loop = asyncio.get_running_loop()
            written.add_done_callback(lambda _: loop.call_soon_threadsafe(self._sent, items))
            return
        self._sent(items)

    def _sent(self, items: list[Item]) -> None:
        self.sent += len(items)
        self._rows_label.inc(len(items))
        self._settle([item.index for item in items])

    def settle_rejected(self, item: Item, reason: str) -> None:
        if self.delta is not None:
            self.delta.abandoned([item])
        self._write_reject(item.line_no, item.cells, reason)
        self._settle([item.index])

    def _settle(self, indexes: list[int]) -> None:
        """These records are done with (one request's, or a chunk's rejects)."""
        self.progress.settle_all(indexes)
        if self._drops:
            self._write_drops([d for i in indexes for d in self._drops.pop(i, ())])
        if not self._checkpoint_due and CHECKPOINTS:
            # Checkpoint what is settled at once (once per loop turn, however many answers it
            # brought), beyond the prefix too: after a kill, only rows in flight go again.
            self._checkpoint_due = True
            asyncio.get_running_loop().call_soon(self._checkpoint_soon)
        self._outstanding -= len(indexes)
        self.metrics.backlog_rows.dec(len(indexes))
        if self._outstanding == 0:
            self._settled.set()

    def _write_drops(self, drops: list[Drop]) -> None:
        if not drops:
            return
        if self._rejects is not None:
            for drop in drops:
                self._rejects.drop(drop)
        self.dropped += len(drops)
        self.metrics.fields_dropped.labels(self.channel.name).inc(len(drops))

    def _write_reject(self, line_no: int, cells: list[str], reason: str) -> None:
        assert self._rejects is not None
        self._rejects.reject(line_no, cells, reason)
        if self._shared_rejects is not None:
            self._shared_rejects.append((line_no, cells, reason))
        self.rejected += 1
        self._rejected_label.inc()

    # --- the run -------------------------------------------------------------------------

    async def run(self) -> str:
        """Send the file; returns its final state (done, failed, vanished), or WAIT_FOR_SHARE
        when the share dropped: the file keeps its checkpoint and is tried again."""
        self._started_at = time.monotonic()
        fmt = self.channel.settings.format
        try:
            inspection = await asyncio.to_thread(inspect_file, self.path, fmt, self.base)
        except FileNotFoundError:
            if not await asyncio.to_thread(share_available, self.base):
                self.retry_reason = "the export folder is not available"
                return WAIT_FOR_SHARE
            return self._finish(FileState.VANISHED, "the file vanished before it was read")
        except OSError as exc:
            self.retry_reason = f"cannot read the file: {exc.strerror or exc}"
            return WAIT_FOR_SHARE
        except ExportFileError as exc:
            return self._finish(FileState.FAILED, str(exc))
        if inspection.used_fallback:
            self.log.warning("not valid %s: read as %s", fmt.encoding, fmt.fallback_encoding)
        settled = await self._settle_identity(inspection)
        if settled is not None:
            return settled
        i = inspection
        self.rows_total = i.records
        self.journal.start(self.record.id, i.sha256, i.size, i.mtime_ns, i.records)
        request = FileRequest(
            self.path,
            self.base,
            inspection,
            self.channel.plan,
            self._path_values(),
            self.progress.checkpoint,
            tuple(self.progress.ahead),  # settled before a restart: skipped
        )
        try:
            source: ChunkSource = await self.open_chunks(request)
        except FileNotFoundError:
            return self._finish(FileState.VANISHED, "the file vanished before it was read")
        except HeaderError as exc:
            return self._finish(FileState.FAILED, f"header: {exc}; nothing was sent")
        except ExportFileError as exc:
            return self._finish(FileState.FAILED, str(exc))
        except (OSError, ShareUnavailableError) as exc:
            self.retry_reason = str(exc.strerror if isinstance(exc, OSError) else exc)
            return WAIT_FOR_SHARE
        try:
            for warning in source.warnings:
                self.log.warning("%s", warning)
            progress = self.progress
            resumed = f" from row {progress.checkpoint + 1}" if progress.checkpoint else ""
            if progress.outstanding_ahead:
                ahead = progress.outstanding_ahead
                resumed += f", skipping the {ahead} {plural(ahead, 'row')} settled after it"
            rows = f"{self.rows_total:,} {plural(self.rows_total, 'row')}"
            self.log.info("sending %s%s (%s mode)", rows, resumed, self.channel.settings.mode)
            fresh = not progress.checkpoint and not progress.outstanding_ahead
            self._rejects = RejectsWriter(self.rejects_root, self.source, source.header, fresh)
            state = await self._send_all(source)
        finally:
            await source.close()
            if self._rejects is not None:
                self._rejects.close()
        if state == FileState.DONE:
            await self._after_done(inspection.identity)
        return state

    def _path_values(self) -> dict[str, str]:
        """The path's parts, and what RPI's post-execution call said about this file."""
        fallback = self.channel.settings.format.fallback_encoding
        values = dict(self.export.values)
        sent = self.channel.plan.mapping.paths_used()
        for key, value in values.items():
            text = sendable_text(value, fallback)
            if text is not None:  # a folder or file name that is not UTF-8
                if key in sent:  # (a part no value comes from is not worth a word)
                    self.log.warning("{%s} is not valid UTF-8: sent as '%s'", key, text)
                values[key] = text
        if self.record.rpi_call:
            call = orjson.loads(self.record.rpi_call)
            values["rpi_channel_execution_id"] = str(call.get("channelExecutionID", ""))
        return values

    async def _settle_identity(self, inspection: FileInspection) -> str | None:
        """Compare this version with what was sent before under the same path (the rule is
        fileidentity.py's); returns a final state when nothing is to be sent."""
        record = self.record
        seen = Seen(version_of(record), bool(record.retry), inspection.sha256, inspection.size)
        previous = None
        if needs_previous(seen):
            done = self.journal.previous_done(record.rel_path, record.id)
            previous = version_of(done) if done is not None else None
        earlier = earlier_version(seen, previous)
        prefix = None
        if earlier is not None and needs_prefix_hash(seen, earlier):
            prefix = await asyncio.to_thread(prefix_sha256, self.path, earlier.size, self.base)
        decision = decide(seen, earlier, prefix)
        if decision.action == Action.AS_RECORDED:
            return None
        assert decision.earlier is not None
        if decision.action == Action.SKIP:
            base = decision.earlier.id
            self.log.info(
                "same content as the version sent before (record %d): not sent again", base
            )
            return self._finish(FileState.DONE, f"same content as record {base}; not sent again")
        if decision.action == Action.CONTINUE:
            self.log.warning(
                "the file grew after %s: continuing from row %d",
                "its send began" if decision.earlier == seen.record else "it was sent",
                decision.start + 1,
            )
        else:
            self.log.warning("new content under a path sent before: sending it from its first row")
        self.journal.restart_from(record.id, decision.start, decision.ahead)
        self.progress = SettledRecords(decision.start, decision.ahead)
        self.sent = self.rejected = self.dropped = 0
        return None

    async def _send_all(self, source: ChunkSource) -> str:
        self.meter = ProgressMeter(self.rows_total, self.settled_rows, time.monotonic())
        checkpointer = asyncio.create_task(self._checkpoint_every())
        reporter = asyncio.create_task(self._report_progress_every())
        records_read = 0
        try:
            while True:
                await self.sender.wait_room()
                await self._wait_held_room()
                chunk = await source.next_chunk()
                unchanged = await self.delta.filter(chunk) if self.delta is not None else []
                self._take(chunk, unchanged)
                records_read = chunk.records_read
                if chunk.at_end:
                    break
            await self._wait_settled()
            stated = source.stated
            if stated is not None and stated != records_read:
                return self._finish(
                    FileState.FAILED,
                    f"the file states {stated} records but holds {records_read}: "
                    f"truncated or padded? {self.sent} rows were sent, {self.rejected} rejected",
                )
        except (ExportFileError, ShareUnavailableError) as exc:
            # Stop reading; what is in flight still settles, what is queued stays unsent.
            unsent = self.sender.drop_job(self)
            if self.delta is not None:
                self.delta.abandoned(unsent)
            self._outstanding -= len(unsent)
            self.metrics.backlog_rows.dec(len(unsent))
            await self._wait_settled()
            await self.state_writes.until_written(self.write_checkpoint)
            if isinstance(exc, ShareUnavailableError):
                self.retry_reason = f"{exc}; {self.sent} rows sent so far"
                return WAIT_FOR_SHARE
            reason = (
                f"{exc} while being sent; {self.sent} rows were sent, {self.rejected} rejected,"
                f" rows from {self.progress.checkpoint + 1} on were not sent"
            )
            return self._finish(
                FileState.VANISHED if isinstance(exc, FileVanishedError) else FileState.FAILED,
                reason,
            )
        finally:
            checkpointer.cancel()
            reporter.cancel()
            if self.delta is not None:
                self.delta.close()
            self.write_checkpoint()
        # Done only once the last checkpoint and rejects are written (a full disk: waits).
        await self.state_writes.until_written(self.write_checkpoint)
        await self.state_writes.until_written(self._write_shared_rejects)
        counts = f"{self.sent:,} sent, {self.rejected:,} rejected, {self.dropped:,} fields dropped"
        if self.delta is not None:
            counts += self.delta.summary()
        took = self.meter.summary(self.settled_rows, time.monotonic(), self._started_at)
        self.log.info("done: %s: %s", took, counts)
        return self._finish(FileState.DONE)

    # --- progress ------------------------------------------------------------------------

    @property
    def settled_rows(self) -> int:
        """Rows acknowledged by Braze or rejected, from the file's first row."""
        return self.progress.checkpoint + self.progress.outstanding_ahead

    async def _report_progress_every(self) -> None:
        while True:
            await asyncio.sleep(self.progress_interval_s)
            assert self.meter is not None
            snapshot = self.meter.snapshot(self.settled_rows, time.monotonic())
            self.log.info("progress: %s", snapshot.describe())

    def status_text(self) -> str:
        """One line for systemd's STATUS=: the file and how far it got."""
        if self.meter is None:
            return f"reading {self.source}"
        snapshot = self.meter.peek(self.settled_rows, time.monotonic())
        return f"sending {self.source}: {snapshot.describe()}"

    async def _after_done(self, identity: tuple[int, int]) -> None:
        """keep, archive or delete the file, as the channel says; only once it is done."""
        action = self.channel.settings.after_done
        if action == "keep":
            return
        where = (self.base, self.source, identity, self.archive_root, self.state_directory)
        try:
            done = await asyncio.to_thread(apply_after_done, action, *where)
        except (NotRegularFileError, OSError) as exc:
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            self.log.error("did not %s the file after it was sent: %s", action, why)
            return
        self.log.info("%s after it was sent", done)

    async def _wait_held_room(self) -> None:
        """Wait, before reading on, until the rows held take less than MAX_HELD_BYTES."""
        while True:
            held, checkpoint = self._held, self.progress.checkpoint
            while held and held[0][0] <= checkpoint:
                self._held_bytes -= held.popleft()[1]
            if self._held_bytes < MAX_HELD_BYTES or not self._outstanding:
                return
            await asyncio.sleep(0.05)  # (only over the bound: rows of hundreds of KB)

    def _take(self, chunk: ChunkData, unchanged: list[int] | None = None) -> None:
        """`unchanged`: rows delta left with nothing to send, settled as sent (Braze holds
        every value of theirs)."""
        assert self._rejects is not None
        if chunk.drops:
            index_of = dict(zip(chunk.line_numbers, chunk.indexes, strict=False))
            settled_now = []
            for drop in chunk.drops:
                index = index_of.get(drop.line_no)
                if index is None:  # a row delta settles at once (unchanged)
                    settled_now.append(drop)
                else:
                    self._drops.setdefault(index, []).append(drop)
            self._write_drops(settled_now)
        rows = len(chunk.rejected) + len(chunk.indexes) + len(unchanged or ())
        if chunk.indexes:
            size = sum(map(len, chunk.bodies)) + sum(map(len, chunk.packed))
            self._held.append((chunk.indexes[-1] + 1, size))
            self._held_bytes += size
        self._outstanding += rows
        self.metrics.backlog_rows.inc(rows)
        if self._outstanding:
            self._settled.clear()
        for _, line_no, cells, reason in chunk.rejected:
            self._write_reject(line_no, cells, reason)
        if chunk.rejected:
            self._settle([index for index, _, _, _ in chunk.rejected])
        if unchanged:
            self.sent += len(unchanged)
            self._rows_label.inc(len(unchanged))
            self._settle(unchanged)
        self.sender.submit(chunk.items_for(self))

    async def _wait_settled(self) -> None:
        if self._outstanding:
            self._settled.clear()
            await self._settled.wait()

    def _checkpoint_soon(self) -> None:
        self._checkpoint_due = False
        self.write_checkpoint(durable=False)

    async def _checkpoint_every(self) -> None:
        while CHECKPOINTS:
            await asyncio.sleep(self.checkpoint_interval_s)
            self.write_checkpoint()

    def write_checkpoint(self, durable: bool = True) -> bool:
        """Rejects first, then the journal: a checkpoint never covers a reject not written.

        Every checkpoint reaches the OS (enough for a killed process); `durable` ones are also
        fsynced (a power cut), once a second. False when the state directory cannot take them
        (StateWrites pauses sending; the next call tries again).
        """
        try:
            if self._rejects is not None:
                self._rejects.flush(durable)
            if self._shared_rejects:
                self.journal.store_rejects(self.record.id, self._shared_rejects)  # type: ignore[attr-defined]
                self._shared_rejects.clear()
            progress = self.progress
            self.journal.checkpoint(
                self.record.id, progress.checkpoint, self.sent, self.rejected, self.dropped,
                progress.ahead,
            )  # fmt: skip
        except StateWriteErrors as exc:
            self.state_writes.failed("the checkpoint (journal or rejects)", exc)
            return False
        self.state_writes.succeeded()
        if self.rows_total:
            self.metrics.current_file_progress.set(min(1.0, self.settled_rows / self.rows_total))
        return True

    def _write_shared_rejects(self) -> bool:
        """At the end, the rejects file again from the shared journal: every row rejected,
        by this daemon or by the other before a fail-over."""
        if self._shared_rejects is None or self._rejects is None:
            return True
        try:
            rows = self.journal.rejects_of(self.record.id)  # type: ignore[attr-defined]
            if rows:
                self._rejects.rewrite(rows)
        except StateWriteErrors as exc:
            self.state_writes.failed("the rejects file", exc)
            return False
        return True

    def suspend(self) -> None:
        """Shutdown, after requests in flight settled: record how far the file got."""
        self.write_checkpoint()
        if self._rejects is not None:
            self._rejects.close()

    def _finish(self, state: FileState, reason: str | None = None) -> FileState:
        self.metrics.current_file_progress.set(0)
        if state != FileState.DONE:
            self.log.error("%s: %s", state, reason)
        self.journal.finish(self.record.id, state, reason)
        if self.delta is not None:
            self.delta.finished(self.record.id, self.record.rel_path, self.channel.name)
        self.metrics.files.labels(self.channel.name, state).inc()
        self.sender.transport.finish(self.source)
        return state
