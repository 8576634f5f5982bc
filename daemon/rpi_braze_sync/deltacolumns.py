"""Pure: a chunk's summaries for delta (deltarecord.summarize), made in the mapping process
from what columnar.py made the chunk's bodies of (Recorded: the values converted, their JSON as
the bodies have it, or the JSON remembered for their cells), column by column: a column is
fingerprinted in one call (map), a remembered cell's fingerprint is a look-up, and each row's
bytes are its fingerprints joined (deltaassembly.py). No body is parsed again. A chunk with
a value delta would walk into (an object that is not a `$time`, a nested key starting with
`$`) is left to deltabody.summary, row by row, as are the rows the row function mapped: both
give the same bytes (tests/unit/test_deltacolumns.py)."""

from __future__ import annotations

from collections.abc import Callable, Container, Sequence
from itertools import compress, repeat
from operator import and_, gt, is_, itemgetter, not_
from typing import Any, NamedTuple, cast

import orjson
import xxhash

from .deltaassembly import Column, assembled
from .deltabody import CONTROL_KEYS, is_array_ops, merged, summary, whole_fp
from .deltarecord import NO_RAW, value_fp
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
    strings or numbers, encoded whole (jsonpieces.encode_recorded); `gaps`: whether any row
    has none (known from the values' types, not looked for)."""

    texts: list[bytes]
    gaps: bool


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


def summaries(bodies: list[bytes]) -> list[bytes]:
    """Each body's summary, parsed from it (rows not summarised beside their objects)."""
    return list(map(summary, bodies))


def from_columns(
    recorded: Recorded,
    bodies: Sequence[bytes | None],
    raws: Sequence[bytes] | None = None,
    dropped: Container[int] = (),
) -> list[bytes | None]:
    """Each row's summary, None where its body is (or where this does not cover the chunk).
    With `raws` (deltaprefilter.raw_fps), each names its source row where it may (keepable,
    and the row dropped no field): made so, rather than spliced in after (0.5 us a row)."""
    positions = recorded.positions
    rows = bodies if positions is None else [bodies[i] for i in positions]
    if raws is not None and (dropped or positions is not None):
        kept = range(len(bodies)) if positions is None else positions
        raws = [NO_RAW if i in dropped else raws[i] for i in kept]
    found = _summaries(recorded, rows, raws)
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


def _fps(
    values: Values, size: int, fp: Callable[..., bytes], *seed: int
) -> tuple[list[bytes], bool] | None:
    """`fp` of each row's value's JSON (b"" where it has none) and whether any row has none;
    None if delta would walk into a value. (orjson's results are taken by `fp` one at a
    time: each holds a 4 KB buffer.)"""
    if type(values) is Encoded:  # (never an object but a `$time`: config allows scalars)
        parts, json = values.parts, itemgetter(slice(values.key, -values.suffix or None))
        if fp is not value_fp and fp is not _array_fp:  # (a nested object's pairs)
            return [fp(json(p), *seed) if p else b"" for p in parts], not all(parts)
        # A remembered part is the same bytes object chunk after chunk (its hash kept): its
        # fingerprint is a look-up. (Its key names its column: one path, one fingerprint.)
        known = _part_fps.setdefault((fp, *seed), {b"": b""})
        first = parts[0]
        if parts.count(first) == size and first in known:  # (by identity, in C: an offer,
            return [known[first]] * size, not first  # an audience, an execution id in every row)
        try:  # the usual chunk: all known (a None among the look-ups is slow to look for)
            found: list[Any] = list(map(known.__getitem__, parts))
            return found, not all(found)  # (all(): a b"" is falsy, faster than `b"" in`)
        except KeyError:
            found = list(map(known.get, parts))
        if len(known) > _PART_FPS_CACHED:
            known.clear()
            known[b""] = b""
        for i in compress(range(len(found)), map(is_, found, repeat(None))):
            part = parts[i]
            found[i] = known[part] = fp(json(part), *seed)
        return found, not all(found)
    if type(values) is Json:  # (strings and numbers: never walked into)
        texts = values.texts
        fps: list[bytes] = list(map(fp, texts, *map(repeat, seed)))
        if values.gaps:  # rows without the value
            for i in compress(range(size), map(not_, texts)):
                fps[i] = b""
        return fps, values.gaps
    if type(values) is Fixed:
        if _walked(values.value):
            return None
        return [fp(_dumps(values.value), *seed)] * size, False
    kinds = set(map(type, values))
    if dict in kinds and any(map(_walked, values)):
        return None
    if _Skip not in kinds:  # the usual column: in one pass
        return list(map(fp, map(_dumps, values), *map(repeat, seed))), False
    return [b"" if v is SKIP else fp(_dumps(v), *seed) for v in values], True


def _ops(values: list[dict[str, list[Any]]], seed: int) -> tuple[list[bytes], list[bytes]]:
    """An array with several values: each row's values added and removed, fingerprinted."""
    adds, removes = [], []
    for obj in values:
        adds.append(_join([_array_fp(_dumps(v), seed) for v in obj.get("add", ())]))
        removes.append(_join([_array_fp(_dumps(v), seed) for v in obj.get("remove", ())]))
    return adds, removes


def _summaries(
    recorded: Recorded, rows: Sequence[bytes | None], raws: Sequence[bytes] | None
) -> list[bytes | None] | None:
    size = len(rows)
    paths: list[str] = []
    fields: list[list[bytes]] = []  # each field's fingerprint per row, b"" where absent
    varied: list[int] = []  # the fields some rows lack
    adds: list[Column] = []  # each array's values added per row (fingerprinted), and
    removes: list[Column] = []  # whether their sizes vary from row to row
    for kind, name, values in recorded.top:
        if kind == "ops":
            assert isinstance(values, list)
            added, removed = _ops(values, _seed(name.encode()))
            adds.append((added, len(set(map(len, added))) > 1 or not all(added)))
            removes.append((removed, len(set(map(len, removed))) > 1 or not all(removed)))
            continue
        if kind == "field" and name in CONTROL_KEYS:
            return None
        fps = (
            _fps(values, size, value_fp)
            if kind == "field"
            else _fps(values, size, _array_fp, _seed(name.encode()))
        )
        if fps is None:
            return None
        if kind == "field":
            if fps[1]:
                varied.append(len(fields))
            paths.append(name)
            fields.append(fps[0])
        else:
            (adds if kind == "add" else removes).append(fps)
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
                fps = _fps(values, size, value_fp)
                if fps is None:
                    return None
                column, gaps = fps
                if not merge_all:
                    column = [f if m else b"" for f, m in zip(column, merge, strict=True)]
                if gaps or not merge_all:
                    varied.append(len(fields))
                paths.append(f"{name}.{key}")
                fields.append(column)
            if whole_any:
                pair = _fps(values, size, (b"," + _dumps(key) + b":").__add__)
                if pair is None:
                    return None
                pairs.append(pair[0])
        if pairs:  # each row's object as its body has it
            objs = [b"{" + _join(ts)[1:] + b"}" for ts in zip(*pairs, strict=True)]
            if not all(whole):
                varied.append(len(fields))
            paths.append(name)
            fields.append([value_fp(o) if w else b"" for o, w in zip(objs, whole, strict=True)])
    try:
        wholes = list(map(whole_fp, cast(Sequence[bytes], rows)))
        every = True
    except TypeError:  # rows left to the row function (None)
        wholes = [whole_fp(b) if b is not None else b"" for b in rows]
        every = False
    found: list[Any] = assembled(paths, fields, varied, adds, removes, wholes, raws)
    return (
        found if every else [s if b is not None else None for s, b in zip(found, rows, strict=True)]
    )
