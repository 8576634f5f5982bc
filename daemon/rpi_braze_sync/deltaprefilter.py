"""Pure: delta's prefilter (issue 16): which rows of a chunk need not be mapped at all, decided
from their source rows before any is mapped.

A second run of unchanged rows used to map every row in the mapping process, only for delta to
find each one unchanged. Now a row's record also carries `raw` (deltarecord.RAW_AT): the
fingerprint of the source row it was built from, seeded by the plan it was mapped with. Given a
chunk's user keys and raw fingerprints (phase 1, in the mapping process), the daemon skips each
row whose user's record carries the same `raw`, decided exactly as DeltaFile.filter would have
decided the mapped row: mapping is a function of the row's cells, the plan, the header, the
path values the mapping uses and the code (the daemon's, its libraries', Python's), so the same
raw fingerprint gives the same object, whose `whole` is the record's (a record is always built
with the `whole` and `raw` of one row). Only the other rows are mapped (phase 2) and compared
as before.

A raw fingerprint is left out of the summary (NO_RAW: mapped and compared every time) where
the full comparison would not just skip the same row again, or where mapping does more than
make the object:
- the row dropped a field (the dropped-fields file lists it again on every run);
- it removes array values (always sent: never compared), or its paths collide;
- its cells hold the packing separator (no exact packed form to fingerprint).
No value recipe reads the clock or anything but the cell, the plan and the path (transforms.py,
parsers.py): a recipe that did would have to leave its plan's rows NO_RAW.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable, Mapping, Sequence
from itertools import compress, repeat
from operator import itemgetter
from typing import Any, NamedTuple

import xxhash

from .deltarecord import (
    COLLIDES,
    COUNTS_AT,
    NO_RAW,
    RAW_AT,
    RECORD_VERSION,
    WHOLE_AT,
    header,
)

MAP = -1  # skip_points: the row must be mapped (and compared in full)
_NOT_NO_RAW = b"\x01" + bytes(7)  # a fingerprint that happens to be NO_RAW
_RAW_OF = itemgetter(slice(RAW_AT, WHOLE_AT))


def _canonical(value: Any) -> Any:
    """A plan as nested tuples and text, the same in every process (a frozenset's order, or
    pickle's bytes, follow the interpreter's hash seed)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = dataclasses.fields(value)
        items = tuple((f.name, _canonical(getattr(value, f.name))) for f in fields)
        return (type(value).__name__, items)
    if isinstance(value, enum.Enum):
        return repr(value)
    if isinstance(value, (set, frozenset)):
        return ("set", tuple(sorted(repr(_canonical(v)) for v in value)))
    if isinstance(value, Mapping):
        return ("map", tuple(sorted((repr(k), repr(_canonical(v))) for k, v in value.items())))
    if isinstance(value, (list, tuple)):
        return tuple(_canonical(v) for v in value)
    return repr(value)


def plan_seed(
    plan: Any,
    header_: Sequence[str],
    path_values: Mapping[str, str],
    used: frozenset[str],
    version: str = "",
) -> int:
    """The seed of a file's raw fingerprints: its plan (how it is read and mapped), its header
    (a column moved maps other cells), the path values its mapping uses, the versions of the
    daemon and of the libraries its mapping uses (rpi_braze_sync.mapping_version: a mapping
    that changed with them) and the record's."""
    paths = sorted((k, v) for k, v in path_values.items() if k in used)
    text = repr((RECORD_VERSION, version, _canonical(plan), tuple(header_), paths))
    return xxhash.xxh3_64_intdigest(text.encode("utf-8"))


def raw_fps(packed: Sequence[str | list[str]], seed: int) -> list[bytes]:
    """Each packed source row's fingerprint (batching.pack_rows: one exact string a row, or
    a list where a cell holds the separator: NO_RAW). In C for the usual chunk."""
    digest = xxhash.xxh3_64_digest
    if all(map(str.__instancecheck__, packed)):
        try:
            fps = list(map(digest, map(str.encode, packed), repeat(seed)))  # type: ignore[arg-type]
        except UnicodeEncodeError:  # a lone surrogate: row by row below
            pass
        else:
            if NO_RAW not in fps:
                return fps
    out = []
    for row in packed:
        if isinstance(row, str):
            fp = digest(row.encode("utf-8", "surrogatepass"), seed)
            out.append(fp if fp != NO_RAW else _NOT_NO_RAW)
        else:
            out.append(NO_RAW)
    return out


def keepable(summary: bytes) -> bool:
    """Whether a mapped row's summary may carry its raw fingerprint (see the module's doc;
    the caller checks dropped fields)."""
    return not summary[1] & COLLIDES and summary[COUNTS_AT + 4 : COUNTS_AT + 6] == b"\0\0"


def with_raw(summary: bytes, raw: bytes) -> bytes:
    """The summary naming its source row."""
    return summary[:RAW_AT] + raw + summary[WHOLE_AT:]


def skip_points(record: bytes | None, raw: bytes, busy: bool, now_s: int, max_age_s: int) -> int:
    """The row's data points (all held by Braze) when it needs no mapping, else MAP.

    As DeltaFile.filter decides the mapped row: `record` is the one it would compare with
    (deltaflight.InFlight.base: a record written since the lookup began wins), and `busy`
    sends the row whole. Stale, unreadable or absent records send it, and a row that was not
    the one the record was built from (another `raw`) is compared in full."""
    if busy or record is None or raw == NO_RAW:
        return MAP
    found = header(record)
    if found is None or found[7] != raw or now_s - found[2] > max_age_s:
        return MAP
    return found[6]


class Decided(NamedTuple):
    mask: bytes  # one byte a row: 1 map it, 0 skip it
    skipped: list[int]  # positions of the rows skipped
    points: int  # their data points (all skipped)
    mapped: list[bytes]  # the users of the rows to map, in order (pending until compared)


def decide(
    keys: Sequence[bytes],
    raws: Sequence[bytes],
    records: Sequence[bytes | None],
    base: Callable[[bytes, bytes | None], tuple[bytes | None, bool]] | None,
    pending: Mapping[bytes, int],
    now_s: int,
    max_age_s: int,
) -> Decided:
    """A chunk's rows: skipped (skip_points) or mapped. A row whose user has an earlier row of
    the file still to be compared (`pending`: mapped in an earlier chunk, or earlier in this
    one) is mapped too: that row may be sent, and this one, which comes after it, must then be
    compared after it (sent whole while that one is in flight), as it would be without the
    prefilter. `base(key, looked_up)`: InFlight.base for the chunk's lookup; None when no
    hazard can apply (InFlight.quiet, no user pending, none twice): then each row's record is
    the one looked up, and nothing is busy (the usual chunk, with no Python call per row)."""
    if base is None:
        return _decide_quiet(keys, raws, records, now_s, max_age_s)
    mask = bytearray(len(keys))
    skipped: list[int] = []
    mapped: list[bytes] = []
    later: set[bytes] = set()
    points = 0
    for pos, key in enumerate(keys):
        if key not in pending and key not in later:
            record, busy = base(key, records[pos])
            found = skip_points(record, raws[pos], busy, now_s, max_age_s)
            if found != MAP:
                skipped.append(pos)
                points += found
                continue
        mask[pos] = 1
        mapped.append(key)
        later.add(key)
    return Decided(bytes(mask), skipped, points, mapped)


def _decide_quiet(
    keys: Sequence[bytes],
    raws: Sequence[bytes],
    records: Sequence[bytes | None],
    now_s: int,
    max_age_s: int,
) -> Decided:
    """decide() where no row is busy nor pending and each record is the one looked up:
    skip_points, inlined."""
    mask = bytearray(b"\x01") * len(keys)
    skipped: list[int] = []
    points = 0
    raw_of = _RAW_OF
    for pos, record in enumerate(records):
        if record is None:
            continue
        raw = raws[pos]
        if raw_of(record) == raw != NO_RAW:
            found = header(record)
            if found is not None and now_s - found[2] <= max_age_s:
                mask[pos] = 0
                skipped.append(pos)
                points += found[6]
    if not skipped:
        return Decided(bytes(mask), skipped, 0, list(keys))
    mapped = list(compress(keys, mask))
    return Decided(bytes(mask), skipped, points, mapped)
