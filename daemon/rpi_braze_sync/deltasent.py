"""Pure: a row delta sent, until Braze answers it (issue 16): its state, made when its chunk is
compared (deltafile.DeltaFile.filter), and its record, built once Braze acknowledged it
(DeltaFile.acknowledged, which hands the records to the store).

On the hot path: each function takes a chunk's or a batch's lists and loops once, with no
Python call per row beyond those the rows need.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import zip_longest
from operator import itemgetter
from typing import TYPE_CHECKING

import orjson

from .delta import Merge, Remember, build_record
from .deltanewest import newest_add_body, newest_add_only, newest_add_record
from .deltarecord import (
    COLLIDES,
    PLAIN,
    POINTS_AT,
    TAIL_AT,
    RecordHeader,
    points_of,
    timed_prefix,
)

if TYPE_CHECKING:
    from .chunks import ChunkData

# A row sent, until its answer: (user key, how to remember it once acknowledged (None: never),
# the record it was compared with, its summary, its data points sent or ALL_POINTS: all of the
# summary's, its data points left out as held). A plain tuple: one is made per row sent. Both
# counts wait here for the answer: a row dropped unsent, or unanswered at a stop, is read
# again from the checkpoint (DeltaFile.points()) and compared again, so counting what it left
# out at compare counted it twice.
Sent = tuple[bytes, Merge | None, bytes | None, bytes, int, int]
ALL_POINTS = -1
# A first-run row sent (upsert, nothing known of its user, none of its rows in flight, its
# summary PLAIN): (user key, summary). Once acknowledged its record is its summary timed, so
# a batch of them is settled in bulk (first_records), with no Python per row.
First = tuple[bytes, bytes]
# Written for a row sent whole and never remembered (its paths' fingerprints collide): no
# header, so nothing known of the user. His older record must not stay: a later row going back
# to its values would be skipped, while Braze holds the colliding row's.
FORGOTTEN = b""
_KEY, _SUMMARY, _FLAGS = itemgetter(0), itemgetter(1), itemgetter(1)
_TAIL = itemgetter(slice(TAIL_AT, None))
_POINTS_LOW, _POINTS_HIGH = itemgetter(POINTS_AT), itemgetter(POINTS_AT + 1)


def all_plain(summaries_: list[bytes]) -> bool:
    """Whether every summary is PLAIN (its own record once timed), none colliding."""
    return bytes(map(_FLAGS, summaries_)).count(PLAIN) == len(summaries_)


def newest_add(
    chunk: ChunkData, pos: int, key: bytes, row: bytes, record: bytes | None, found: RecordHeader
) -> Sent | None:
    """The row's state (its data points skipped in it) when only its last array value added
    is new (its fields held), its object cut down to that value; None: compare it in full
    (compare_row)."""
    assert record is not None  # its header was read
    skipped = newest_add_only(row, record, found)
    if skipped is None:
        return None
    body = newest_add_body(orjson.loads(chunk.bodies[pos]))
    if body is None:
        return None
    # orjson's bytes keep the 4 KB it wrote into, held until the row is sent: a copy of
    # its length (a new execution id: 4 KB -> 100 B a row)
    chunk.bodies[pos] = memoryview(body).tobytes()
    return (key, Merge.NEWEST_ADD, record, row, points_of(row) - skipped, skipped)


def first_records(firsts: list[First], now: int) -> tuple[list[bytes], list[bytes], int]:
    """First-run rows acknowledged: their keys, their records (each one's summary timed) and
    their data points sent."""
    keys = list(map(_KEY, firsts))
    summaries_ = list(map(_SUMMARY, firsts))
    records = list(map(timed_prefix(now).__add__, map(_TAIL, summaries_)))
    points = sum(map(_POINTS_LOW, summaries_)) + (sum(map(_POINTS_HIGH, summaries_)) << 8)
    return keys, records, points


def acknowledged_records(
    indexes: list[int],
    firsts: list[First | None],
    rows: dict[int, Sent],
    latest: Callable[[bytes, bytes | None], bytes | None],
    now: int,
) -> tuple[list[tuple[bytes, bytes | None]], int, int]:
    """Rows acknowledged (their record indexes; `firsts`: the first-run row of each, or
    None, or empty when there are none): (user key, its record to write or None: none) for
    each row in flight, taken out of `rows`, and their data points sent and skipped (left
    out as held). `latest`: the user's newest record (deltaflight.InFlight.latest)."""
    answers: list[tuple[bytes, bytes | None]] = []
    points = skipped = 0
    rebuild_, newest_ = Merge.REBUILD, Merge.NEWEST_ADD
    timed_ = timed_prefix(now)  # + a PLAIN summary's tail: its record
    for index, first in zip_longest(indexes, firsts):
        state = rows.pop(index, None) if first is None else _first_sent(first)
        if state is None:
            continue
        key, merge, base, row, sent, left_out = state
        points += row[POINTS_AT] | row[POINTS_AT + 1] << 8 if sent < 0 else sent
        skipped += left_out
        record: bytes | None
        if merge is rebuild_ and row[1] == PLAIN:  # the first run's usual row
            record = timed_ + row[TAIL_AT:]
        elif row[1] & COLLIDES:
            record = FORGOTTEN
        elif merge is None:
            record = None
        elif merge is newest_:  # as build_record would, in bytes (deltanewest.py)
            last = latest(key, base)
            record = newest_add_record(row, last)
            if record is None:
                record = build_record(Remember(merge, row), last, now)
        else:
            record = build_record(Remember(merge, row), latest(key, base), now)
        answers.append((key, record))
    return answers, points, skipped


def _first_sent(first: First) -> Sent:
    """A first-run row's state as any row's (acknowledged with rows of other kinds)."""
    return (first[0], Merge.REBUILD, None, first[1], ALL_POINTS, 0)
