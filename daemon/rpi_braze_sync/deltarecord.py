"""Pure: delta's fingerprints of a row and its record (issue 16). A row is summarised once, where
its object is built (the mapping process: deltabody.summary), into the very bytes delta stores
for its user once Braze acknowledged it; the daemon then compares and merges bytes, never the
object's values (delta.py).

Fingerprints are XXH3, specified and the same on every platform, process and version (unlike
hash()): 64 bits per value and per whole object, 32 per path, 128 in a long user's key.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence

import xxhash

RECORD_VERSION = 4  # an older record is unreadable: its row is sent and remembered anew
# A summary and a record share one layout: the header, then each field's path (4 bytes each),
# each field's value (8 bytes each, in the same order), each array value added (8 bytes), and,
# in a summary only, each array value removed (8 bytes; a record holds none).
# Header: version, flags, refreshed_at (0 in a summary), fields, adds, removes, data points of
# the row (capped), `raw` (its source row's fingerprint, deltaprefilter.py: NO_RAW where the
# row must be mapped again to be compared), `whole` (its whole object's fingerprint: an
# unchanged row is decided by it alone) and `static` (its fields', not its array values': a
# row whose only change is a new array value, such as each run's channel execution id, is
# decided without comparing fields). A record's `raw`, `whole` and `static` are those of the
# row it was last built from.
HEADER = struct.Struct("<BBIHHHH8s8s8s")
HEADER_BYTES = HEADER.size
COUNTS = struct.Struct("<HHHH")  # fields, adds, removes, points: at COUNTS_AT
COUNTS_AT = TAIL_AT = 6
POINTS_AT = 12
RAW_AT = 14
WHOLE_AT = 22
STATIC_AT = 30
NO_RAW = bytes(8)
_TIME = struct.Struct("<I")
# Flags of a summary. COLLIDES: two of its paths' fingerprints collide (1 in 4 billion a pair)
# or it has too many values to count: sent whole, never remembered (rather than compared
# wrongly), its user forgotten once it is acknowledged (deltasent.FORGOTTEN). PLAIN: at most
# MAX_ADDS array values, none removed: timed, the summary is its own record (the first run's
# usual row: no work but the time; a value added twice is kept twice).
COLLIDES = 1
PLAIN = 2
# Array values remembered per user, the most recently sent or seen kept: values seen run after
# run (offers, audiences) stay, ids that never recur (channel execution ids) age out.
MAX_ADDS = 16
_COUNT_MAX = 0xFFFF

value_fp = xxhash.xxh3_64_digest
_user_digest = xxhash.xxh3_128_digest


# A user's key keeps the order of identities: its UTF-8 bytes, or for a longer identity the
# first KEY_BYTES of them and the XXH3-128 of the whole. RPI exports an audience in the same
# order run after run, often sorted by id, so a chunk's lookups and writes land in a few
# blocks (an unchanged run of 100,000 rows, the store's thread: 8.3-9.0 -> 4.1-4.5 us a
# row), and compaction rewrites less (1M users: 810 -> 370 bytes written a user). In random
# order it costs what the digest did. One key names one identity: a short key (<= KEY_BYTES)
# is the identity itself, a long one is KEY_BYTES + 16 bytes, so the two never meet; two
# long ones only if their identities share KEY_BYTES bytes and a 128-bit digest (as unlikely
# as two digests meeting: the key was that digest alone before). No key starts with 0xFF
# (UTF-8 has no such byte). RocksDB stores the bytes a key shares with the one before it
# once: 48 keeps a UUID (36), an email or a user alias with its label whole, in order.
KEY_BYTES = 48


def user_key(user: str) -> bytes:
    """The store's key for a user (the mapping's user identity, e.g. an external_id)."""
    return _key_of(user.encode("utf-8"))


def _key_of(identity: bytes) -> bytes:
    if len(identity) <= KEY_BYTES:
        return identity
    return identity[:KEY_BYTES] + _user_digest(identity)


def user_keys(users: Iterable[str]) -> list[bytes]:
    """user_key of each user, with no Python call per user when none is long (a chunk's, in
    the daemon)."""
    encoded = list(map(str.encode, users))
    if encoded and max(map(len, encoded)) > KEY_BYTES:
        return list(map(_key_of, encoded))
    return encoded


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


def shape(paths: tuple[str, ...]) -> bytes | None:
    """The paths' fingerprints, 4 bytes each; None if two collide."""
    try:
        return _shapes[paths]
    except KeyError:
        pass
    fps = list(map(_path_fp, paths))
    if len(_shapes) >= _SHAPES_CACHED:
        _shapes.clear()
    found = _shapes[paths] = b"".join(fps) if len(set(fps)) == len(fps) else None
    return found


def array_fps(values: Sequence[tuple[str, bytes]]) -> list[bytes]:
    """(array path, value's encoding) -> 8 bytes each, seeded by the path: the same value in
    another array is another value; an add and a remove of one value share a fingerprint."""
    seeds = _add_seeds
    out = []
    for path, encoding in values:
        seed = seeds.get(path)
        if seed is None:
            seed = seeds[path] = xxhash.xxh3_64_intdigest(path.encode("utf-8"))
        out.append(xxhash.xxh3_64_digest(encoding, seed))
    return out


# --- summaries and records ------------------------------------------------------------------


def summarize(
    paths: Sequence[str],
    encodings: Sequence[bytes],
    adds: Sequence[tuple[str, bytes]],
    removes: Sequence[tuple[str, bytes]],
    whole: bytes,
) -> bytes:
    """A row's summary: its fields (path, exact JSON encoding as sent, in the object's order),
    its array values added and removed, and its whole object's fingerprint."""
    values = b"".join(map(value_fp, encodings))
    return summarize_fps(paths, values, array_fps(adds), array_fps(removes), whole)


def summarize_fps(
    paths: Sequence[str], values: bytes, add_fps: list[bytes], remove_fps: list[bytes], whole: bytes
) -> bytes:
    """summarize, the values fingerprinted already (8 bytes each, joined)."""
    n, m, r = len(paths), len(add_fps), len(remove_fps)
    points = min(n + m + r, _COUNT_MAX)
    fields = shape(tuple(paths)) if max(n, m, r) <= _COUNT_MAX else None
    if fields is None:
        return HEADER.pack(RECORD_VERSION, COLLIDES, 0, 0, 0, 0, points, NO_RAW, whole, bytes(8))
    plain = not r and m <= MAX_ADDS
    header = HEADER.pack(
        RECORD_VERSION,
        PLAIN if plain else 0,
        0,
        n,
        m,
        r,
        points,
        NO_RAW,
        whole,
        value_fp(fields + values),
    )
    return b"".join((header, fields, values, *add_fps, *remove_fps))


def pack_record(
    refreshed_at_s: int,
    paths: bytes,
    values: bytes,
    adds: bytes,
    points: int,
    whole: bytes,
    static: bytes,
    raw: bytes = NO_RAW,
) -> bytes:
    n, m = len(paths) // 4, len(adds) // 8
    header = HEADER.pack(RECORD_VERSION, 0, refreshed_at_s, n, m, 0, points, raw, whole, static)
    return b"".join((header, paths, values, adds))


def timed(summary: bytes, now_s: int) -> bytes:
    """A PLAIN summary as its own record, refreshed now."""
    return timed_prefix(now_s) + summary[TAIL_AT:]


def timed_prefix(now_s: int) -> bytes:
    """What replaces a PLAIN summary's first TAIL_AT bytes to make it a record refreshed now
    (version, no flag, the time)."""
    return bytes((RECORD_VERSION, 0)) + _TIME.pack(now_s)


# version, flags, refreshed_at, fields, adds, removes, points, raw, whole, static
RecordHeader = tuple[int, int, int, int, int, int, int, bytes, bytes, bytes]


def header(record: bytes | None) -> RecordHeader | None:
    """A record's header, if this version can read the record (never a summary's)."""
    if record is None or len(record) < HEADER_BYTES or record[0] != RECORD_VERSION:
        return None
    fields: RecordHeader = HEADER.unpack_from(record)
    _, flags, _, n, m, r, _, _, _, _ = fields
    if flags or r or len(record) != HEADER_BYTES + 12 * n + 8 * m:
        return None
    return fields


def refreshed_at(record: bytes | None) -> int | None:
    """When the record's values were last all sent (retention reads only this)."""
    found = header(record)
    return None if found is None else found[2]


def fresh(record: bytes | None, now_s: int, max_age_s: int) -> bool:
    """Whether the record is one this version reads, refreshed within max_age."""
    found = header(record)
    return found is not None and now_s - found[2] <= max_age_s


def points_of(summary: bytes) -> int:
    """A summary's (or a record's row's) data points."""
    return int.from_bytes(summary[COUNTS_AT + 6 : COUNTS_AT + 8], "little")


def items(section: bytes, width: int) -> list[bytes]:
    return [section[i : i + width] for i in range(0, len(section), width)]


def held(section: bytes, fp: bytes) -> bool:
    """Whether `fp` is one of the 8-byte items of `section` (not bytes straddling two)."""
    at = section.find(fp)
    while at > 0 and at % 8:
        at = section.find(fp, at + 1)
    return at >= 0


def without(section: bytes, fps: Sequence[bytes]) -> bytes:
    """`section` (8-byte items) without the items in `fps`."""
    for fp in fps:
        at = section.find(fp)
        while at > 0 and at % 8:
            at = section.find(fp, at + 1)
        if at >= 0:
            section = section[:at] + section[at + 8 :]
    return section
