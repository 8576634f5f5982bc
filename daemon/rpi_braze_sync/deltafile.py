"""One file's rows through delta (issue 16): each chunk compared before it is sent, and the
records of its rows written once Braze acknowledged them (deltarun.DeltaRun holds the store).

Crash safety: see deltarun.py. Nothing is written when a chunk is compared; a row's record is
built only in `acknowledged`, for the objects of a 2xx answer Braze did not list in `errors`.

The hot path works on each row's summary (deltarecord.py), made in the mapping process beside
its object: a row seen for the first time costs a lookup and its summary timed; an unchanged
row one comparison of fingerprints; only a row with something left out is read (to rebuild
its object without the values Braze holds).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from itertools import repeat
from typing import TYPE_CHECKING, Protocol, cast

import orjson

from . import deltachunk, deltastats
from .batching import Item
from .chunks import ChunkData
from .delta import Merge, Mode, Send, compare_row
from .deltabody import arrays_only, rebuild
from .deltacolumns import summaries
from .deltaflight import InFlight
from .deltarecord import (
    COLLIDES,
    COUNTS_AT,
    HEADER_BYTES,
    NO_RAW,
    RAW_AT,
    STATIC_AT,
    WHOLE_AT,
    header,
    user_keys,
)
from .deltasent import (
    ALL_POINTS,
    First,
    Sent,
    acknowledged_records,
    all_plain,
    first_records,
    newest_add,
)
from .deltaskip import ChunkSkip
from .progress import plural

if TYPE_CHECKING:
    from .metrics import Metrics


class Run(Protocol):
    """What a file needs of the daemon's delta (deltarun.DeltaRun, which makes DeltaFiles:
    named here by what it offers, so that neither module imports the other)."""

    inflight: InFlight
    generation: int  # the Braze workspace's: bumped when a reload names another
    max_age_s: int
    metrics: Metrics
    clock: Callable[[], float]

    def lookup(self, keys: list[bytes]) -> Awaitable[list[bytes | None]]: ...

    def remember(
        self, records: list[tuple[bytes, bytes]], marked: bool = False
    ) -> asyncio.Future[None]: ...

    def file_finished(self, entry: deltastats.FilePoints) -> None: ...


# (A row's state until it is answered, and its record once acknowledged: deltasent.py.)
_ENTRY_BYTES = 400  # a row's entries: its state tuple, two dicts' slots, its key (estimated)


class DeltaFile:
    """One file's rows through delta: `filter` each chunk before it is sent, then
    `acknowledged` or `abandoned` for each row sent."""

    def __init__(
        self, run: Run, channel: str, mode: Mode, points: tuple[int, int] = (0, 0)
    ) -> None:
        self.run = run
        self.mode: Mode = mode
        # The whole file's, every process's: checkpointed with its rows (points()). A row
        # sent counts its points (sent, and skipped: left out as held) once acknowledged,
        # before it settles: after a kill, a row counted and not checkpointed is read again,
        # counted again if sent again, or counted as skipped if the store holds its values
        # already (written before its checkpoint: deltastore.py's order), though Braze got
        # them once. A row left unsent (unchanged) counts at compare: it settles as soon as
        # filter returns, with no await between (Backlog.take).
        self.points_sent, self.points_skipped = points
        self.rows_unchanged = 0  # rows not sent at all
        self._rows: dict[int, Sent] = {}  # record index -> the row in flight
        self._first: dict[int, First] = {}  # record index -> the first-run row in flight
        self._generation = run.generation  # the workspace its rows in flight were sent to
        self._ahead: deltachunk.Lookup | None = None  # the next chunk's (look_up)
        self._sent_label = run.metrics.data_points.labels(channel, "sent")
        self._skipped_label = run.metrics.data_points.labels(channel, "skipped")
        self.skip = ChunkSkip(self)  # the prefilter: rows skipped before they are mapped
        self.raw_matches = 0  # the last chunk's rows the prefilter would have skipped

    async def filter(self, chunk: ChunkData) -> list[int]:
        """Leave out of `chunk` (in place) the values Braze holds from us; returns the record
        indexes of the rows left with nothing to send (settled without a request), with those
        the prefilter left unmapped (deltaskip.py)."""
        self.skip.taking(chunk)
        unchanged = await self._filter(chunk)
        # Again: a reload may have named another workspace while its records were read (the
        # rows it compared are dropped from delta's view by then; those skipped are not).
        self.skip.taking(chunk)
        return self.skip.filtered(chunk, unchanged)

    def unchanged_unmapped(self, rows: int, points: int) -> None:
        """Rows the prefilter skipped (deltaskip.py): unchanged, as filter would have found."""
        self.rows_unchanged += rows
        self.points_skipped += points
        self._skipped_label.inc(points)

    async def _filter(self, chunk: ChunkData) -> list[int]:
        self.raw_matches = 0
        users = chunk.users
        if not users:
            return []
        if chunk.deltas is None:  # not made beside the objects (a test, a tool)
            chunk.deltas = summaries(chunk.bodies)
        run, inflight = self.run, self.run.inflight
        ahead, self._ahead = self._ahead, None
        if ahead is None or ahead.chunk is not chunk:
            deltachunk.drop(inflight, ahead)
            ahead = self._started(chunk)
        keys, token = ahead.keys, ahead.token
        try:
            records = await ahead.records
            if self.disown_if_stale():  # read in the other workspace's store: none holds
                records = [None] * len(keys)
            now, max_age, mode = int(run.clock()), run.max_age_s, self.mode
            first = Merge.REBUILD if mode == "upsert" else None
            rows_, indexes, rows = chunk.deltas, chunk.indexes, self._rows
            if not any(records) and inflight.quiet(token, keys):  # the first run's chunk
                if first is not None and all_plain(rows_):  # its usual rows
                    self._first.update(zip(indexes, zip(keys, rows_, strict=True), strict=True))
                else:
                    none, all_points = repeat(None), repeat(ALL_POINTS)
                    states = zip(keys, repeat(first), none, rows_, all_points, repeat(0))
                    rows.update(zip(indexes, states, strict=True))
                inflight.sending_all(keys)
                return []
            base, sending = inflight.base, inflight.sending
            unsent: list[int] = []
            skipped_points = raw_matches = 0
            for pos, key in enumerate(keys):
                record, busy = base(token, key, records[pos])
                row = rows_[pos]
                found = header(record)
                if found is None or now - found[2] > max_age:  # nothing known, or too old
                    rows[indexes[pos]] = (key, first, None, row, ALL_POINTS, 0)
                    sending(key)
                    continue
                state: Sent
                if busy:  # its earlier row's outcome is unknown: sent whole
                    state = (key, Merge.INTO_LATEST, record, row, ALL_POINTS, 0)
                else:
                    if found[8] == row[WHOLE_AT:STATIC_AT] and not row[1] & COLLIDES:
                        # the usual row: unchanged since acknowledged (delta.held_whole)
                        unsent.append(pos)
                        skipped_points += row[6] + row[8] + (row[7] + row[9] << 8)  # n + m
                        raw_matches += found[7] == row[RAW_AT:WHOLE_AT] != NO_RAW
                        continue
                    if found[9] == row[STATIC_AT:HEADER_BYTES] and not row[1] & COLLIDES:
                        newest = newest_add(chunk, pos, key, row, record, found)
                        if newest is not None:  # the daily re-export's row (deltanewest.py)
                            rows[indexes[pos]] = newest  # (its points: counted once answered)
                            sending(key)
                            continue
                    decision = compare_row(row, record, now, max_age, mode, found=found)
                    if decision.send is Send.NOTHING:
                        unsent.append(pos)
                        skipped_points += decision.points_skipped
                        continue
                    if decision.send is Send.SOME:
                        obj = orjson.loads(chunk.bodies[pos])
                        skipped = decision.skipped_fields
                        if len(skipped) == row[COUNTS_AT] | row[COUNTS_AT + 1] << 8:
                            body = arrays_only(obj, decision.skipped_adds)
                        else:
                            body = rebuild(obj, skipped, decision.skipped_adds)
                        # orjson's bytes keep the 4 KB it wrote into, held until the row is
                        # sent: a copy of its length (a new execution id: 4 KB -> 100 B a row)
                        chunk.bodies[pos] = memoryview(body).tobytes()
                    merge = decision.remember.merge if decision.remember is not None else None
                    state = (key, merge, record, row, decision.points_sent, decision.points_skipped)
                rows[indexes[pos]] = state
                sending(key)
        finally:
            inflight.lookup_done(token)
        self.raw_matches = raw_matches
        self.points_skipped += skipped_points
        self._skipped_label.inc(skipped_points)
        if not unsent:
            return []
        self.rows_unchanged += len(unsent)
        return deltachunk.leave_out(chunk, unsent)

    def look_up(self, chunk: ChunkData) -> None:
        """Start reading the records of the users of the chunk `filter` compares next, while
        this one's rows are sent (deltachunk.py)."""
        ahead, self._ahead = self._ahead, None
        deltachunk.drop(self.run.inflight, ahead)
        if chunk.users:
            self._ahead = self._started(chunk)

    def _started(self, chunk: ChunkData) -> deltachunk.Lookup:
        keys = user_keys(chunk.users)
        self.disown_if_stale()
        return deltachunk.start(chunk, keys, self.run.inflight, self.run.lookup)

    def points(self) -> tuple[int, int]:
        """Data points (sent, skipped) so far, for the checkpoint."""
        return self.points_sent, self.points_skipped

    def held_bytes(self, chunk: ChunkData) -> int:
        """About what delta holds for the chunk's rows sent until they are answered (their
        summaries, the records they were compared with, the entries naming them), so that the
        job's bound on rows held counts it: a row whose object delta shrank to one new value
        holds more here than in its object."""
        deltas = chunk.deltas or ()
        return 2 * sum(map(len, deltas)) + _ENTRY_BYTES * len(chunk.indexes)

    def summary(self) -> str:
        """For the done line."""
        unmapped = self.skip.rows_unmapped
        return (
            f"; delta: {self.points_sent:,} data points sent, {self.points_skipped:,} skipped"
            f" ({self.rows_unchanged:,} {plural(self.rows_unchanged, 'row')} unchanged, not sent"
            + (f"; {unmapped:,} not even mapped)" if unmapped else ")")
        )

    def acknowledged(self, items: Sequence[Item]) -> asyncio.Future[None] | None:
        """Braze acknowledged these objects: remember their values. Returns the store's write
        (None: nothing to write): the rows' checkpoint must wait until it is done."""
        self.disown_if_stale()
        run, inflight = self.run, self.run.inflight
        now = int(run.clock())
        indexes = [item.index for item in items]
        firsts: list[First | None] = []
        if self._first:
            firsts = list(map(self._first.pop, indexes, repeat(None)))
            if firsts and None not in firsts:
                return self._first_acknowledged(cast("list[First]", firsts), now)
        answers, points, skipped = acknowledged_records(
            indexes, firsts, self._rows, inflight.latest, now
        )
        inflight.answered_all(answers)
        written = [(key, record) for key, record in answers if record is not None]
        self.points_sent += points
        self._sent_label.inc(points)
        if skipped:
            self.points_skipped += skipped
            self._skipped_label.inc(skipped)
        return run.remember(written) if written else None

    def _first_acknowledged(self, firsts: list[First], now: int) -> asyncio.Future[None]:
        """acknowledged() for first-run rows only: each one's record is its summary timed."""
        keys, records, points = first_records(firsts, now)
        self.run.inflight.acknowledged_all(keys, records)
        self.points_sent += points
        self._sent_label.inc(points)
        # Each user was looked up (this run's lookup, as the chunk's rows were compared):
        # marked then as written (deltaunwritten.held_marking), not again.
        return self.run.remember(list(zip(keys, records, strict=True)), marked=True)

    def abandoned(self, items: Sequence[Item]) -> None:
        """Rejected (locally or by Braze) or never sent: nothing remembered."""
        inflight = self.run.inflight
        for item in items:
            first = self._first.pop(item.index, None)
            state = self._rows.pop(item.index, None) if first is None else first
            if state is not None:
                inflight.answered(state[0], None)

    def finished(self, record_id: int, rel_path: str, channel: str) -> None:
        """The file reached a final state: its data points, for `status`."""
        if self.points_sent or self.points_skipped:
            entry = deltastats.FilePoints(
                record_id, rel_path, channel, self.points_sent, self.points_skipped, time.time()
            )
            self.run.file_finished(entry)

    def disown_if_stale(self) -> bool:
        """A reload named another Braze workspace since this file's rows in flight were
        compared: whatever they carry (or left out, as the old one held it) the new workspace
        may not hold, so none of it is remembered; they settle as sent, and their users are
        sent whole next time. True if so (the rows were dropped from delta's view)."""
        if self._generation == self.run.generation:
            return False
        self._generation = self.run.generation
        self._drop_rows()  # (what the prefilter holds stays: its rows are compared in order)
        return True

    def close(self) -> None:
        """The file ended (or was given up): rows still held were never answered."""
        self._drop_rows()
        self.skip.close()

    def _drop_rows(self) -> None:
        """Rows still held will never be answered (or not to the workspace they were sent to)."""
        inflight = self.run.inflight
        ahead, self._ahead = self._ahead, None
        deltachunk.drop(inflight, ahead)
        for state in self._rows.values():
            inflight.answered(state[0], None)
        for key, _ in self._first.values():
            inflight.answered(key, None)
        self._rows.clear()
        self._first.clear()
