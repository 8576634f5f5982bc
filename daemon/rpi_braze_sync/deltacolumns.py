"""Pure: a chunk's summaries for delta (deltarecord.summarize), made column by column in the
mapping process: the rows of a chunk come from one mapping, so most share their keys, and a
column of values is encoded and fingerprinted in one call (map) rather than row by row. A group
of rows this does not cover (mixed kinds of value in a column, nested objects with different
keys, an array with several values in some rows) falls back to deltabody.summary, row by row:
both give the same bytes (tests/unit/test_deltacolumns.py).
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import repeat
from operator import itemgetter
from typing import Any

import orjson
import xxhash

from .deltabody import CONTROL_KEYS, merged, summary, whole_fp
from .deltarecord import (
    COLLIDES,
    HEADER,
    MAX_ADDS,
    PLAIN,
    RECORD_VERSION,
    shape,
    value_fp,
)

_OPS = frozenset({"add", "remove"})
_dumps = orjson.dumps
_join = b"".join


def summaries(bodies: list[bytes]) -> list[bytes]:
    """Each body's summary, in order."""
    if not bodies:
        return []
    objs: list[dict[str, Any]] = orjson.loads(b"[" + b",".join(bodies) + b"]")
    keys = list(map(tuple, objs))
    first = keys[0]
    if keys.count(first) == len(keys):  # the usual chunk: one shape of object
        done = _group(objs, bodies, first)
        return done if done is not None else list(map(summary, bodies))
    groups: dict[tuple[str, ...], list[int]] = {}
    for i, k in enumerate(keys):
        groups.setdefault(k, []).append(i)
    out: list[bytes] = [b""] * len(bodies)
    for k, positions in groups.items():
        part_bodies = [bodies[i] for i in positions]
        done = _group([objs[i] for i in positions], part_bodies, k)
        if done is None:
            done = list(map(summary, part_bodies))
        for i, s in zip(positions, done, strict=True):
            out[i] = s
    return out


def _fps(values: list[Any]) -> list[bytes]:
    return list(map(value_fp, map(_dumps, values)))


def _group(
    objs: list[dict[str, Any]], bodies: list[bytes], keys: tuple[str, ...]
) -> list[bytes] | None:
    """Summaries of rows sharing their keys, or None when a column is not uniform."""
    size = len(objs)
    merge = "_merge_objects" in keys and all(o["_merge_objects"] is True for o in objs)
    if not merge and "_merge_objects" in keys and any(o["_merge_objects"] is True for o in objs):
        return None
    paths: list[str] = []
    field_cols: list[list[bytes]] = []
    add_cols: list[list[bytes]] = []
    remove_cols: list[list[bytes]] = []
    for key in keys[1:]:
        column = list(map(itemgetter(key), objs))
        kinds = set(map(type, column))
        if dict not in kinds:
            if key not in CONTROL_KEYS:
                paths.append(key)
                field_cols.append(_fps(column))
            continue
        if kinds != {dict}:
            return None
        inner = list(map(tuple, column))
        names = inner[0]
        if inner.count(names) != size:  # keys that differ from row to row
            return None
        if names and len(names) <= 2 and set(names) <= _OPS:  # array operations?
            if any(set(map(type, map(itemgetter(op), column))) != {list} for op in names):
                return None  # not in every row (deltabody.is_array_ops)
            seed = xxhash.xxh3_64_intdigest(key.encode("utf-8"))
            for op, cols in (("add", add_cols), ("remove", remove_cols)):
                if op not in names:
                    continue
                lists = list(map(itemgetter(op), column))
                lengths = set(map(len, lists))
                if lengths == {0}:
                    continue
                if lengths != {1}:
                    return None
                encodings = map(_dumps, map(itemgetter(0), lists))
                cols.append(list(map(xxhash.xxh3_64_digest, encodings, repeat(seed))))
        elif merge and merged(column[0]):  # (the same keys in every row)
            for name in names:
                paths.append(f"{key}.{name}")
                field_cols.append(_fps(list(map(itemgetter(name), column))))
        else:
            paths.append(key)
            field_cols.append(_fps(column))
    n, m, r = len(paths), len(add_cols), len(remove_cols)
    if n > 0xFFFF:  # a count must fit the header: summary says COLLIDES
        return None
    fields = shape(tuple(paths))
    wholes = list(map(whole_fp, bodies))
    points = n + m + r
    header: Callable[..., bytes] = HEADER.pack
    if fields is None:
        counts = _repeat(RECORD_VERSION, COLLIDES, 0, 0, 0, 0, points)
        return list(map(header, *counts, wholes, repeat(bytes(8))))
    values = list(map(_join, zip(*field_cols, strict=True))) if field_cols else [b""] * size
    statics = list(map(value_fp, map(fields.__add__, values)))
    flags = PLAIN if not r and m <= MAX_ADDS else 0
    heads = map(header, *_repeat(RECORD_VERSION, flags, 0, n, m, r, points), wholes, statics)
    tails = [fields + v for v in values]
    if add_cols or remove_cols:
        extra = list(map(_join, zip(*add_cols, *remove_cols, strict=True)))
        tails = list(map(bytes.__add__, tails, extra))
    return list(map(bytes.__add__, heads, tails))


def _repeat(*values: int) -> list[repeat[int]]:
    return [repeat(v) for v in values]
