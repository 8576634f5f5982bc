"""Pure: a FilePlan's chunk of rows mapped column by column, straight to request bodies.

The row function (rowcode.py) builds a dict per row for orjson: most of a row's cost, nearly
all of it interpreter overhead. Here each column is handled once per chunk with loops that run
in C (str.strip over a column, dict look-ups, the column forms of parsers.py), the strings of
a column are JSON-encoded by one orjson call, and each body is joined from the encoded pieces
and the constant text between them. A bad value that is dropped is dropped here, cell by cell
(the row is sent without it, the Drop recorded).

A row this cannot take comes back as None, for the row function: a wrong width, an
identifier to check (empty, long or not printable), a bad value that rejects its row, a
nested object that may be over Braze's limit. The tests check every body against the oracle.

Asked to (`record`), a chunk also hands back what its bodies were made of (Recorded): delta
summarises the rows from it (deltacolumns.py) instead of parsing the bodies again.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from operator import itemgetter
from typing import Any, Protocol

import orjson

from .chunks import Drop
from .columncache import EncodedCells, cells_cache
from .columnforms import (
    CACHE_ENTRIES,
    CACHE_TOTAL,
    Failures,
    cells_of,
    column_converter,
    columns_of,
    parsed,
)
from .deltacolumns import Encoded, Fixed, Json, Nested, Recorded, Values
from .fileplan import MERGE_OBJECTS, UPDATE_EXISTING_ONLY, ArrayPlan, FilePlan, ValuePlan
from .identifiers import unusable_rows
from .jsonpieces import (
    Growth,
    Piece,
    encode,
    encode_recorded,
    encode_strings,
    joined,
    longest_constant,
    may_exceed,
)
from .mapping import Rejection
from .parsers import SKIP
from .rowcode import compile_identify
from .transforms import MAX_NESTED_BYTES

# Per row: its body, or None (the row function's); its user; and the values it dropped.
ChunkResult = tuple[list[bytes | None], list[str], dict[int, list[Drop]]]


class ChunkFunction(Protocol):
    def __call__(
        self,
        rows: Sequence[list[str]],
        line_numbers: Sequence[int],
        record: list[Recorded] | None = None,
    ) -> ChunkResult: ...


_dumps = orjson.dumps
_strip = str.strip
_rest = itemgetter(slice(1, None))  # a part without its leading comma


def _key(name: str) -> bytes:
    return b"," + _dumps(name) + b":"


# A value's part of a body: (key, its columns (columns_of) or None, converter or fixed value,
# suffix, name for drops, whether a bad value rejects the row, its cells' JSON remembered).
_Part = tuple[bytes, int | tuple[int, int] | None, Any, bytes, str, bool, EncodedCells | None]


def _part(
    key: bytes, v: ValuePlan, entries: int, skip_none: bool = False, suffix: bytes = b""
) -> _Part:
    if v.column is None:
        return (key, None, v.fixed, suffix, v.name, False, None)
    return (
        key,
        columns_of(v),
        column_converter(v, skip_none, entries),
        suffix,
        v.name,
        v.reject is not None,
        cells_cache(entries, key, suffix),
    )


_GROUP: Any = -1  # a part's columns: an array's several values (see _array_objects)


def _array_objects(
    values: list[tuple[str, _Part]],
    values_of: Callable[[_Part], tuple[list[Any], bool]],
    rows: int,
) -> list[dict[str, list[Any]]]:
    """Each row's `{"add":[...],"remove":[...]}` from its values' columns."""
    objects: list[dict[str, list[Any]]] = [{} for _ in range(rows)]
    for op, part in values:
        if part[1] is None:  # a fixed value (never SKIP or None: left out by the plan)
            column: list[Any] = [part[2]] * rows
        else:
            column = values_of(part)[0]
        for obj, value in zip(objects, column, strict=True):
            if value is not SKIP:
                obj.setdefault(op, []).append(value)
    return objects


def compile_chunk_function(plan: FilePlan) -> ChunkFunction | None:
    """The fast path for `plan`, or None where it has none (a key given twice)."""
    id_column = plan.id_column_as_written
    identify = compile_identify(plan)  # any other identifier: row by row
    entries = min(CACHE_ENTRIES, CACHE_TOTAL // max(1, plan.width))  # per column
    top: list[_Part] = [_part(_key(v.name), v, entries) for v in plan.fields]
    names = [plan.identifier_kind, *(v.name for v in plan.fields)]
    kinds = ["field"] * len(top)  # each top part's kind, for Recorded
    for name, fixed in plan.fixed.items():
        top.append((_key(name), None, fixed, b"", name, False, None))
        names.append(name)
        kinds.append("field")
    groups: dict[str, list[ArrayPlan]] = {}  # the values of each array, in order
    for array in plan.arrays:
        groups.setdefault(array.name, []).append(array)
    for name, arrays in groups.items():
        names.append(name)
        if len(arrays) == 1:  # the usual array: one value, encoded column-wise
            prefix = _key(name) + b'{"' + arrays[0].op.encode() + b'":['
            top.append(_part(prefix, arrays[0].value, entries, True, b"]}"))
            kinds.append(arrays[0].op)
        else:  # several: each row's object built from the converted columns
            values = [(a.op, _part(b"", a.value, entries, True)) for a in arrays]
            top.append((_key(name), _GROUP, values, b"", name, False, None))
            kinds.append("ops")
    described = list(zip(kinds, names[1:], strict=True))
    nested: list[tuple[bytes, bool, list[_Part], list[Growth], str, list[str]]] = []
    for obj in plan.nested:
        names.append(obj.name)
        inner: list[_Part] = [
            (
                _key(key),
                index,
                parsed("infer", entries),
                b"",
                f"{obj.name}.{key}",
                False,
                cells_cache(entries, _key(key)),
            )
            for key, index in obj.inferred
        ]
        keys = [key for key, _ in obj.inferred] + [key for key, _ in obj.explicit]
        growth: list[Growth] = [(index, 6, len(key) + 64) for key, index in obj.inferred]
        for key, v in obj.explicit:
            inner.append(_part(_key(key), v, entries))
            if v.column is not None:
                growth.append((v.column, 18, len(key) + 64 + 18 * longest_constant(v)))
            else:
                growth.append((None, 0, len(key) + 8 + len(_dumps(v.fixed))))
        if len({part[0] for part in inner}) < len(inner):
            return None
        nested.append((_key(obj.name) + b"{", obj.merge, inner, growth, obj.name, keys))
    if len(set(names)) < len(names):  # an array with two operations, a key given twice
        return None
    width = plan.width
    tail = b"," + _dumps(UPDATE_EXISTING_ONLY) + b":" + _dumps(plan.update_existing_only) + b"}"
    merge_tail = b"," + _dumps(MERGE_OBJECTS) + b":true" + tail

    def pieces_of(
        parts: list[_Part],
        columns: list[tuple[str, ...]],
        bad: set[int],
        drops: dict[int, list[Drop]],
        line_numbers: Sequence[int],
        recorded: list[Values] | None,
    ) -> list[Piece]:
        """The parts' pieces: a constant where every row has the same, else one per row;
        with `recorded`, each part's values (or its remembered parts) appended to it."""
        pieces: list[Piece] = []
        record = (lambda _: None) if recorded is None else recorded.append

        def converted(
            part: _Part, cells: Sequence[Any], rows: list[int] | None = None
        ) -> tuple[list[Any], bool, Failures]:
            """The cells' values; `rows`: the chunk's row of each cell, when not all."""
            _, _, how, _, name, rejects, _ = part
            failed: Failures = []
            values, strings = how(cells, failed)
            if failed:
                if rows is not None:
                    failed = [(rows[j], text, reason) for j, text, reason in failed]
                if rejects:
                    bad.update(i for i, _, _ in failed)
                else:
                    for i, text, reason in failed:
                        drops.setdefault(i, []).append(Drop(line_numbers[i], name, text, reason))
            return values, strings, failed

        def values_of(part: _Part) -> tuple[list[Any], bool]:
            assert part[1] is not None
            values, strings, _ = converted(part, cells_of(columns, part[1]))
            return values, strings

        for part in parts:
            key, where, how, suffix, _, _, cache = part
            if where is None:
                pieces.append(key + _dumps(how) + suffix)
                record(Fixed(how))
            elif where is _GROUP:  # an array with several values: {"add": [...], ...}
                objects = _array_objects(how, values_of, len(columns[0]))
                pieces.append([key + _dumps(obj) if obj else b"" for obj in objects])
                record(objects)
            else:
                cells = cells_of(columns, where)
                found = None if cache is None else cache.look_up(cells)
                if found is None:  # none known: the whole column converted and encoded
                    values, strings, failed = converted(part, cells)
                    if recorded is None:
                        pieces += encode(key, values, strings, suffix)
                    else:  # each value's JSON, where its pieces hold it, for delta
                        encoded_pieces, texts, gaps = encode_recorded(key, values, strings, suffix)
                        pieces += encoded_pieces
                        record(values if texts is None else Json(texts, gaps))
                    if cache is not None and cache.on:
                        cache.learn(cells, values, {cells[i] for i, _, _ in failed})
                    continue
                encoded, missing = found
                if missing:  # only the cells not known are converted
                    assert cache is not None
                    unknown = [cells[i] for i in missing]
                    values, _, failed = converted(part, unknown, missing)
                    cache.fill(encoded, missing, values)
                    cache.learn(unknown, values, {cells[i] for i, _, _ in failed})
                pieces.append(encoded)  # (a row without the value: b"", no key either)
                record(Encoded(encoded, len(key), len(suffix)))
        return pieces

    def identities(
        rows: Sequence[list[str]], line_numbers: Sequence[int], bad: set[int]
    ) -> tuple[list[str], list[bytes]]:
        """Each row's user and its body's start (the identifier's keys), row by row."""
        users, heads = [], []
        for i, row in enumerate(rows):
            identity = identify(row, line_numbers[i])
            if isinstance(identity, Rejection):
                bad.add(i)  # the row function rejects it
                users.append("")
                heads.append(b"{")
            else:
                users.append(identity[0])
                heads.append(_dumps(identity[1])[:-1])
        return users, heads

    def map_chunk(
        rows: Sequence[list[str]],
        line_numbers: Sequence[int],
        record: list[Recorded] | None = None,
    ) -> ChunkResult:
        if not rows:
            return [], [], {}
        if set(map(len, rows)) != {width}:  # rows of the wrong width: the row function's
            keep = [i for i, row in enumerate(rows) if len(row) == width]
            kept_bodies, kept_users, kept_drops = map_chunk(
                [rows[i] for i in keep], [line_numbers[i] for i in keep], record
            )
            if record:
                record[-1] = record[-1]._replace(positions=keep)
            bodies: list[bytes | None] = [None] * len(rows)
            users = [""] * len(rows)
            for j, i in enumerate(keep):
                bodies[i], users[i] = kept_bodies[j], kept_users[j]
            return bodies, users, {keep[j]: d for j, d in kept_drops.items()}
        columns = list(zip(*rows, strict=True))
        bad: set[int] = set()
        drops: dict[int, list[Drop]] = {}
        if id_column is None:
            users, heads = identities(rows, line_numbers, bad)
            pieces: list[Piece] = [heads]
        else:
            users = list(map(_strip, columns[id_column]))
            # Empty ids are rejections; long ones need their bytes counted, and ones with a
            # character that is not printable a look for control characters: the row
            # function's.
            bad.update(unusable_rows(users))
            pieces = [b'{"external_id":"', encode_strings(users), b'"']
        top_values: list[Values] | None = None if record is None else []
        pieces += pieces_of(top, columns, bad, drops, line_numbers, top_values)
        merging: list[bool] | None = None  # rows that carry a nested object with merge
        nested_values: list[Nested] = []
        for head, merge, inner, growth, name, keys in nested:
            if not inner:
                continue  # nothing in it: never sent
            inner_values: list[Values] | None = None if record is None else []
            inner_pieces = pieces_of(inner, columns, bad, drops, line_numbers, inner_values)
            caches = [part[6] for part in inner]
            if may_exceed(growth, columns, caches):  # the row function drops those over it
                sizes = [len(t) + 1 if t else 0 for t in joined(inner_pieces)]  # {...}
                bad.update(i for i, size in enumerate(sizes) if size > MAX_NESTED_BYTES)
            first = inner_pieces[0]
            if isinstance(first, bytes) or b"" not in first:
                # Its first key is in every row (so is the object): spliced in, that key
                # without its comma, whether the others are in a row or not.
                first = first[1:] if isinstance(first, bytes) else list(map(_rest, first))
                pieces += [head, first, *inner_pieces[1:], b"}"]
                present = [True] * len(rows)
            else:
                texts = joined(inner_pieces)
                pieces.append([head + t[1:] + b"}" if t else b"" for t in texts])
                present = [bool(t) for t in texts]
            if merge:
                merging = present if merging is None else list(map(max, merging, present))
            if inner_values is not None:
                nested_values.append((name, list(zip(keys, inner_values, strict=True)), present))
        if merging is None or not any(merging):
            pieces.append(tail)
        elif all(merging):
            pieces.append(merge_tail)
        else:
            pieces.append([merge_tail if m else tail for m in merging])
        bodies = list(joined(pieces))
        if record is not None and top_values is not None:
            top_ = [(*d, v) for d, v in zip(described, top_values, strict=True)]
            record.append(Recorded(top_, nested_values, merging, None))
        for i in bad:
            bodies[i] = None
            drops.pop(i, None)
        return bodies, users, drops

    return map_chunk
