"""Pure: which of a row's values Braze already holds from this daemon (issue 16, delta), and
what to remember once Braze acknowledged it. A row arrives summarised (deltarecord.summarize:
fingerprints of its values, computed where its object was built); it is compared with its
user's record, and merged into it, as bytes.

Time is per record: `refreshed_at` is when all its values were last sent together; once that
is max_age old the whole row is sent again and the record starts over. So no value is skipped
that was last sent longer ago than max_age (one changed since is resent a little early).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from enum import Enum
from typing import Literal, NamedTuple

from .deltarecord import (
    COLLIDES,
    COUNTS,
    COUNTS_AT,
    HEADER_BYTES,
    MAX_ADDS,
    PLAIN,
    RAW_AT,
    STATIC_AT,
    WHOLE_AT,
    RecordHeader,
    array_fps,
    fresh,
    header,
    held,
    items,
    pack_record,
    points_of,
    refreshed_at,
    summarize,
    timed,
    user_key,
    value_fp,
    without,
)

__all__ = [
    "MAX_ADDS",
    "ByValues",
    "Decision",
    "Merge",
    "Mode",
    "Remember",
    "Send",
    "array_fps",
    "build_record",
    "compare",
    "compare_row",
    "fresh",
    "held_whole",
    "parse_record",
    "refreshed_at",
    "summary_of",
    "user_key",
    "whole_fp",
]

Mode = Literal["upsert", "append"]
_SEPARATOR = b"\x1f"  # never in a JSON encoding (control characters are escaped)


class Send(Enum):
    ALL = "all"  # nothing known (or too old): the object as the mapping made it
    SOME = "some"  # leave out skipped_fields and skipped_adds
    NOTHING = "nothing"  # every value is held by Braze: do not send the object at all


class Merge(Enum):
    REBUILD = "rebuild"  # the row alone, every value sent now
    INTO_LATEST = "into latest"  # the row over the user's latest record, its time kept
    # INTO_LATEST for a row whose only new value is its last added (deltanewest.py)
    NEWEST_ADD = "newest add"


class Remember(NamedTuple):
    """What to write once Braze acknowledged the row (build_record does it)."""

    merge: Merge
    row: bytes  # the row's summary


class Decision(NamedTuple):
    """What to do with one row. NamedTuples: one is made per row compared."""

    send: Send
    skipped_fields: tuple[int, ...]  # indexes of the row's fields Braze holds (Send.SOME)
    skipped_adds: tuple[int, ...]  # indexes of the row's array values added, likewise
    points_sent: int  # Braze data points: one per field, nested key, array value added/removed
    points_skipped: int
    remember: Remember | None  # None: write nothing, even once acknowledged


class Record(NamedTuple):
    """A record unpacked: `paths` (4 bytes each) and `values` (8 bytes each) pair up; `adds`
    are array values' fingerprints (8 bytes each); `whole` and `static` name the row it was
    last built from, which had `points` data points."""

    refreshed_at: int
    paths: bytes
    values: bytes
    adds: bytes
    points: int
    whole: bytes
    static: bytes


def parse_record(record: bytes | None) -> Record | None:
    """None for a record this version cannot read (then the row is sent and remembered anew)."""
    found = header(record)
    if found is None:
        return None
    assert record is not None
    _, _, since, n, _, _, points, _, whole, static = found
    values_at = HEADER_BYTES + 4 * n
    adds_at = values_at + 8 * n
    return Record(
        since,
        record[HEADER_BYTES:values_at],
        record[values_at:adds_at],
        record[adds_at:],
        points,
        whole,
        static,
    )


def held_whole(row: bytes, record: bytes | None, now_s: int, max_age_s: int) -> int | None:
    """The usual row: the one the user's record was last built from, unchanged, not too old.
    Its data points (all held by Braze), or None when the row must be compared (or sent)."""
    if record is None or record[WHOLE_AT:STATIC_AT] != row[WHOLE_AT:STATIC_AT]:
        return None
    if not fresh(record, now_s, max_age_s) or row[1] & COLLIDES:
        return None
    n, m, _, _ = COUNTS.unpack_from(row, COUNTS_AT)
    return int(n + m)


def _everything(row: bytes, merge: Merge | None) -> Decision:
    points = points_of(row)
    remember = None if merge is None or row[1] & COLLIDES else Remember(merge, row)
    return Decision(Send.ALL, (), (), points, 0, remember)


def compare_row(
    row: bytes,
    record: bytes | None,
    now_s: int,
    max_age_s: int,
    mode: Mode,
    busy: bool = False,
    found: RecordHeader | None = None,
) -> Decision:
    """Which of the row's values Braze already holds from us, given the user's record.

    `busy`: another row of this user is in flight (sent, not answered): its outcome is
    unknown, so this row is sent whole (deltaflight.py tracks it). Append rows are
    remembered only over a fresh record: a record exists only for users an acknowledged
    upsert created, and Braze silently ignores update-only rows for users it lacks. Array
    values removed are always sent (never compared): once acknowledged they are no longer
    remembered as added. `found`: the record's header, when the caller read it already.
    """
    if found is None:
        found = header(record)
    if found is None or now_s - found[2] > max_age_s:
        return _everything(row, Merge.REBUILD if mode == "upsert" else None)
    if row[1] & COLLIDES:
        return _everything(row, None)
    if busy:
        return _everything(row, Merge.INTO_LATEST)
    assert record is not None  # a header was read from it
    n, m, _, points = COUNTS.unpack_from(row, COUNTS_AT)
    held_n, held_m = found[3], found[4]
    if found[8] == row[WHOLE_AT:STATIC_AT]:  # the usual row, unchanged (held_whole, sooner)
        return Decision(Send.NOTHING, _numbers(n), _numbers(m), 0, n + m, None)
    skipped: tuple[int, ...]
    if found[9] == row[STATIC_AT:HEADER_BYTES]:  # its fields unchanged: only array values new
        skipped = _numbers(n)
    else:
        skipped = _held_fields(row, n, record, held_n)
    skipped_adds: tuple[int, ...] = ()
    if m and held_m:
        at = HEADER_BYTES + 12 * n
        row_adds = row[at : at + 8 * m]
        held_adds = record[HEADER_BYTES + 12 * held_n :]
        if m <= held_m and held_adds.endswith(row_adds):  # the usual row: its adds last
            skipped_adds = _numbers(m)
        else:
            skipped_adds = tuple(
                i for i in range(m) if held(held_adds, row_adds[8 * i : 8 * i + 8])
            )
    points_skipped = len(skipped) + len(skipped_adds)
    points_sent = points - points_skipped
    if points_sent <= 0:
        return Decision(Send.NOTHING, skipped, skipped_adds, 0, points_skipped, None)
    send = Send.SOME if points_skipped else Send.ALL
    remember = Remember(Merge.INTO_LATEST, row)
    return Decision(send, skipped, skipped_adds, points_sent, points_skipped, remember)


_NUMBERS = [tuple(range(n)) for n in range(64)]


def _numbers(n: int) -> tuple[int, ...]:
    """tuple(range(n)), made once for the usual sizes."""
    return _NUMBERS[n] if n < 64 else tuple(range(n))


def _held_fields(row: bytes, n: int, record: bytes, held_n: int) -> tuple[int, ...]:
    """Indexes of the row's fields whose value the record holds."""
    shape = row[HEADER_BYTES : HEADER_BYTES + 4 * n]
    values = row[HEADER_BYTES + 4 * n : HEADER_BYTES + 12 * n]
    held_values = record[HEADER_BYTES + 4 * held_n : HEADER_BYTES + 12 * held_n]
    if record.startswith(shape, HEADER_BYTES):  # the same fields as last time, in order
        return tuple(
            i for i in range(n) if held_values[8 * i : 8 * i + 8] == values[8 * i : 8 * i + 8]
        )
    held_paths = items(record[HEADER_BYTES : HEADER_BYTES + 4 * held_n], 4)
    by_path = dict(zip(held_paths, items(held_values, 8), strict=True))
    pairs = zip(items(shape, 4), items(values, 8), strict=True)
    return tuple(i for i, (path, value) in enumerate(pairs) if by_path.get(path) == value)


def build_record(remember: Remember, latest: bytes | None, now_s: int) -> bytes | None:
    """The record to write once Braze acknowledged the row, or None to write nothing.

    `latest` is the user's newest record: the one compared with, or one written since by
    another row of the user (deltaflight.InFlight.latest). Fields the row does not carry stay
    remembered: Braze keeps a standard field the row leaves empty, and a nested key the row
    lacks (`_merge_objects`), so they are still held until the record is refreshed.
    """
    row = remember.row
    flags = row[1]
    if flags & COLLIDES:
        return None
    if remember.merge is Merge.REBUILD and flags & PLAIN:
        return timed(row, now_s)
    n, m, r, points = COUNTS.unpack_from(row, COUNTS_AT)
    fields_at, adds_at = HEADER_BYTES, HEADER_BYTES + 12 * n
    shape, values = row[fields_at : fields_at + 4 * n], row[fields_at + 4 * n : adds_at]
    add_fps = items(row[adds_at : adds_at + 8 * m], 8)
    row_adds = b"".join(dict.fromkeys(add_fps))
    whole, static = row[WHOLE_AT:STATIC_AT], row[STATIC_AT:HEADER_BYTES]
    raw = row[RAW_AT:WHOLE_AT]  # the record names the source row it was built from
    if remember.merge is Merge.REBUILD:
        adds = without(row_adds, items(row[adds_at + 8 * m :], 8))[-8 * MAX_ADDS :]
        return pack_record(now_s, shape, values, adds, points, whole, static, raw)
    base = parse_record(latest)
    if base is None:  # forgotten meanwhile: nothing proves the skipped values are held
        return None
    if base.paths.startswith(shape):  # the usual row: the same fields first, then the rest
        paths, values = base.paths, values + base.values[8 * n :]
    else:
        paths, values = _fields_over(shape, values, base)
    held_adds = base.adds
    if r:  # removed: no longer held (a later add is sent)
        held_adds = without(held_adds, items(row[adds_at + 8 * m :], 8))
    if not held_adds.endswith(row_adds):  # the row's values move to the newest end
        row_adds = (without(held_adds, add_fps) + row_adds)[-8 * MAX_ADDS :]
    else:
        row_adds = held_adds
    return pack_record(base.refreshed_at, paths, values, row_adds, points, whole, static, raw)


def _fields_over(shape: bytes, values: bytes, base: Record) -> tuple[bytes, bytes]:
    """The row's fields, then those of `base` the row lacks (still held by Braze)."""
    row_paths = set(items(shape, 4))
    paths, all_values = [shape], [values]
    for path, value in zip(items(base.paths, 4), items(base.values, 8), strict=True):
        if path not in row_paths:
            paths.append(path)
            all_values.append(value)
    return b"".join(paths), b"".join(all_values)


# --- by values: for callers that hold a row's values rather than its summary ------------------


def whole_fp(
    fields: Mapping[str, bytes],
    adds: Sequence[tuple[str, bytes]],
    removes: Sequence[tuple[str, bytes]] = (),
) -> bytes:
    """A row's fingerprint from its values, for callers that have no object bytes."""
    parts = [b"%s\x1e%s" % (p.encode(), e) for p, e in fields.items()]
    parts += [b"%s\x1d%s" % (p.encode(), e) for p, e in adds]
    parts += [b"%s\x1c%s" % (p.encode(), e) for p, e in removes]
    return value_fp(_SEPARATOR.join(parts))


def summary_of(
    fields: Mapping[str, bytes],
    adds: Sequence[tuple[str, bytes]],
    removes: Sequence[tuple[str, bytes]] = (),
    whole: bytes | None = None,
) -> bytes:
    if whole is None:
        whole = whole_fp(fields, adds, removes)
    return summarize(list(fields), list(fields.values()), adds, removes, whole)


class ByValues(NamedTuple):
    """A Decision whose skipped fields are named by their paths."""

    send: Send
    skipped_fields: tuple[str, ...]
    skipped_adds: tuple[int, ...]
    points_sent: int
    points_skipped: int
    remember: Remember | None


def compare(
    fields: Mapping[str, bytes],
    adds: Sequence[tuple[str, bytes]],
    record: bytes | None,
    now_s: int,
    max_age_s: int,
    mode: Mode,
    busy: bool = False,
    whole: bytes | None = None,
    removes: Sequence[tuple[str, bytes]] = (),
) -> ByValues:
    """compare_row for a row given by its values; skipped fields are named by their paths."""
    d = compare_row(summary_of(fields, adds, removes, whole), record, now_s, max_age_s, mode, busy)
    paths = list(fields)
    named = tuple(paths[i] for i in d.skipped_fields)
    return ByValues(d.send, named, d.skipped_adds, d.points_sent, d.points_skipped, d.remember)
