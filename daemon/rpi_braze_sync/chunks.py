"""The chunk model: what reading and mapping one export file hands the sender, a chunk of rows
at a time, and the interface a file job gets chunks through (`ChunkSource`, opened by an
injected `OpenChunks` from a `FileRequest`). Plain data only: chunks cross a process boundary.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from itertools import repeat
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from .batching import Item, Range
from .mapping import Drop as Drop  # (re-exported: what the executors record)

if TYPE_CHECKING:
    from .inspection import FileInspection
    from .plan import ChannelPlan


# A rejected row: (record index, line, source cells, reason).
RejectData = tuple[int, int, list[str], str]
# A field dropped from a row that is sent: (line, field, value, reason), the columns of the
# dropped-fields file. A plain tuple, not a Drop: a messy export drops a field from one row in
# seven or so, and each crosses to the daemon, waits for its row to settle and is written; as
# tuples they cross as marshal writes them and are written by one csv writerows.
DropData = tuple[int, str, str, str]


@dataclass
class ChunkData:
    """A chunk's rows to send as columns, one entry a row (no object per row until the
    sender's Item), then its rejected rows and the fields dropped from its rows to send."""

    indexes: list[int]  # record index in the file
    line_numbers: list[int]
    users: list[str]
    bodies: list[bytes]  # each row's attributes object, serialised
    packed: list[str | list[str]]  # each source row, for a rejects file (pack_cells)
    rejected: list[RejectData]
    drops: dict[int, list[DropData]]  # record index -> its row's dropped fields, in order
    at_end: bool
    progress: float  # share of the file's bytes read
    records_read: int
    # Delta on: each row's summary (deltarecord.py), made beside its body; None otherwise.
    deltas: list[bytes] | None = None
    # Mapped in two phases (deltaprefilter.py): the rows left unmapped, by record index, as
    # unchanged (Braze holds every value of theirs); None: mapped in one phase.
    skipped: list[int] | None = None

    def items_for(self, job: Any) -> list[Item]:
        columns = (self.indexes, self.line_numbers, self.users, self.bodies, self.packed)
        return list(map(Item, repeat(job), *columns))


@dataclass
class KeysData:
    """Phase 1 of a chunk mapped in two phases (deltaprefilter.py): its rows that were read,
    by record index, their users' store keys and raw fingerprints (NO_RAW: to be mapped);
    the rows it could not read come with phase 2. Lists of bytes: marshal makes them in C,
    and the store's lookup takes them as they are."""

    indexes: list[int]
    keys: list[bytes]
    raws: list[bytes]
    at_end: bool


class Prefilter(Protocol):
    """What decides a chunk's phase 2 (deltaskip.ChunkSkip): whether to ask the next chunk in
    two phases, and which rows of a phase 1 to map (a byte a row: 1 to map it)."""

    @property
    def wanted(self) -> bool: ...

    async def decide(self, keys: KeysData) -> bytes: ...


@dataclass(frozen=True)
class FileRequest:
    """What opens one export file for sending: the file as inspected, its channel's plan
    (how to read and map it), and where sending starts. Plain data (no settings model, no
    closure): it is sent as it is to the mapping process."""

    path: Path
    base: Path | None  # the share the file is in; None for a file named on the command line
    inspection: FileInspection
    plan: ChannelPlan
    path_values: dict[str, str]  # the path's parts, file_name, rpi_channel_execution_id
    start_index: int = 0  # the checkpoint: records before it are not read again
    skip: tuple[Range, ...] = ()  # records settled beyond start_index before a restart
    delta: bool = False  # summarise each row for delta (ChunkData.deltas)
    # The versions mapped values depend on (rpi_braze_sync.mapping_version), in each row's
    # raw fingerprint (deltaprefilter.plan_seed): the mapping process does not read packages'
    # metadata itself.
    version: str = ""


class ChunkSource(Protocol):
    """One open export file, read and mapped a chunk at a time.

    Opening raises FileNotFoundError (gone), HeaderError (the header does not fit the
    mapping), ExportFileError (cannot be sent), ShareUnavailableError or OSError (try later).
    `next_chunk` raises ExportFileError or ShareUnavailableError; `close` never raises."""

    header: list[str]
    warnings: list[str]  # said once per file (a column missing, a constant that is invalid)
    stated: int | None  # the record count the file states, when its format has one

    async def next_chunk(self, prefilter: Prefilter | None = None) -> ChunkData: ...

    async def close(self) -> None: ...


# How a file job opens its file: in a worker thread, or in the mapping process (app.py
# chooses, from performance.mapping_process).
OpenChunks = Callable[[FileRequest], Awaitable[ChunkSource]]
