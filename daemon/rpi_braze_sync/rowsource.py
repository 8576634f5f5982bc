"""Read, map and serialise a file a chunk of rows at a time, handing back plain columns.

InProcessSource does it in the calling thread: a worker thread of the daemon, or the mapping
process, which is this module run as a program (`_serve`, below). The mapping process is a
fresh interpreter that imports only what reading and mapping need (no pydantic: see plain.py,
no asyncio), under 30 MB. sources.py drives both from the event loop.
"""

from __future__ import annotations

import gc
import marshal
import pickle
import signal
import socket
import struct
import sys
from typing import Any, BinaryIO, TypeVar

import orjson

from .batching import keep_unsettled, pack_rows
from .chunks import ChunkData, Drop, FileRequest, RejectData
from .mapping import Rejection
from .reader import ExportReader, too_long_reason

T = TypeVar("T")
# Rows read and mapped at a time. Column-wise mapping holds a chunk's columns several times
# over; 500 rows measured both faster and 30 MB lighter than 2,000 (caches, allocator).
CHUNK_ROWS = 500
# ... and at most this many cells: a file of 10,000 columns is read a few rows at a time, so
# that it takes the memory of a narrow one (reader.CHUNK_CHARS bounds the characters too).
CHUNK_CELLS = 32_000


def tune_garbage_collector() -> None:
    """Rows make many short-lived dicts and lists and no reference cycles to speak of: the
    default collector ran every 700 allocations and took half the mapping time. Collect
    young objects less often, and never rescan what start-up loaded (modules, config).
    Both the daemon and the mapping process call this."""
    gc.freeze()
    gc.set_threshold(50_000, 20, 50)


def _pick(column: list[T], positions: list[int]) -> list[T]:
    return [column[i] for i in positions]


class InProcessSource:
    """Reads and maps in the calling thread. Also what the mapping process runs inside."""

    def __init__(self, spec: FileRequest) -> None:
        fmt, mapping = spec.plan.read, spec.plan.mapping
        self.spec = spec
        self.reader = ExportReader(
            spec.path, spec.inspection, fmt, spec.start_index, base=spec.base
        )
        try:
            self.mapper = mapping.bind(self.reader.header, spec.path_values)
            self.stated = self.reader.stated_count(fmt.record_count) if fmt.record_count else None
        except BaseException:
            self.reader.close()
            raise
        self.header = self.reader.header
        self.warnings = self.mapper.warnings
        self.chunk_rows = max(1, min(CHUNK_ROWS, CHUNK_CELLS // max(1, len(self.header))))

    def next_chunk(self) -> ChunkData:
        reader, map_chunk = self.reader, self.mapper.map_chunk
        if self.spec.base is not None:
            reader.verify_source(self.spec.path, self.spec.base)
        batch = reader.take_batch(self.chunk_rows)
        rows, line_numbers = batch.rows, batch.line_numbers
        indexes = list(range(batch.first_index, batch.first_index + len(rows)))
        too_long = set(batch.too_long)
        unsettled = keep_unsettled(batch.first_index, len(rows), self.spec.skip)
        if unsettled is not None:  # settled before a restart: not sent, rejected nor counted
            rows, line_numbers = _pick(rows, unsettled), _pick(line_numbers, unsettled)
            indexes = _pick(indexes, unsettled)
            too_long = {j for j, i in enumerate(unsettled) if i in too_long}
        drops: list[Drop] = []
        rejected: list[RejectData] = []
        if too_long:  # rejected with their line; their cells were never read
            blank = [""] * len(self.header)
            limit = reader.max_record
            for i in sorted(too_long):
                line_no = line_numbers[i]
                rejected.append((indexes[i], line_no, blank, too_long_reason(line_no, limit)))
            read = [i for i in range(len(rows)) if i not in too_long]
            rows, line_numbers = _pick(rows, read), _pick(line_numbers, read)
            indexes = _pick(indexes, read)
        packed = pack_rows(rows)
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
            batch.at_end,
            reader.progress(),
            reader.records_read,
        )

    def close(self) -> None:
        self.reader.close()


# Frames between the daemon and the mapping process: an 8-byte length, then the payload.
# Requests are pickled. A chunk reply is plain lists, tuples, strings and bytes, which marshal
# writes about four times faster than pickle; any other reply is pickled.
FRAME_LENGTH = struct.Struct("!Q")
_MARSHAL, _PICKLE = b"m", b"p"


def frame(payload: bytes) -> bytes:
    return FRAME_LENGTH.pack(len(payload)) + payload


def encode_reply(reply: tuple[Any, ...]) -> bytes:
    """A reply as one frame."""
    if reply[0] == "chunk":
        chunk: ChunkData = reply[1]
        drops = [(d.line_no, d.field, d.value, d.reason) for d in chunk.drops]
        columns = (chunk.indexes, chunk.line_numbers, chunk.users, chunk.bodies, chunk.packed)
        rest = (chunk.rejected, drops, chunk.at_end, chunk.progress, chunk.records_read)
        return frame(_MARSHAL + marshal.dumps((*columns, *rest)))
    return frame(_PICKLE + pickle.dumps(reply))


def decode_reply(payload: bytes) -> tuple[Any, ...]:
    """A reply frame's payload (without its length) back into ("chunk", ChunkData) or the
    pickled tuple."""
    body = memoryview(payload)[1:]
    if payload[:1] == _MARSHAL:
        indexes, line_numbers, users, bodies, packed, rejected, drops, *rest = marshal.loads(body)
        at_end, progress, records_read = rest
        columns = (indexes, line_numbers, users, bodies, packed)
        dropped = [Drop(*d) for d in drops]
        return ("chunk", ChunkData(*columns, rejected, dropped, at_end, progress, records_read))
    return tuple(pickle.loads(body))


def _read_request(requests: BinaryIO) -> tuple[Any, ...] | None:
    """The daemon's next request; None once the daemon is gone."""
    header = requests.read(FRAME_LENGTH.size)
    size = FRAME_LENGTH.unpack(header)[0] if len(header) == FRAME_LENGTH.size else -1
    payload = requests.read(size) if size >= 0 else b""
    return tuple(pickle.loads(payload)) if len(payload) == size else None


def _sendable(reply: tuple[Any, ...]) -> bytes:
    try:
        return encode_reply(reply)
    except Exception as unsendable:  # pickle cannot carry it; its type and text can
        what = reply[1] if reply[0] == "error" else unsendable
        return encode_reply(("error", RuntimeError(f"{type(what).__name__}: {what}")))


class _Server:
    """The mapping process: one file at a time, each request answered in turn (the daemon
    asks for several chunks ahead)."""

    def __init__(self) -> None:
        self.source: InProcessSource | None = None

    def answer(self, request: tuple[Any, ...]) -> tuple[Any, ...] | None:
        """The reply to a request (an error is one); None for a request without a reply."""
        kind = request[0]
        try:
            if kind == "open":
                self._close()  # (if the new file fails to open, no stale one is read)
                self.source = InProcessSource(request[1])
                return ("opened", self.source.header, self.source.warnings, self.source.stated)
            if kind == "chunk":
                assert self.source is not None
                return ("chunk", self.source.next_chunk())
            if kind == "close":
                self._close()
            return None
        except Exception as exc:
            return ("error", exc)

    def _close(self) -> None:
        if self.source is not None:
            self.source.close()
            self.source = None


def _serve(channel: socket.socket) -> None:
    server = _Server()
    with channel.makefile("rb") as requests:
        while (request := _read_request(requests)) is not None:
            reply = server.answer(request)
            if reply is None:
                continue
            try:
                channel.sendall(_sendable(reply))
            except OSError:  # the daemon is gone
                return


if __name__ == "__main__":  # the mapping process: python -m rpi_braze_sync.rowsource FD
    # Through the package, so what it sends is pickled under rpi_braze_sync.rowsource, the
    # name the daemon knows, not __main__.
    from rpi_braze_sync.rowsource import _serve as serve
    from rpi_braze_sync.rowsource import tune_garbage_collector as tune

    # Ctrl-C in a terminal signals the whole process group: the daemon stops this process
    # itself (it closes the socket, then terminates it), without a KeyboardInterrupt here.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    tune()
    serve(socket.socket(fileno=int(sys.argv[1])))
