"""Pure: the daily re-export's row, as bytes (issue 16). The same audience exported again gets a
new ChannelExecutionID, which the mapping adds to an array: the row is its user's last one but
for that one value, its last array value added. It is the commonest row with something to
send, so it is decided, its object cut down to that value and its record merged with a few
bytes operations, where delta.compare_row would compare each value added, deltabody.arrays_only
walk every array and delta.build_record unpack the record and pack it again.

Each function answers None when the row (or the record it meets) is not of that form; the
caller then takes the general path, whose results these equal byte for byte
(tests/unit/test_deltanewest.py checks it on generated objects and records).
"""

from __future__ import annotations

import struct
from operator import itemgetter
from typing import Any

import orjson

from .deltabody import CONTROL_KEYS, is_array_ops
from .deltarecord import (
    COUNTS,
    COUNTS_AT,
    HEADER_BYTES,
    MAX_ADDS,
    RecordHeader,
    header,
)

_dumps = orjson.dumps
ADDS_COUNT_AT = COUNTS_AT + 2  # in a record's header (deltarecord.HEADER)
_ADDS_COUNT = [struct.pack("<H", count) for count in range(MAX_ADDS + 1)]
# values added, 8 bytes each, split in C: _SPLIT[k] for k of them (k >= 2)
_SPLIT = {k: itemgetter(*(slice(8 * i, 8 * i + 8) for i in range(k))) for k in range(2, MAX_ADDS)}


def newest_add_only(row: bytes, record: bytes, found: RecordHeader) -> int | None:
    """The row's data points Braze holds, when only its last array value added is new: its
    fields are those the record was last built from (its `static` matched: the caller
    checks), it removes no array value, its other values added are the record's last ones
    but one, in order, and the record lacks its last. As compare_row would find them (its
    skipped fields: all; its skipped adds: all but the last), with no Python per value."""
    n, m, r, points = COUNTS.unpack_from(row, COUNTS_AT)
    if r or not m or found[4] < m:
        return None
    adds_at = HEADER_BYTES + 12 * n
    end = len(record)
    last_at = adds_at + 8 * m - 8
    if record[end - 8 * m : end - 8] != row[adds_at:last_at]:
        return None
    if record.find(row[last_at : last_at + 8], HEADER_BYTES + 12 * found[3]) >= 0:
        return None  # held somewhere (or bytes straddling two values): compared in full
    skipped = n + m - 1
    return skipped if 0 < skipped < points else None  # else sent whole, or not at all


def newest_add_body(obj: dict[str, Any]) -> bytes | None:
    """deltabody.arrays_only of an object that removes no array value (newest_add_only read
    it in its summary), all its values added skipped but the last: its identifier, that value
    in its array, the control keys. Read from the end, where the mapping puts its arrays,
    nested objects and control keys; None when a control key comes before that array."""
    first = next(iter(obj.items()), None)
    if first is None:
        return None
    controls: list[tuple[str, Any]] = []  # after the newest array, the last first
    for name, value in reversed(obj.items()):
        if type(value) is dict:
            if is_array_ops(value) and value.get("add"):
                break
        elif name in CONTROL_KEYS:
            controls.append((name, value))
    else:
        return None
    if name == first[0] or len(controls) != sum(map(obj.__contains__, CONTROL_KEYS)):
        return None
    out = {first[0]: first[1], name: {"add": value["add"][-1:]}}
    out.update(reversed(controls))
    return _dumps(out)


def newest_add_record(row: bytes, latest: bytes | None) -> bytes | None:
    """delta.build_record of a row newest_add_only decided (Merge.NEWEST_ADD) over the user's
    latest record, when that record still holds the row's fields and its other values added
    last: the row's header (the record's time), the record's fields and older values added,
    then the row's values added. No record unpacked or packed: slices joined."""
    found = header(latest)
    if found is None:
        return None
    assert latest is not None
    n, m, r, _ = COUNTS.unpack_from(row, COUNTS_AT)
    held_n, held_m = found[3], found[4]
    if r or not m or m >= MAX_ADDS or held_m < m or held_m > MAX_ADDS or n > held_n:
        return None
    row_adds_at = HEADER_BYTES + 12 * n
    if held_n == n:  # the same fields, the row's values: paths and values as they are
        if latest[HEADER_BYTES:row_adds_at] != row[HEADER_BYTES:row_adds_at]:
            return None
    else:  # the row's fields first, then others the record keeps (build_record's usual row)
        values_at = HEADER_BYTES + 4 * held_n
        if not latest.startswith(row[HEADER_BYTES : HEADER_BYTES + 4 * n], HEADER_BYTES):
            return None
        if latest[values_at : values_at + 8 * n] != row[HEADER_BYTES + 4 * n : row_adds_at]:
            return None
    adds_at = HEADER_BYTES + 12 * held_n
    end = len(latest)
    last_at = row_adds_at + 8 * m - 8
    others = row[row_adds_at:last_at]
    if latest[end - 8 * m : end - 8] != others:
        return None
    if latest.find(row[last_at : last_at + 8], adds_at) >= 0:
        return None
    if m > 1:  # each once in the row, none among the older ones: delta.without takes the last
        older = latest[adds_at : end - 8 * m]
        split = _SPLIT[m - 1](others) if m > 2 else (others,)
        if len(set(split)) < m - 1 or any(map(older.__contains__, split)):
            return None
    # MAX_ADDS kept: one more than held drops the oldest
    start = adds_at + 8 if held_m == MAX_ADDS else adds_at
    return b"".join(
        (
            latest[:ADDS_COUNT_AT],  # version, flags, time, fields
            _ADDS_COUNT[min(held_m + 1, MAX_ADDS)],
            row[ADDS_COUNT_AT + 2 : HEADER_BYTES],  # removes (none), points, whole, static
            latest[HEADER_BYTES:adds_at],
            latest[start : end - 8 * m],
            latest[end - 8 : end],
            row[row_adds_at : last_at + 8],
        )
    )
