"""Pure: a chunk's summaries for delta (deltarecord.summarize), made in the mapping process
from what columnar.py made the chunk's bodies of (Recorded: the values converted, their JSON as
the bodies have it, or the JSON remembered for their cells), column by column: a column is
fingerprinted in one call (map), a remembered cell's fingerprint is a look-up, and each row's
bytes are its fingerprints joined, in C, after a header made once for all the rows of one
pattern (which fields they have, how many array values). No body is parsed again. A chunk with
a value delta would walk into (an object that is not a `$time`, a nested key starting with
`$`) is left to deltabody.summary, row by row, as are the rows the row function mapped: both
give the same bytes (tests/unit/test_deltacolumns.py)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from itertools import compress, repeat
from operator import and_, gt, is_, itemgetter, not_
from typing import Any, NamedTuple, cast

import orjson
import xxhash

from .deltabody import CONTROL_KEYS, is_array_ops, merged, summary, whole_fp
from .deltarecord import (
    HEADER,
    MAX_ADDS,
    NO_RAW,
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


class Json(NamedTuple):
    """Each row's value as JSON, as its body has it (b"" where the row has none): a column of
    strings or numbers, encoded whole (jsonpieces.encode_recorded)."""

    texts: list[bytes]


# A part's values: one a row (SKIP where the row has none), Encoded, Json or Fixed; an array with
# several values (kind "ops"): each row's {op: [values]} object, empty where it has none.
Values = list[Any] | Encoded | Json | Fixed
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
# Each pattern's header and paths (_head), by the chunk's columns and pattern; cleared when full.
_HEADS_CACHED = 4096
_heads: dict[tuple[Any, ...], tuple[bytes | None, bytes]] = {}


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
        first = parts[0]
        if parts.count(first) == size and first in known:  # (by identity, in C: an offer,
            return [known[first]] * size  # an audience, an execution id in every row)
        try:  # the usual chunk: all known (a None among the look-ups is slow to look for)
            return list(map(known.__getitem__, parts))
        except KeyError:
            found: list[Any] = list(map(known.get, parts))
        if len(known) > _PART_FPS_CACHED:
            known.clear()
            known[b""] = b""
        for i in compress(range(len(found)), map(is_, found, repeat(None))):
            part = parts[i]
            found[i] = known[part] = fp(json(part), *seed)
        return found
    if type(values) is Json:  # (strings and numbers: never walked into)
        texts = values.texts
        fps: list[bytes] = list(map(fp, texts, *map(repeat, seed)))
        if b"" in texts:  # rows without the value
            for i in compress(range(size), map(not_, texts)):
                fps[i] = b""
        return fps
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
    several: list[list[bytes]] = []  # the arrays' columns with any number of values a row
    for kind, name, values in recorded.top:
        if kind == "ops":
            assert isinstance(values, list)
            added, removed = _ops(values, _seed(name.encode()))
            adds.append(added)
            removes.append(removed)
            several += (added, removed)
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
    merging = recorded.merging
    for name, keyed, present in recorded.nested:
        keys = [key for key, _ in keyed]
        if set(keys) <= _OPS or any(key.startswith("$") for key in keys):
            return None  # an object delta would read as array operations, or whole
        if merging is None:
            merge: list[bool] = [False] * size
        else:  # (`and` and `>` of bools, in C: a row merging its object; one replacing it)
            merge = merging if all(present) else list(map(and_, merging, present))
        merge_any, merge_all = any(merge), all(merge)
        whole = [] if merge_all else list(map(gt, present, merge))  # the object one value
        whole_any = any(whole)
        pairs: list[list[bytes]] = []  # `,"key":value` per key and row, for whole objects
        for key, values in keyed:
            if merge_any:
                column = _fps(values, size, value_fp)
                if column is None:
                    return None
                paths.append(f"{name}.{key}")
                if not merge_all:
                    column = [f if m else b"" for f, m in zip(column, merge, strict=True)]
                fields.append(column)
            if whole_any:
                pair = _fps(values, size, (b"," + _dumps(key) + b":").__add__)
                if pair is None:
                    return None
                pairs.append(pair)
        if pairs:  # each row's object as its body has it
            objs = [b"{" + _join(ts)[1:] + b"}" for ts in zip(*pairs, strict=True)]
            paths.append(name)
            fields.append([value_fp(o) if w else b"" for o, w in zip(objs, whole, strict=True)])
    try:
        wholes = list(map(whole_fp, cast(Sequence[bytes], rows)))
        every = True
    except TypeError:  # rows left to the row function (None)
        wholes = [whole_fp(b) if b is not None else b"" for b in rows]
        every = False
    found: list[Any] = _assembled(paths, fields, adds, removes, several, wholes)
    return (
        found if every else [s if b is not None else None for s, b in zip(found, rows, strict=True)]
    )


def _assembled(
    paths: list[str],
    fields: list[list[bytes]],
    adds: list[list[bytes]],
    removes: list[list[bytes]],
    several: list[list[bytes]],
    wholes: list[bytes],
) -> list[bytes]:
    """summarize_fps's bytes for each row, in a few passes over the chunk: rows are told apart
    by which fields they have and how many array values (their pattern), each pattern's
    header and paths' fingerprints made once; each row is then its fingerprints joined, in C."""
    size = len(wholes)
    if not size:
        return []
    arrays = [*adds, *removes]
    # The columns that differ in size from row to row (a field some rows lack, an array with
    # no value or several in some) make the pattern; the others count the same in each row.
    varied = [i for i, c in enumerate(fields) if b"" in c]
    varied_arrays = [
        i
        for i, c in enumerate(arrays)
        if b"" in c or (any(c is s for s in several) and len(set(map(len, c))) > 1)
    ]
    lengths = [list(map(len, fields[i])) for i in varied]
    lengths += [list(map(len, arrays[i])) for i in varied_arrays]
    patterns = list(zip(*lengths, strict=True)) if lengths else [()] * size
    counted = [len(c[0]) // 8 if i not in varied_arrays else 0 for i, c in enumerate(arrays)]
    columns = (tuple(paths), tuple(varied), tuple(varied_arrays), tuple(counted), len(adds))
    if len(_heads) > _HEADS_CACHED:
        _heads.clear()
    heads: dict[tuple[int, ...], bytes | None] = {}  # the header up to `whole`, by pattern
    shapes: dict[tuple[int, ...], bytes] = {}  # its paths' fingerprints
    for pattern in set(patterns):
        made = _heads.get((columns, pattern))
        if made is None:
            made = _heads[columns, pattern] = _head(*columns, pattern)
        heads[pattern], shapes[pattern] = made
    if len(heads) == 1:  # the usual chunk: one pattern
        row_heads = [*heads.values()] * size
        row_shapes = [*shapes.values()] * size
    else:
        row_heads = list(map(heads.__getitem__, patterns))
        row_shapes = list(map(shapes.__getitem__, patterns))
    keyed = list(map(_join, zip(row_shapes, *fields, strict=True)))  # paths, then values
    statics = map(value_fp, keyed)
    if None not in heads.values():
        return list(map(_join, zip(row_heads, wholes, statics, keyed, *arrays, strict=True)))
    # Paths that collide: those rows are made one by one.
    starts = map(_or_empty, row_heads)
    found = list(map(_join, zip(starts, wholes, statics, keyed, *arrays, strict=True)))
    for i in compress(range(size), map(is_, row_heads, repeat(None))):
        row = [c[i] for c in fields], [c[i] for c in adds], [c[i] for c in removes]
        found[i] = _row(paths, *row, wholes[i])
    return found


def _head(
    paths: tuple[str, ...],
    varied: tuple[int, ...],
    varied_arrays: tuple[int, ...],
    counted: tuple[int, ...],
    n_adds: int,
    pattern: tuple[int, ...],
) -> tuple[bytes | None, bytes]:
    """A pattern's header up to `whole` (None where its paths collide: its rows are made one
    by one) and its paths' fingerprints."""
    lacking = {i for i, length in zip(varied, pattern[: len(varied)], strict=True) if not length}
    present = tuple(p for i, p in enumerate(paths) if i not in lacking)
    counts = list(counted)
    for i, length in zip(varied_arrays, pattern[len(varied) :], strict=True):
        counts[i] = length // 8
    n, m, r = len(present), sum(counts[:n_adds]), sum(counts[n_adds:])
    shaped = shape(present) if max(n, m, r) <= 0xFFFF else None
    if shaped is None:
        return None, b""
    flags = PLAIN if not r and m <= MAX_ADDS else 0
    points = min(n + m + r, 0xFFFF)
    head = HEADER.pack(RECORD_VERSION, flags, 0, n, m, r, points, NO_RAW, b"", b"")
    return head[:WHOLE_AT], shaped


def _or_empty(head: bytes | None) -> bytes:
    return head or b""


def _row(
    paths: list[str], values: Sequence[bytes], adds: Sequence[bytes],
    removes: Sequence[bytes], whole: bytes,
) -> bytes:  # fmt: skip
    """One row's summary, made alone (paths that collide: summarize_fps's own header)."""
    present = list(compress(paths, values))
    return summarize_fps(
        present, _join(values), items(_join(adds), 8), items(_join(removes), 8), whole
    )
