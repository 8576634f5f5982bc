"""Read, map and serialise an export file a chunk of rows at a time, in the calling thread,
handing back plain columns (ChunkData). Runs in a worker thread of the daemon (ThreadSource),
or inside the mapping process (mapchild.py); sources.py drives both from the event loop.
No asyncio and no pydantic here: the mapping process imports this module.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from itertools import compress, repeat
from operator import is_, itemgetter
from typing import TypeVar, cast

from .batching import keep_unsettled, pack_rows, unpack_cells
from .chunks import ChunkData, DropData, FileRequest, KeysData, RejectData
from .deltaprefilter import plan_seed, raw_fps
from .deltarecord import NO_RAW, user_key, user_keys
from .identifiers import unusable_rows
from .mapper import bind
from .mapping import Rejection
from .reader import ExportReader
from .rowcode import compile_identify

T = TypeVar("T")
# Rows read and mapped at a time. Column-wise mapping holds a chunk's columns several times
# over; 500 rows measured both faster and 30 MB lighter than 2,000 (caches, allocator).
CHUNK_ROWS = 500
# ... and at most this many cells: a file of 10,000 columns is read a few rows at a time, so
# that it takes the memory of a narrow one (reader.CHUNK_CHARS bounds the characters too).
CHUNK_CELLS = 32_000


_NO_KEY = bytes(16)


@dataclass
class _Read:
    """A batch of rows read, before mapping (held between the two phases)."""

    rows: list[list[str]]
    line_numbers: list[int]
    indexes: list[int]
    rejected: list[RejectData]  # rows that could not be read
    at_end: bool
    progress: float
    records_read: int


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
        # Delta on: each row's raw fingerprint is seeded by this (deltaprefilter.py).
        self._seed: int | None = None
        if spec.delta:
            used = mapping.paths_used()
            self._seed = plan_seed(spec.plan, self.header, spec.path_values, used, spec.version)
        self._id_column = self.mapper.plan.id_column_as_written
        self._identify = compile_identify(self.mapper.plan)
        self._held: deque[tuple[_Read, list[str | list[str]], list[bytes]]] = deque()
        self.chunk_rows = max(1, min(CHUNK_ROWS, CHUNK_CELLS // max(1, len(self.header))))

    def next_chunk(self) -> ChunkData:
        """The next chunk, every row mapped (one phase)."""
        return self._mapped(self._read())

    def keys(self) -> KeysData:
        """Phase 1 of the next chunk (deltaprefilter.py): its rows read and held, their users'
        store keys and raw fingerprints handed back; `mapped` maps the rows the daemon keeps.
        Phases 1 are answered in order, and so are phases 2: the daemon asks a few ahead."""
        assert self._seed is not None  # (delta on)
        read = self._read()
        packed = pack_rows(read.rows)
        raws = raw_fps(packed, self._seed)
        users = self._users(read.rows, read.line_numbers)
        if None in users:
            for i in compress(range(len(users)), map(is_, users, repeat(None))):
                raws[i] = NO_RAW  # no identity here: mapped (and rejected, most likely)
            keys = [_NO_KEY if user is None else user_key(user) for user in users]
        else:
            keys = user_keys(cast("list[str]", users))
        # Held packed, the cells' lists let go: up to PREFETCH_CHUNKS chunks wait here for
        # their phase 2, and a list of a row's cells takes about five times its packed string
        # (an unchanged run at 1M rows: the mapping process's peak 25 -> 22 MB).
        read.rows = []
        self._held.append((read, packed, raws))
        return KeysData(read.indexes, keys, raws, read.at_end)

    def mapped(self, mask: bytes) -> ChunkData:
        """Phase 2 of the oldest chunk held: the rows `mask` marks (1) mapped, the others
        handed back as skipped (ChunkData.skipped), by record index."""
        read, packed, raws = self._held.popleft()
        assert len(mask) == len(packed), (len(mask), len(packed))
        keep = [i for i, flag in enumerate(mask) if flag]
        skipped = [read.indexes[i] for i, flag in enumerate(mask) if not flag]
        if len(keep) < len(mask):
            read.line_numbers = _pick(read.line_numbers, keep)
            read.indexes = _pick(read.indexes, keep)
            packed, raws = _pick(packed, keep), _pick(raws, keep)
        read.rows = list(map(unpack_cells, packed))
        chunk = self._mapped(read, packed, raws)
        chunk.skipped = skipped
        return chunk

    def _users(self, rows: list[list[str]], line_numbers: list[int]) -> list[str | None]:
        """Each row's user as the mapping names it (None: none, or a row of the wrong width),
        from the identifier's rule alone."""
        width, column, identify = len(self.header), self._id_column, self._identify
        if not rows:
            return []
        if column is not None and all(len(row) == width for row in rows):
            users: list[str | None] = list(map(str.strip, map(itemgetter(column), rows)))
            for i in unusable_rows(cast("list[str]", users)):
                identity = identify(rows[i], line_numbers[i])
                users[i] = None if isinstance(identity, Rejection) else identity[0]
            return users
        users = []
        for row, line_no in zip(rows, line_numbers, strict=True):
            found = identify(row, line_no) if len(row) == width else None
            users.append(None if found is None or isinstance(found, Rejection) else found[0])
        return users

    def _read(self) -> _Read:
        """The next batch of rows read, the rows settled before a restart left out and those
        that could not be read rejected."""
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
        progress, records_read = reader.progress(), reader.records_read
        return _Read(rows, line_numbers, indexes, rejected, batch.at_end, progress, records_read)

    def _mapped(
        self,
        read: _Read,
        packed: list[str | list[str]] | None = None,
        raws: list[bytes] | None = None,
    ) -> ChunkData:
        rows, line_numbers, indexes, rejected = (
            read.rows,
            read.line_numbers,
            read.indexes,
            read.rejected,
        )
        if packed is None:
            packed = pack_rows(rows)
        if raws is None and self._seed is not None:  # each summary names its source row
            raws = raw_fps(packed, self._seed)
        mapped = self.mapper.map_rows(rows, line_numbers, self.spec.delta, raws)
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
            read.at_end,
            read.progress,
            read.records_read,
            summaries,  # type: ignore[arg-type]  # (likewise)
        )

    def close(self) -> None:
        self.reader.close()
