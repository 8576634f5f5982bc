"""Pure: a chunk's summaries for delta (deltarecord.summarize), made in the mapping process
from what columnar.py made the chunk's bodies of (Recorded: the values converted, or the JSON
it remembered for their cells), column by column: a column is encoded and fingerprinted in one
call (map), and no body is parsed again. A chunk with a value delta would walk into (an object
that is not a `$time`, a nested key starting with `$`) is left to deltabody.summary, row by
row, as are the rows the row function mapped: both give the same bytes
(tests/unit/test_deltacolumns.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from itertools import compress, repeat
from operator import is_, itemgetter
from typing import Any, NamedTuple

import orjson
import xxhash

from .deltabody import CONTROL_KEYS, is_array_ops, merged, summary, whole_fp
from .deltarecord import (
    HEADER,
    MAX_ADDS,
    PLAIN,
    RECORD_VERSION,
    WHOLE_AT,
    items,
    shape,
    summarize_fps,
    value_fp,
)
from .parsers import SKIP


class Fixed(NamedTuple):
    """A value the same in every row of the chunk (a part's values, in Recorded)."""

    value: Any


class Encoded(NamedTuple):
    """Each row's part of its body remembered (columncache.py): `key value suffix`, the value
    as JSON between `key` and `suffix` bytes; b"" where the row has none."""

    parts: list[bytes]
    key: int
    suffix: int


# A part's values: one a row (SKIP where the row has none), Encoded or Fixed; an array with
# several values (kind "ops"): each row's {op: [values]} object, empty where it has none.
Values = list[Any] | Encoded | Fixed
Nested = tuple[str, list[tuple[str, Values]], list[bool]]  # name, (key, values), rows with it


class Recorded(NamedTuple):
    """The values a chunk's bodies were made of, in the objects' order: top-level parts as
    (kind: field|add|remove|ops, name, values); nested objects; the rows that merge them."""

    top: list[tuple[str, str, Values]]
    nested: list[Nested]
    merging: list[bool] | None
    positions: list[int] | None  # the chunk's rows they are of, when not all


_Skip = type(SKIP)
_OPS = frozenset({"add", "remove"})
_dumps = orjson.dumps
_join = b"".join
_seed = xxhash.xxh3_64_intdigest
_array_fp = xxhash.xxh3_64_digest
# Remembered parts' fingerprints (Encoded), per fingerprint function and seed; cleared when full.
_PART_FPS_CACHED = 16_384
_part_fps: dict[tuple[Any, ...], dict[bytes, bytes]] = {}


def summaries(bodies: list[bytes]) -> list[bytes]:
    """Each body's summary, parsed from it (rows not summarised beside their objects)."""
    return list(map(summary, bodies))


def from_columns(recorded: Recorded, bodies: Sequence[bytes | None]) -> list[bytes | None]:
    """Each row's summary, None where its body is (or where this does not cover the chunk)."""
    positions = recorded.positions
    rows = bodies if positions is None else [bodies[i] for i in positions]
    found = _summaries(recorded, rows)
    if found is None:
        return [None] * len(bodies)
    if positions is None:
        return found
    out: list[bytes | None] = [None] * len(bodies)
    for i, s in zip(positions, found, strict=True):
        out[i] = s
    return out


def _walked(value: Any) -> bool:
    """Whether delta would walk into the value (array operations, keys of their own) rather
    than take it whole, as it takes a `$time` (deltabody.parse)."""
    return type(value) is dict and (is_array_ops(value) or merged(value))


def _fps(values: Values, size: int, fp: Callable[..., bytes], *seed: int) -> list[bytes] | None:
    """`fp` of each row's value's JSON (b"" where it has none), None if delta would walk into
    a value. (orjson's results are taken by `fp` one at a time: each holds a 4 KB buffer.)"""
    if type(values) is Encoded:  # (never an object but a `$time`: config allows scalars)
        parts, json = values.parts, itemgetter(slice(values.key, -values.suffix or None))
        if fp is not value_fp and fp is not _array_fp:  # (a nested object's pairs)
            return [fp(json(p), *seed) if p else b"" for p in parts]
        # A remembered part is the same bytes object chunk after chunk (its hash kept): its
        # fingerprint is a look-up. (Its key names its column: one path, one fingerprint.)
        known = _part_fps.setdefault((fp, *seed), {b"": b""})
        found: list[Any] = list(map(known.get, parts))
        if None in found:
            if len(known) > _PART_FPS_CACHED:
                known.clear()
                known[b""] = b""
            for i in compress(range(len(found)), map(is_, found, repeat(None))):
                part = parts[i]
                found[i] = known[part] = fp(json(part), *seed)
        return found
    if type(values) is Fixed:
        return None if _walked(values.value) else [fp(_dumps(values.value), *seed)] * size
    kinds = set(map(type, values))
    if dict in kinds and any(map(_walked, values)):
        return None
    if _Skip not in kinds:  # the usual column: in one pass
        return list(map(fp, map(_dumps, values), *map(repeat, seed)))
    return [b"" if v is SKIP else fp(_dumps(v), *seed) for v in values]


def _ops(values: list[dict[str, list[Any]]], seed: int) -> tuple[list[bytes], list[bytes]]:
    """An array with several values: each row's values added and removed, fingerprinted."""
    adds, removes = [], []
    for obj in values:
        adds.append(_join([_array_fp(_dumps(v), seed) for v in obj.get("add", ())]))
        removes.append(_join([_array_fp(_dumps(v), seed) for v in obj.get("remove", ())]))
    return adds, removes


def _summaries(recorded: Recorded, rows: Sequence[bytes | None]) -> list[bytes | None] | None:
    size = len(rows)
    paths: list[str] = []
    fields: list[list[bytes]] = []  # each field's fingerprint per row, b"" where absent
    adds: list[list[bytes]] = []  # each array's values added per row, fingerprinted
    removes: list[list[bytes]] = []
    one_each = True  # one value per array in every row
    for kind, name, values in recorded.top:
        if kind == "ops":
            assert isinstance(values, list)
            added, removed = _ops(values, _seed(name.encode()))
            adds.append(added)
            removes.append(removed)
            one_each = False
            continue
        if kind == "field" and name in CONTROL_KEYS:
            return None
        column = (
            _fps(values, size, value_fp)
            if kind == "field"
            else _fps(values, size, _array_fp, _seed(name.encode()))
        )
        if column is None:
            return None
        if kind == "field":
            paths.append(name)
            fields.append(column)
        else:
            (adds if kind == "add" else removes).append(column)
            one_each = one_each and b"" not in column
    merging = recorded.merging
    for name, keyed, present in recorded.nested:
        keys = [key for key, _ in keyed]
        if set(keys) <= _OPS or any(key.startswith("$") for key in keys):
            return None  # an object delta would read as array operations, or whole
        merge = [False] * size if merging is None else list(map(min, merging, present))
        whole = [p and not m for p, m in zip(present, merge, strict=True)]  # one value
        pairs: list[list[bytes]] = []  # `,"key":value` per key and row, for whole objects
        merge_all = all(merge)
        for key, values in keyed:
            if any(merge):
                column = _fps(values, size, value_fp)
                if column is None:
                    return None
                paths.append(f"{name}.{key}")
                if not merge_all:
                    column = [f if m else b"" for f, m in zip(column, merge, strict=True)]
                fields.append(column)
            if any(whole):
                pair = _fps(values, size, (b"," + _dumps(key) + b":").__add__)
                if pair is None:
                    return None
                pairs.append(pair)
        if pairs:  # each row's object as its body has it
            objs = [b"{" + _join(ts)[1:] + b"}" for ts in zip(*pairs, strict=True)]
            paths.append(name)
            fields.append([value_fp(o) if w else b"" for o, w in zip(objs, whole, strict=True)])
    wholes = [whole_fp(b) if b is not None else b"" for b in rows]
    n, m, r = len(paths), len(adds), len(removes)
    shaped = shape(tuple(paths)) if max(n, m, r) <= 0xFFFF else None
    if shaped is not None and one_each and all(b"" not in column for column in fields):
        found: list[bytes | None] = list(_uniform(shaped, fields, n, adds, removes, wholes))
    else:
        each = [zip(*c, strict=True) if c else repeat((), size) for c in (fields, adds, removes)]
        found = list(map(_row, repeat(paths), *each, wholes))
    return [s if b is not None else None for s, b in zip(found, rows, strict=True)]


def _row(
    paths: list[str], values: tuple[bytes, ...], adds: tuple[bytes, ...],
    removes: tuple[bytes, ...], whole: bytes,
) -> bytes:  # fmt: skip
    """One row's summary where its fields or array values are not those of every row."""
    present = list(compress(paths, values))
    return summarize_fps(
        present, _join(values), items(_join(adds), 8), items(_join(removes), 8), whole
    )


def _uniform(
    shaped: bytes,
    fields: list[list[bytes]],
    n: int,
    adds: list[list[bytes]],
    removes: list[list[bytes]],
    wholes: list[bytes],
) -> list[bytes]:
    """Summaries of rows with every field and one value per array (the usual chunk): its
    paths' fingerprints `shaped`, summarize_fps's bytes."""
    size = len(wholes)
    m, r = len(adds), len(removes)
    flags = PLAIN if not r and m <= MAX_ADDS else 0
    # The header's counts are every row's: packed once, each row's fingerprints after them.
    counts = HEADER.pack(RECORD_VERSION, flags, 0, n, m, r, min(n + m + r, 0xFFFF), b"", b"")
    values = list(map(_join, zip(*fields, strict=True))) if fields else [b""] * size
    statics = map(value_fp, map(shaped.__add__, values))
    each = (repeat(counts[:WHOLE_AT]), wholes, statics, repeat(shaped), values, *adds, *removes)
    return list(map(_join, zip(*each, strict=False)))  # (repeat() never ends: rows do)
