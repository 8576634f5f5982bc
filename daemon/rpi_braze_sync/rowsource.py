"""Where a file's mapped rows come from: this process (a worker thread), or a mapping process.

Both read, map and serialise a chunk of rows at a time and hand back plain data, as columns.
The mapping process (performance.mapping_process, the default) takes the per-row work off the
interpreter that sends, so reading and sending use both cores; it is a fresh interpreter that
imports only what reading and mapping need (no pydantic: see plain.py), under 30 MB.
"""

from __future__ import annotations

import gc
import logging
import marshal
import pickle
import socket
import subprocess
import sys
from dataclasses import dataclass, replace
from itertools import repeat
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import orjson

from .batching import Item, pack_rows
from .errors import ShareUnavailableError
from .mapping import CompiledMapping, Drop, Rejection
from .plain import detached
from .reader import ExportReader, FileInspection

if TYPE_CHECKING:  # this module runs the mapping process, which never imports pydantic
    from .settings import FormatSettings

log = logging.getLogger(__name__)
T = TypeVar("T")
# Rows read and mapped at a time. Column-wise mapping holds a chunk's columns several times
# over; 500 rows measured both faster and 30 MB lighter than 2,000 (caches, allocator).
CHUNK_ROWS = 500


def tune_garbage_collector() -> None:
    """Rows make many short-lived dicts and lists and no reference cycles to speak of: the
    default collector ran every 700 allocations and took half the mapping time. Collect
    young objects less often, and never rescan what start-up loaded (modules, config).
    Both the daemon and the mapping process call this."""
    gc.freeze()
    gc.set_threshold(50_000, 20, 50)


# (record index, line, source cells, reason)
RejectData = tuple[int, int, list[str], str]


@dataclass(frozen=True)
class SourceSpec:
    """Everything needed to read and map one file, picklable for the mapping process."""

    path: Path
    base: Path
    inspection: FileInspection
    fmt: FormatSettings
    mapping: CompiledMapping  # the channel's, compiled at load (pickled as its recipe)
    path_values: dict[str, str]
    start_index: int


@dataclass
class ChunkData:
    """A chunk's rows to send as columns, one entry a row (no object per row until the
    sender's Item), then its rejected rows and dropped fields."""

    indexes: list[int]  # record index in the file
    line_numbers: list[int]
    users: list[str]
    bodies: list[bytes]  # each row's attributes object, serialised
    packed: list[str | list[str]]  # each source row, for a rejects file (pack_cells)
    rejected: list[RejectData]
    drops: list[Drop]
    at_end: bool
    progress: float  # share of the file's bytes read
    records_read: int

    def items_for(self, job: Any) -> list[Item]:
        columns = (self.indexes, self.line_numbers, self.users, self.bodies, self.packed)
        return list(map(Item, repeat(job), *columns))


def _pick(column: list[T], positions: list[int]) -> list[T]:
    return [column[i] for i in positions]


class InProcessSource:
    """Reads and maps in the calling thread. Also what the mapping process runs inside."""

    def __init__(self, spec: SourceSpec) -> None:
        fmt, mapping = spec.fmt, spec.mapping
        self.spec = spec
        self.reader = ExportReader(spec.path, spec.inspection, fmt, spec.start_index)
        try:
            self.mapper = mapping.bind(self.reader.header, spec.path_values)
            self.stated = self.reader.stated_count(fmt.record_count) if fmt.record_count else None
        except BaseException:
            self.reader.close()
            raise
        self.header = self.reader.header
        self.warnings = self.mapper.warnings

    def next_chunk(self) -> ChunkData:
        reader, map_chunk = self.reader, self.mapper.map_chunk
        reader.verify_source(self.spec.path, self.spec.base)
        batch = reader.take_batch(CHUNK_ROWS)
        rows, line_numbers = batch.rows, batch.line_numbers
        indexes = list(range(batch.first_index, batch.first_index + len(rows)))
        packed = pack_rows(rows)
        drops: list[Drop] = []
        rejected: list[RejectData] = []
        if map_chunk is not None:
            mapped, users = map_chunk(rows)
        else:
            mapped, users = [None] * len(rows), [""] * len(rows)
        if None in mapped:  # rows for the row function: mapped one by one, or rejected
            kept: list[int] = []
            map_row, dumps = self.mapper.map_row, orjson.dumps
            for i, body in enumerate(mapped):
                if body is None:
                    result = map_row(rows[i], line_numbers[i])
                    if isinstance(result, Rejection):
                        rejected.append((indexes[i], line_numbers[i], rows[i], result.reason))
                        continue
                    if result.drops:
                        drops.extend(result.drops)
                    # orjson's result keeps its whole working buffer (4 KB or more) alive;
                    # a right-sized copy is what waits in memory for Braze.
                    mapped[i] = bytes(memoryview(dumps(result.attributes)))
                    users[i] = result.user
                kept.append(i)
            if len(kept) < len(rows):
                indexes, line_numbers = _pick(indexes, kept), _pick(line_numbers, kept)
                users, mapped, packed = _pick(users, kept), _pick(mapped, kept), _pick(packed, kept)
        return ChunkData(
            indexes,
            line_numbers,
            users,
            mapped,  # type: ignore[arg-type]  # no None left
            packed,
            rejected,
            drops,
            len(rows) < CHUNK_ROWS,
            reader.progress(),
            reader.records_read,
        )

    def close(self) -> None:
        self.reader.close()


# Replies from the mapping process: a chunk is plain lists, tuples, strings and bytes, which
# marshal writes about four times faster than pickle; anything else is pickled.
_MARSHAL, _PICKLE = b"m", b"p"


def _encode_reply(reply: tuple[Any, ...]) -> bytes:
    if reply[0] == "chunk":
        chunk: ChunkData = reply[1]
        drops = [(d.line_no, d.field, d.value, d.reason) for d in chunk.drops]
        columns = (chunk.indexes, chunk.line_numbers, chunk.users, chunk.bodies, chunk.packed)
        rest = (chunk.rejected, drops, chunk.at_end, chunk.progress, chunk.records_read)
        return _MARSHAL + marshal.dumps((*columns, *rest))
    return _PICKLE + pickle.dumps(reply)


def _decode_reply(data: bytes) -> tuple[Any, ...]:
    body = memoryview(data)[1:]
    if data[:1] == _MARSHAL:
        indexes, line_numbers, users, bodies, packed, rejected, drops, *rest = marshal.loads(body)
        at_end, progress, records_read = rest
        columns = (indexes, line_numbers, users, bodies, packed)
        dropped = [Drop(*d) for d in drops]
        return ("chunk", ChunkData(*columns, rejected, dropped, at_end, progress, records_read))
    return tuple(pickle.loads(body))


def _serve(conn: Connection) -> None:
    """The mapping process: one file at a time, each request answered in turn (the daemon
    asks for several chunks ahead)."""
    source: InProcessSource | None = None
    while True:
        try:
            request = conn.recv()
        except (EOFError, OSError):  # the daemon is gone
            return
        kind = request[0]
        try:
            if kind == "open":
                if source is not None:
                    source.close()
                    source = None  # (if the new file fails to open, no stale one is read)
                source = InProcessSource(request[1])
                reply: tuple[Any, ...] = ("opened", source.header, source.warnings, source.stated)
            elif kind == "chunk":
                assert source is not None
                reply = ("chunk", source.next_chunk())
            elif kind == "close" and source is not None:
                source.close()
                source = None
                continue
            else:
                continue
        except Exception as exc:
            reply = ("error", exc)
        conn.send_bytes(_encode_reply(reply))


class MappingProcess:
    """The daemon's one mapping process, started on first use and again if it died.

    It maps up to PREFETCH_CHUNKS chunks ahead of the one being sent: with one, each process
    waited for the other in turn (both were idle a third of the time)."""

    PREFETCH_CHUNKS = 8

    def __init__(self) -> None:
        self._process: subprocess.Popen[bytes] | None = None
        self._conn: Connection | None = None
        self._pending = 0  # chunks asked for and not yet received

    def _ensure(self) -> Connection:
        if self._process is None or self._process.poll() is not None:
            # A fresh interpreter that imports only the reading and mapping modules (not a
            # fork of a process with threads, nor multiprocessing's spawn, which would import
            # the whole daemon again): its memory is what the mapping needs.
            ours, theirs = socket.socketpair()
            process = subprocess.Popen(
                [sys.executable, "-m", "rpi_braze_sync.rowsource", str(theirs.fileno())],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
            )
            theirs.close()
            self._process, self._conn, self._pending = process, Connection(ours.detach()), 0
        assert self._conn is not None
        return self._conn

    def _call(self, request: tuple[Any, ...] | None) -> Any:
        conn = self._ensure()
        try:
            if request is not None:
                conn.send(request)
            reply = _decode_reply(conn.recv_bytes())
        except (EOFError, OSError):
            self.stop()
            raise ShareUnavailableError(
                "the mapping process stopped; the file will be retried"
            ) from None
        if reply[0] == "error":
            raise reply[1]
        return reply

    def open(self, spec: SourceSpec) -> WorkerSource:
        self.close_file()  # an abandoned file's prefetched chunk, if any
        _, header, warnings, stated = self._call(self.open_request(spec))
        return WorkerSource(self, header, warnings, stated)

    @staticmethod
    def open_request(spec: SourceSpec) -> tuple[str, SourceSpec]:
        """What is sent to open a file: settings as plain objects (plain.py)."""
        return ("open", replace(spec, fmt=detached(spec.fmt)))

    def next_chunk(self) -> ChunkData:
        request = None if self._pending else ("chunk",)
        self._pending = max(0, self._pending - 1)  # consumed now, even if the reply is an error
        reply = self._call(request)
        chunk: ChunkData = reply[1]
        if not chunk.at_end:  # ask for the next ones now: mapped while this one is sent
            conn = self._ensure()
            while self._pending < self.PREFETCH_CHUNKS:
                conn.send(("chunk",))
                self._pending += 1
        return chunk

    def close_file(self) -> None:
        if self._conn is not None and self._process is not None and self._process.poll() is None:
            while self._pending:  # chunks asked for ahead, unused: read and dropped
                self._pending -= 1
                try:
                    self._call(None)
                except Exception:
                    log.debug("discarded a prefetched chunk's error", exc_info=True)
            if self._conn is not None:  # (a failed read stops the process)
                self._conn.send(("close",))

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        self._pending = 0


class WorkerSource:
    def __init__(
        self, worker: MappingProcess, header: list[str], warnings: list[str], stated: int | None
    ) -> None:
        self.worker = worker
        self.header = header
        self.warnings = warnings
        self.stated = stated

    def next_chunk(self) -> ChunkData:
        return self.worker.next_chunk()

    def close(self) -> None:
        self.worker.close_file()


if __name__ == "__main__":  # the mapping process: python -m rpi_braze_sync.rowsource FD
    # Through the package, so what it sends is pickled under rpi_braze_sync.rowsource, the
    # name the daemon knows, not __main__.
    from rpi_braze_sync.rowsource import _serve as serve
    from rpi_braze_sync.rowsource import tune_garbage_collector as tune

    tune()
    serve(Connection(int(sys.argv[1])))
