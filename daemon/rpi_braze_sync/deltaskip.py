"""Delta's prefilter in the daemon (deltaprefilter.py), for one file: each chunk asked in two
phases is decided here between them (its users looked up, the rows Braze holds from the same
source row skipped, unmapped), and whether to ask the next chunks in two phases at all.

Adaptive: phase 1 pays only when rows can be skipped. A chunk of which fewer than WORTH could
be (a first run: nothing known; a daily re-export: every row's execution id new) makes the next
chunks one-phase, today's path (mapped, then compared in full); a one-phase chunk with at least
WORTH of rows the prefilter would have skipped (DeltaFile.raw_matches) makes them two-phase
again. Chunks asked ahead follow a few chunks late.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable
from functools import partial
from typing import TYPE_CHECKING, Protocol

from .deltaprefilter import decide
from .errors import WorkspaceChangedError

if TYPE_CHECKING:
    from .chunks import ChunkData, KeysData
    from .deltaflight import InFlight


class Run(Protocol):
    """What the prefilter reads of the daemon's delta (deltarun.DeltaRun)."""

    inflight: InFlight
    generation: int  # the Braze workspace's: bumped when a reload names another
    max_age_s: int
    clock: Callable[[], float]

    def lookup(self, keys: list[bytes]) -> Awaitable[list[bytes | None]]: ...


class File(Protocol):
    """What the prefilter needs of its file (deltafile.DeltaFile, which owns it): named here by
    what it offers, so that neither module imports the other."""

    raw_matches: int  # the last one-phase chunk's rows the prefilter would have skipped

    @property
    def run(self) -> Run: ...

    def disown_if_stale(self) -> bool: ...

    def unchanged_unmapped(self, rows: int, points: int) -> None: ...


# A decided chunk, until taken: (users of its rows mapped, DeltaRun.generation, data points of
# its rows skipped).
_Decided = tuple[list[bytes], int, int]


class ChunkSkip:
    """One file's prefilter (chunks.Prefilter), owned by its DeltaFile."""

    # Share of a chunk's rows skippable for phase 1 to pay: it costs the child a user key and
    # a fingerprint a row (and the daemon a second lookup of the rows it maps), about a tenth
    # of mapping the row, which it saves.
    WORTH = 0.2

    def __init__(self, file: File) -> None:
        self.file = file
        self.wanted = True  # the first chunk finds out
        # Users of rows decided "map" and not yet compared (DeltaFile.filter): a later row of
        # theirs is mapped too, so that it is compared after them (deltaprefilter.decide).
        self._pending: dict[bytes, int] = {}
        # Each decided chunk's, in order, until taken: its users mapped, the workspace
        # (DeltaRun.generation) whose values its skipped rows were found in, and their data
        # points. Counted once taken, when they settle (a checkpoint holds
        # DeltaFile.points(): counted at phase 1, a few chunks ahead, a restart would read
        # and count them again).
        self._chunks: deque[_Decided] = deque()
        self.rows_unmapped = 0  # rows skipped without mapping (a share of rows_unchanged)

    async def decide(self, keys: KeysData) -> bytes:
        """Phase 1 answered: which of its rows to map (a byte a row, 1: map)."""
        file, run = self.file, self.file.run
        users, raws = keys.keys, keys.raws
        if not users:
            self._chunks.append(([], 0, 0))
            return b""
        inflight = run.inflight
        file.disown_if_stale()
        token = inflight.lookup_started(users)
        try:
            records = await run.lookup(users)
            if file.disown_if_stale():  # read in the other workspace's store: none holds
                records = [None] * len(users)
            pending = self._pending
            quiet = inflight.quiet(token, users) and pending.keys().isdisjoint(users)
            base = None if quiet else partial(inflight.base, token)
            now = int(run.clock())
            decided = decide(users, raws, records, base, pending, now, run.max_age_s)
        finally:
            inflight.lookup_done(token)
        pending = self._pending
        for key in decided.mapped:
            pending[key] = pending.get(key, 0) + 1
        skipped = len(decided.skipped)
        self._chunks.append((decided.mapped, run.generation, decided.points))
        self.wanted = skipped >= self.WORTH * len(users)
        return decided.mask

    def taking(self, chunk: ChunkData) -> None:
        """DeltaFile.filter is about to compare the chunk: raises WorkspaceChangedError if its
        rows were skipped against the values of a Braze workspace a reload has replaced since.
        The new one may hold none of them, and their phase 2 has left them unmapped: they
        are read again (the file tried again from its checkpoint), as main's one-phase path
        would compare them with the new, empty store and send them whole. Rare (a reload
        naming another workspace, within the few chunks decided ahead), so no path of its
        own: mapping them here would need the mapping in the daemon or a third phase."""
        if chunk.skipped and self._chunks[0][1] != self.file.run.generation:
            raise WorkspaceChangedError(
                "the Braze workspace changed while rows found unchanged for the other one"
                " were read ahead: read again"
            )

    def filtered(self, chunk: ChunkData, unchanged: list[int]) -> list[int]:
        """After DeltaFile.filter compared the chunk's mapped rows (`unchanged`: those it left
        unsent): every row of the chunk left unsent, by record index."""
        if chunk.skipped is None:  # one phase: would two have paid?
            compared = len(chunk.indexes) + len(unchanged)
            if compared:
                self.wanted = self.file.raw_matches >= self.WORTH * compared
            return unchanged
        pending = self._pending
        mapped, _, points = self._chunks.popleft()
        for key in mapped:  # compared now (and registered if sent)
            left = pending.pop(key) - 1
            if left:
                pending[key] = left
        if not chunk.skipped:
            return unchanged
        self.rows_unmapped += len(chunk.skipped)
        self.file.unchanged_unmapped(len(chunk.skipped), points)
        return sorted(chunk.skipped + unchanged) if unchanged else chunk.skipped

    def close(self) -> None:
        """The file ended: nothing is pending any more."""
        self._pending.clear()
        self._chunks.clear()
