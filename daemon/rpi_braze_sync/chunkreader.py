"""Read, map and serialise an export file a chunk of rows at a time, in the calling thread,
handing back plain columns (ChunkData). Runs in a worker thread of the daemon (ThreadSource),
or inside the mapping process (mapchild.py); sources.py drives both from the event loop.
No asyncio and no pydantic here: the mapping process imports this module.
"""

from __future__ import annotations

from typing import TypeVar

from .batching import keep_unsettled, pack_rows
from .chunks import ChunkData, DropData, FileRequest, RejectData
from .mapper import bind
from .reader import ExportReader

T = TypeVar("T")
# Rows read and mapped at a time. Column-wise mapping holds a chunk's columns several times
# over; 500 rows measured both faster and 30 MB lighter than 2,000 (caches, allocator).
CHUNK_ROWS = 500
# ... and at most this many cells: a file of 10,000 columns is read a few rows at a time, so
# that it takes the memory of a narrow one (reader.CHUNK_CHARS bounds the characters too).
CHUNK_CELLS = 32_000


def _pick(column: list[T], positions: list[int]) -> list[T]:
    return [column[i] for i in positions]


class ChunkReader:
    """One export file, read and mapped a chunk at a time in the calling thread."""

    def __init__(self, spec: FileRequest) -> None:
        fmt, mapping = spec.plan.read, spec.plan.mapping
        self.spec = spec
        self.reader = ExportReader(
            spec.path, spec.inspection, fmt, spec.start_index, base=spec.base
        )
        try:
            self.mapper = bind(mapping, self.reader.header, spec.path_values)
            self.stated = self.reader.stated_count(fmt.record_count) if fmt.record_count else None
        except BaseException:
            self.reader.close()
            raise
        self.header = self.reader.header
        self.warnings = self.mapper.warnings
        self.chunk_rows = max(1, min(CHUNK_ROWS, CHUNK_CELLS // max(1, len(self.header))))

    def next_chunk(self) -> ChunkData:
        reader = self.reader
        if self.spec.base is not None:
            reader.verify_source(self.spec.path, self.spec.base)
        batch = reader.take_batch(self.chunk_rows)
        rows, line_numbers = batch.rows, batch.line_numbers
        indexes = list(range(batch.first_index, batch.first_index + len(rows)))
        unread = dict(batch.unread)
        unsettled = keep_unsettled(batch.first_index, len(rows), self.spec.skip)
        if unsettled is not None:  # settled before a restart: not sent, rejected nor counted
            rows, line_numbers = _pick(rows, unsettled), _pick(line_numbers, unsettled)
            indexes = _pick(indexes, unsettled)
            unread = {j: unread[i] for j, i in enumerate(unsettled) if i in unread}
        rejected: list[RejectData] = []
        if unread:  # rejected with their line before mapping
            for i, reason in sorted(unread.items()):
                rejected.append((indexes[i], line_numbers[i], rows[i], reason))
            read = [i for i in range(len(rows)) if i not in unread]
            rows, line_numbers = _pick(rows, read), _pick(line_numbers, read)
            indexes = _pick(indexes, read)
        packed = pack_rows(rows)
        mapped = self.mapper.map_rows(rows, line_numbers, self.spec.delta)
        bodies, users, summaries = mapped.bodies, mapped.users, mapped.summaries
        # By record index, which is what settles (a rejected row has none).
        drops: dict[int, list[DropData]] = {
            indexes[i]: [(d.line_no, d.field, d.value, d.reason) for d in row]
            for i, row in mapped.dropped.items()
        }
        if mapped.reasons:  # rejected rows leave the columns for the rejects file
            for i, reason in sorted(mapped.reasons.items()):
                rejected.append((indexes[i], line_numbers[i], rows[i], reason))
            kept = [i for i in range(len(rows)) if i not in mapped.reasons]
            indexes, line_numbers = _pick(indexes, kept), _pick(line_numbers, kept)
            users, bodies, packed = _pick(users, kept), _pick(bodies, kept), _pick(packed, kept)
            summaries = None if summaries is None else _pick(summaries, kept)
        return ChunkData(
            indexes,
            line_numbers,
            users,
            bodies,  # type: ignore[arg-type]  # no None left
            packed,
            rejected,
            drops,
            batch.at_end,
            reader.progress(),
            reader.records_read,
            summaries,  # type: ignore[arg-type]  # (likewise)
        )

    def close(self) -> None:
        self.reader.close()
