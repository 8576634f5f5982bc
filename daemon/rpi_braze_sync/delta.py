"""Pure: which of a row's values Braze already holds from this daemon (issue 16, delta), and
what to remember once Braze acknowledged it: one record of fingerprints per user, packed here,
kept by deltastore.py.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping, Sequence
from enum import Enum
from typing import Literal, NamedTuple

import xxhash

# A row: its fields (standard fields and nested keys at their full path, each with its value's
# exact JSON encoding as sent) and its array values added (array path, encoding). Fingerprints
# are XXH3, specified and the same on every platform, process and version (unlike hash()):
# 64 bits per value and per whole row, 32 per path, 128 per user key. The whole row's
# fingerprint (the caller passes its object's bytes' one: deltabody.py) decides the usual row,
# unchanged since it was last acknowledged, without parsing it (held_whole). Time is per
# record: `refreshed_at` is when all its values were last sent together; once that is max_age
# old the whole row is sent again and the record starts over. So no value is skipped that was
# last sent longer ago than max_age (one changed since is resent a little early, with the rest).
RECORD_VERSION = 2
# version, flags (none yet), refreshed_at, fields, adds, data points of the row last written
# (the one `whole` names), whole
_HEADER = struct.Struct("<BBIHHH8s")
HEADER_BYTES = _HEADER.size
# Flags. RAW: the record holds the object as sent instead of fingerprints (no field, no add):
# a user's first acknowledged row is remembered so, without reading the object (the first run
# costs a copy, not a parse); the first comparison that needs its values expands it
# (deltabody.expand). Unchanged rows never need them: `whole` decides.
RAW = 1
# Array values remembered per user, the most recently sent or seen kept: values seen run after
# run (offers, audiences) stay, ids that never recur (channel execution ids) age out.
MAX_ADDS = 16
_SEPARATOR = b"\x1f"  # never in a JSON encoding (control characters are escaped)

_value_fp = xxhash.xxh3_64_digest
_add_fp = xxhash.xxh3_64_digest  # seeded with the array path's fingerprint
_user_digest = xxhash.xxh3_128_digest

Mode = Literal["upsert", "append"]


def user_key(user: str) -> bytes:
    """The store's key for a user (the mapping's user identity, e.g. an external_id)."""
    return _user_digest(user.encode("utf-8"))


def whole_fp(fields: Mapping[str, bytes], adds: Sequence[tuple[str, bytes]]) -> bytes:
    """A row's fingerprint from its values, for callers that have no object bytes."""
    parts = [b"%s\x1e%s" % (p.encode(), e) for p, e in fields.items()]
    parts += [b"%s\x1d%s" % (p.encode(), e) for p, e in adds]
    return _value_fp(_SEPARATOR.join(parts))


# --- fingerprints of paths, cached: a mapping has few paths, a file few field sets ----------

_SHAPES_CACHED = 4096  # field sets (which cells were empty); cleared when full
_path_fps: dict[str, bytes] = {}
_add_seeds: dict[str, int] = {}
_shapes: dict[tuple[str, ...], bytes | None] = {}


def _path_fp(path: str) -> bytes:
    fp = _path_fps.get(path)
    if fp is None:
        fp = _path_fps[path] = xxhash.xxh3_64_digest(path.encode("utf-8"))[:4]
    return fp


def _shape(paths: tuple[str, ...]) -> bytes | None:
    """The paths' fingerprints, 4 bytes each; None if two collide (1 in 4 billion a pair): such
    a row is then sent whole and not remembered, rather than compared wrongly."""
    try:
        return _shapes[paths]
    except KeyError:
        pass
    fps = list(map(_path_fp, paths))
    if len(_shapes) >= _SHAPES_CACHED:
        _shapes.clear()
    shape = _shapes[paths] = b"".join(fps) if len(set(fps)) == len(fps) else None
    return shape


def _adds_fps(adds: Sequence[tuple[str, bytes]]) -> list[bytes]:
    seeds = _add_seeds
    out = []
    for path, encoding in adds:
        seed = seeds.get(path)
        if seed is None:
            seed = seeds[path] = xxhash.xxh3_64_intdigest(path.encode("utf-8"))
        out.append(_add_fp(encoding, seed))
    return out


def _items(section: bytes, width: int) -> list[bytes]:
    return [section[i : i + width] for i in range(0, len(section), width)]


def _held(section: bytes, fp: bytes) -> bool:
    """Whether `fp` is one of the 8-byte items of `section` (not bytes straddling two)."""
    at = section.find(fp)
    while at > 0 and at % 8:
        at = section.find(fp, at + 1)
    return at >= 0


# --- records --------------------------------------------------------------------------------


class Record(NamedTuple):
    """A record unpacked: `paths` (4 bytes each) and `values` (8 bytes each) pair up; `adds`
    are (array path, value) fingerprints of 8 bytes; `whole` names the row the record was
    last built from, which had `points` data points."""

    refreshed_at: int
    paths: bytes
    values: bytes
    adds: bytes
    points: int
    whole: bytes


def parse_record(record: bytes) -> Record | None:
    """None for a record this version cannot read (then the row is sent and remembered anew),
    or a RAW one (expand it first)."""
    header = _header(record)
    if header is None or header[1] & RAW:
        return None
    _, _, refreshed_at, n, _m, points, whole = header
    values_at = HEADER_BYTES + 4 * n
    adds_at = values_at + 8 * n
    return Record(
        refreshed_at,
        record[HEADER_BYTES:values_at],
        record[values_at:adds_at],
        record[adds_at:],
        points,
        whole,
    )


def _header(record: bytes | None) -> tuple[int, int, int, int, int, int, bytes] | None:
    """The record's header, if this version can read the record."""
    if record is None or len(record) < HEADER_BYTES or record[0] != RECORD_VERSION:
        return None
    header: tuple[int, int, int, int, int, int, bytes] = _HEADER.unpack_from(record)
    if header[1] & RAW:
        return header if header[3] == header[4] == 0 else None
    if len(record) != HEADER_BYTES + 12 * header[3] + 8 * header[4]:
        return None
    return header


def refreshed_at(record: bytes) -> int | None:
    """When the record's values were last all sent (retention reads only this)."""
    header = _header(record)
    return None if header is None else header[2]


def pack_raw(refreshed_at_s: int, body: bytes, points: int, whole: bytes) -> bytes:
    """A RAW record: the object as acknowledged, its data points and fingerprint."""
    header = _HEADER.pack(RECORD_VERSION, RAW, refreshed_at_s, 0, 0, min(points, 0xFFFF), whole)
    return header + body


def raw_body(record: bytes | None) -> bytes | None:
    """The object a RAW record holds; None for any other record."""
    if record is None or len(record) < HEADER_BYTES or not record[1] & RAW:
        return None
    return None if _header(record) is None else record[HEADER_BYTES:]


def pack_record(
    refreshed_at_s: int, paths: bytes, values: bytes, adds: bytes, points: int, whole: bytes
) -> bytes:
    n, m = len(paths) // 4, len(adds) // 8
    header = _HEADER.pack(RECORD_VERSION, 0, refreshed_at_s, n, m, min(points, 0xFFFF), whole)
    return b"".join((header, paths, values, adds))


# --- the comparison -------------------------------------------------------------------------


class Send(Enum):
    ALL = "all"  # nothing known (or too old): the object as the mapping made it
    SOME = "some"  # leave out skipped_fields and skipped_adds
    NOTHING = "nothing"  # every value is held by Braze: do not send the object at all


class Merge(Enum):
    REBUILD = "rebuild"  # the row alone, every value sent now
    INTO_LATEST = "into latest"  # the row over the user's latest record, its time kept


class Remember(NamedTuple):
    """What to write once Braze acknowledged the row (build_record does it), with the
    fingerprints the comparison already computed."""

    merge: Merge
    fields: Mapping[str, bytes]
    adds: Sequence[tuple[str, bytes]]
    whole: bytes
    add_fps: list[bytes] | None = None
    removes: Sequence[tuple[str, bytes]] = ()
    points: int | None = None  # the whole row's data points, when `fields` are only those sent


class Decision(NamedTuple):
    """What to do with one row. NamedTuples: one is made per row, on the hot path."""

    send: Send
    skipped_fields: tuple[str, ...]  # paths Braze holds: leave them out (Send.SOME)
    skipped_adds: tuple[int, ...]  # indices into the row's adds to leave out
    points_sent: int  # Braze data points: one per field, nested key, array value added/removed
    points_skipped: int
    remember: Remember | None  # None: write nothing, even once acknowledged


def held_whole(whole: bytes, record: bytes | None, now_s: int, max_age_s: int) -> int | None:
    """The usual row: the one the user's record was last built from, unchanged, not too old.
    Its data points (all held by Braze), or None when the row must be compared (or sent)."""
    if record is None or len(record) < HEADER_BYTES or record[0] != RECORD_VERSION:
        return None
    if record[HEADER_BYTES - 8 : HEADER_BYTES] != whole:
        return None
    header = _header(record)
    if header is None or now_s - header[2] > max_age_s:
        return None
    return header[5]


def fresh(record: bytes | None, now_s: int, max_age_s: int) -> bool:
    """Whether the record is one this version reads, refreshed within max_age."""
    header = _header(record)
    return header is not None and now_s - header[2] <= max_age_s


def _everything(
    fields: Mapping[str, bytes],
    adds: Sequence[tuple[str, bytes]],
    removes: Sequence[tuple[str, bytes]],
    whole: bytes,
    merge: Merge | None,
) -> Decision:
    remember = None if merge is None else Remember(merge, fields, adds, whole, None, removes)
    return Decision(Send.ALL, (), (), len(fields) + len(adds) + len(removes), 0, remember)


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
) -> Decision:
    """Which of the row's values Braze already holds from us, given the user's record.

    `busy`: another row of this user is in flight (sent, not answered): its outcome is
    unknown, so this row is sent whole (deltaflight.py tracks it). Append rows are
    remembered only over a fresh record: a record exists only for users an acknowledged
    upsert created, and Braze silently ignores update-only rows for users it lacks.
    `whole`: the row's fingerprint (whole_fp by default). `removes`: array values removed,
    always sent (never compared): once acknowledged they are no longer remembered as added.
    """
    if whole is None:
        whole = whole_fp(fields, adds)
    header = _header(record)
    if header is None or now_s - header[2] > max_age_s:
        merge = Merge.REBUILD if mode == "upsert" else None
        return _everything(fields, adds, removes, whole, merge)
    paths = tuple(fields)
    shape = _shape(paths)
    if shape is None:
        return _everything(fields, adds, removes, whole, None)
    if busy:
        return _everything(fields, adds, removes, whole, Merge.INTO_LATEST)
    assert record is not None  # a header was read from it
    _, _, _, n_fields, n_adds, _, held_whole_fp = header
    n = len(paths)
    if held_whole_fp == whole:  # the usual row, unchanged (held_whole decides it sooner)
        return Decision(Send.NOTHING, paths, tuple(range(len(adds))), 0, n + len(adds), None)
    skipped: tuple[str, ...]
    values_at = HEADER_BYTES + 4 * n_fields
    if record.startswith(shape, HEADER_BYTES):  # the same fields as last time, in order
        held_values = record[values_at : values_at + 8 * n]
        values = list(map(_value_fp, fields.values()))
        skipped = tuple(
            p
            for i, (p, v) in enumerate(zip(paths, values, strict=True))
            if held_values[8 * i : 8 * i + 8] == v
        )
    else:
        held_paths = _items(record[HEADER_BYTES:values_at], 4)
        held = dict(
            zip(held_paths, _items(record[values_at : values_at + 8 * n_fields], 8), strict=True)
        )
        values = list(map(_value_fp, fields.values()))
        skipped = tuple(
            p for p, fp, v in zip(paths, _items(shape, 4), values, strict=True) if held.get(fp) == v
        )
    skipped_adds: tuple[int, ...] = ()
    fps = _adds_fps(adds)
    if fps and n_adds:
        row_adds = b"".join(fps)
        if len(fps) <= n_adds and record.endswith(row_adds):  # the usual row: its adds last
            skipped_adds = tuple(range(len(fps)))
        else:
            held_adds = record[len(record) - 8 * n_adds :]
            skipped_adds = tuple(i for i, fp in enumerate(fps) if _held(held_adds, fp))
    points_skipped = len(skipped) + len(skipped_adds)
    points_sent = n + len(adds) + len(removes) - points_skipped
    if points_sent == 0:
        return Decision(Send.NOTHING, skipped, skipped_adds, 0, points_skipped, None)
    remember = Remember(Merge.INTO_LATEST, fields, adds, whole, fps, removes)
    send = Send.SOME if points_skipped else Send.ALL
    return Decision(send, skipped, skipped_adds, points_sent, points_skipped, remember)


def build_record(remember: Remember, latest: bytes | None, now_s: int) -> bytes | None:
    """The record to write once Braze acknowledged the row, or None to write nothing.

    `latest` is the user's newest record: the one compared with, or one written since by
    another row of the user (deltaflight.InFlight.latest). Fields the row does not carry stay
    remembered: Braze keeps a standard field the row leaves empty, and a nested key the row
    lacks (`_merge_objects`), so they are still held until the record is refreshed.
    """
    fields = remember.fields
    shape = _shape(tuple(fields))
    if shape is None:
        return None
    n = len(fields)
    values = b"".join(map(_value_fp, fields.values()))
    fps = remember.add_fps if remember.add_fps is not None else _adds_fps(remember.adds)
    row_adds = b"".join(dict.fromkeys(fps))
    points = n + len(fps) + len(remember.removes) if remember.points is None else remember.points
    if remember.merge is Merge.REBUILD:
        return pack_record(now_s, shape, values, row_adds[-8 * MAX_ADDS :], points, remember.whole)
    base = parse_record(latest) if latest is not None else None
    if base is None:  # forgotten meanwhile: nothing proves the skipped values are held
        return None
    if base.paths.startswith(shape):  # the usual row: the same fields first, then the rest
        paths, values = base.paths, values + base.values[8 * n :]
    else:
        paths, values = _fields_over(shape, values, base)
    held_adds = base.adds
    if remember.removes:  # removed: no longer held (a later add is sent)
        held_adds = _without(held_adds, _adds_fps(remember.removes))
    if not held_adds.endswith(row_adds):  # the row's values move to the newest end
        row_adds = (_without(held_adds, fps) + row_adds)[-8 * MAX_ADDS :]
    else:
        row_adds = held_adds
    return pack_record(base.refreshed_at, paths, values, row_adds, points, remember.whole)


def _fields_over(shape: bytes, values: bytes, base: Record) -> tuple[bytes, bytes]:
    """The row's fields, then those of `base` the row lacks (still held by Braze)."""
    row_paths = set(_items(shape, 4))
    paths, all_values = [shape], [values]
    for path, value in zip(_items(base.paths, 4), _items(base.values, 8), strict=True):
        if path not in row_paths:
            paths.append(path)
            all_values.append(value)
    return b"".join(paths), b"".join(all_values)


def _without(section: bytes, fps: Iterable[bytes]) -> bytes:
    """`section` (8-byte items) without the items in `fps`."""
    for fp in fps:
        at = section.find(fp)
        while at > 0 and at % 8:
            at = section.find(fp, at + 1)
        if at >= 0:
            section = section[:at] + section[at + 8 :]
    return section
