"""Pure: map a chunk of rows column by column, straight to request bodies.

The row function (rowcode.py) builds a dict per row for orjson: with the seed's mapping that is
most of a row's cost, and nearly all of it interpreter overhead. Here each column is handled
once per chunk with loops that run in C (str.strip over a column, dict look-ups, regex
matches), the strings of a column are JSON-encoded by one orjson call, and each body is joined
from the encoded pieces and the constant text between them.

Only plain cases take this path. A row holding any value that needs more (invalid, too long,
a wrong width, an identifier to check in bytes) comes back as None and is mapped by the row
function, which stays the one place that decides rejections and drops. The tests check that a
body from here is byte for byte what orjson makes of the row function's object.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from itertools import repeat
from typing import TYPE_CHECKING, Any

import orjson

from .phones import valid_as_written
from .rowcode import ID_CHARS_ALWAYS_SHORT
from .transforms import (
    COLUMN_PARSERS,
    MAX_NESTED_BYTES,
    MAX_STRING_CHARS,
    SKIP,
    FieldValueError,
    check_length,
    infer_value,
)

if TYPE_CHECKING:
    from .mapping import RowMapper, ValueRule

# A row's body from the fast path, or None: map that row with the row function. And its user.
ChunkFunction = Callable[[Sequence[list[str]]], tuple[list[bytes | None], list[str]]]
# Converts one column for a chunk, adding the rows it cannot take to the set it is given;
# says whether every value is known to be a string (none SKIP), which saves a check.
ColumnConverter = Callable[[Sequence[Any], set[int]], tuple[list[Any], bool]]
# A body is the join of pieces: constant text, or one encoded text per row.
Piece = bytes | list[bytes]

# Distinct values remembered per column and file (countries, genders, categories): about
# 150 KB a column at most, and gone with the file; and at most CACHE_TOTAL for all columns
# (10,000 columns of 1,024 entries each took 300 MB).
CACHE_ENTRIES = 1024
CACHE_TOTAL = 65_536
_dumps = orjson.dumps
_strip = str.strip


def encode_strings(values: list[str]) -> list[bytes]:
    """Each string JSON-encoded, without its quotes, in one orjson call. Inside an encoded
    string every quote is escaped, so b'","' only ever separates two items."""
    return _dumps(values)[2:-2].split(b'","')


def _plain_text(column: Sequence[str], bad: set[int]) -> tuple[list[Any], bool]:
    values = list(map(_strip, column))
    if max(map(len, values)) > MAX_STRING_CHARS:
        bad.update(i for i, v in enumerate(values) if len(v) > MAX_STRING_CHARS)
    if "" in values:
        return [v or SKIP for v in values], False
    return values, True


def _parsed(parse: Callable[[str], Any], entries: int = CACHE_ENTRIES) -> ColumnConverter:
    """A type's parser over a column: the whole column at once where the parser has a column
    form (COLUMN_PARSERS) and it takes every value, else one call per distinct value."""
    whole_column = COLUMN_PARSERS.get(parse)
    cache: dict[str, Any] = {}

    def convert(column: Sequence[str], bad: set[int]) -> tuple[list[Any], bool]:
        texts = list(map(_strip, column))
        if whole_column is not None:
            parsed = whole_column(texts)
            if parsed is not None:
                return parsed, parsed is texts  # sent as written: strings, none skipped
        values = list(map(cache.get, texts))  # parsers never return None
        if None in values:
            for i, value in enumerate(values):
                if value is None:
                    text = texts[i]
                    if not text:
                        values[i] = SKIP
                        continue
                    try:
                        values[i] = value = parse(text)
                    except FieldValueError:
                        bad.add(i)
                        values[i] = SKIP
                        continue
                    if len(cache) < entries:
                        cache[text] = value
        return values, False

    return convert


def _converted(convert_one: Callable[[Any], Any], skip_none: bool) -> ColumnConverter:
    """The general transform (case, value maps, defaults...), one call per cell."""

    def convert(column: Sequence[Any], bad: set[int]) -> tuple[list[Any], bool]:
        values: list[Any] = []
        append = values.append
        for i, raw in enumerate(column):
            try:
                value = convert_one(raw)
            except FieldValueError:
                bad.add(i)
                value = SKIP
            append(SKIP if skip_none and value is None else value)
        return values, False

    return convert


def _converter(
    rule: ValueRule, skip_none: bool = False, entries: int = CACHE_ENTRIES
) -> ColumnConverter:
    if rule.plain is check_length:
        return _plain_text
    if rule.plain is not None:
        return _parsed(rule.plain, entries)
    if rule.region_index is not None:  # its column holds (phone, region) pairs: see _cells
        in_region = rule.convert_in_region
        assert in_region is not None

        def convert_pair(pair: tuple[str, str]) -> Any:
            return in_region(*pair)

        convert_one: Callable[[Any], Any] = convert_pair
    else:
        convert_one = rule.convert
    if rule.plain_phone:
        return _phones(convert_one, rule.region_index is not None)
    return _converted(convert_one, skip_none)


def _phones(convert_one: Callable[[Any], Any], pairs: bool) -> ColumnConverter:
    """Phone numbers already in E.164 and valid go as written, without a call each; the
    others (national, spaced, invalid) through the rule's converter, one by one."""

    def convert(column: Sequence[Any], bad: set[int]) -> tuple[list[Any], bool]:
        texts = list(map(_strip, [phone for phone, _ in column] if pairs else column))
        quick = list(map(valid_as_written, texts))
        if all(quick):
            return texts, True
        values: list[Any] = []
        for i, text in enumerate(texts):
            if quick[i] or not text:
                values.append(text or SKIP)
                continue
            try:
                values.append(convert_one(column[i]))
            except FieldValueError:
                bad.add(i)
                values.append(SKIP)
        return values, False

    return convert


def _source(rule: ValueRule, index: int) -> int | tuple[int, int]:
    """Where a rule's cells come from: its column, or its column and its region's."""
    return index if rule.region_index is None else (index, rule.region_index)


def _cells(columns: list[tuple[str, ...]], source: int | tuple[int, int]) -> Sequence[Any]:
    if isinstance(source, int):
        return columns[source]
    return list(zip(columns[source[0]], columns[source[1]], strict=True))


# Values whose JSON never holds a comma: a column of them is encoded by one orjson call.
_COMMA_FREE = frozenset({int, float, bool, type(None)})


def _encode_each(values: list[Any], kinds: set[type[Any]]) -> list[bytes]:
    """Each value JSON-encoded. Never a list of orjson's own results: each keeps its whole
    working buffer (4 KB) alive, which made a chunk of a 10,000-column file take gigabytes."""
    if kinds <= _COMMA_FREE:
        return _dumps(values)[1:-1].split(b",")
    return [bytes(memoryview(encoded)) for encoded in map(_dumps, values)]  # right-sized


def _encode(prefix: bytes, values: list[Any], strings: bool, suffix: bytes) -> list[Piece]:
    """The pieces of `prefix value suffix` for each row; rows whose value is SKIP get none.
    `strings`: every value is known to be a string."""
    kinds: set[type[Any]] = {str} if strings else set(map(type, values))
    if kinds == {str}:
        return [prefix + b'"', encode_strings(values), b'"' + suffix]
    if type(SKIP) not in kinds:
        return [prefix, _encode_each(values, kinds), suffix]
    return [[b"" if v is SKIP else prefix + _dumps(v) + suffix for v in values]]


def _joined(pieces: list[Piece]) -> list[bytes]:
    """One text per row: the pieces joined, constants repeated."""
    merged: list[Piece] = []
    for piece in pieces:
        if isinstance(piece, bytes) and merged and isinstance(merged[-1], bytes):
            merged[-1] += piece
        elif piece != b"":
            merged.append(piece)
    columns = (repeat(p) if isinstance(p, bytes) else p for p in merged)
    return list(map(b"".join, zip(*columns, strict=False)))  # repeat() never ends: rows do


def _key(name: str) -> bytes:
    return b"," + _dumps(name) + b":"


# How large a nested object's part can be: (the column it comes from or None, bytes a
# character of it can become at most, bytes besides).
_Growth = tuple[int | None, int, int]


def _may_exceed(growth: list[_Growth], columns: list[tuple[str, ...]]) -> bool:
    """Whether a row of the chunk could hold a nested object over Braze's limit: a bound from
    the longest cell of each column, so that the exact size is measured only then. (A
    character becomes 6 bytes of JSON at most, \\u0000; 18 if a case change triples it.)"""
    bound = 2
    for index, per_char, besides in growth:
        bound += besides + (per_char * max(map(len, columns[index])) if index is not None else 0)
    return bound > MAX_NESTED_BYTES


def _longest_constant(rule: ValueRule) -> int:
    """The longest text a value map or default can put in place of a cell."""
    spec: Any = rule.source
    constants = [*(getattr(spec, "values", None) or {}).values(), getattr(spec, "default", "")]
    return max(len(str(c)) for c in constants)


# A column's part of a body: (key, column index (see _source) or None, converter or constant
# value, suffix).
_Part = tuple[bytes, int | tuple[int, int] | None, Any, bytes]


def compile_chunk_function(mapper: RowMapper) -> ChunkFunction | None:
    """The fast path for `mapper`, or None where it has none (an identifier other than a plain
    external_id, an array with several values, a key given twice)."""
    id_column = mapper.plain_external_id_column()
    if id_column is None:
        return None
    top: list[_Part] = []
    names = ["external_id"]
    entries = min(CACHE_ENTRIES, CACHE_TOTAL // max(1, mapper.width))  # per column
    for rule, index, _ in mapper.fields:
        assert index is not None
        top.append((_key(rule.name), _source(rule, index), _converter(rule, False, entries), b""))
        names.append(rule.name)
    for name, fixed in mapper.fixed.items():
        top.append((_key(name), None, fixed, b""))
        names.append(name)
    for name, op, (rule, index, fixed) in mapper.arrays:
        names.append(name)
        prefix, suffix = _key(name) + b'{"' + op.encode() + b'":[', b"]}"
        if index is not None:
            top.append((prefix, _source(rule, index), _converter(rule, True, entries), suffix))
        elif fixed is not SKIP and fixed is not None:
            top.append((prefix, None, fixed, suffix))
    nested: list[tuple[bytes, bool, list[_Part], list[_Growth]]] = []
    for name, merge, inferred, explicit in mapper.nested:
        names.append(name)
        inner: list[_Part] = [
            (_key(key), index, _parsed(infer_value, entries), b"") for key, index in inferred
        ]
        growth: list[_Growth] = [(index, 6, len(key) + 64) for key, index in inferred]
        for key, (rule, index, fixed) in explicit:
            if index is not None:
                inner.append(
                    (_key(key), _source(rule, index), _converter(rule, False, entries), b"")
                )
                growth.append((index, 18, len(key) + 64 + 18 * _longest_constant(rule)))
            elif fixed is not SKIP:
                inner.append((_key(key), None, fixed, b""))
                growth.append((None, 0, len(key) + 8 + len(_dumps(fixed))))
        if len({part[0] for part in inner}) < len(inner):
            return None
        nested.append((_key(name) + b"{", merge, inner, growth))
    if len(set(names)) < len(names) or len(set(n for n, _, _ in mapper.arrays)) < len(
        mapper.arrays
    ):
        return None
    width = mapper.width
    tail = b',"_update_existing_only":' + _dumps(mapper.update_existing_only) + b"}"
    merge_tail = b',"_merge_objects":true' + tail

    def pieces_of(
        parts: list[_Part], columns: list[tuple[str, ...]], bad: set[int]
    ) -> tuple[list[Piece], bool]:
        """The parts' pieces, and whether every row has every part."""
        pieces: list[Piece] = []
        complete = True
        for key, index, how, suffix in parts:
            if index is None:
                pieces.append(key + _dumps(how) + suffix)
                continue
            values, strings = how(_cells(columns, index), bad)
            encoded = _encode(key, values, strings, suffix)
            complete = complete and len(encoded) > 1
            pieces += encoded
        return pieces, complete

    def map_chunk(rows: Sequence[list[str]]) -> tuple[list[bytes | None], list[str]]:
        if not rows:
            return [], []
        if set(map(len, rows)) != {width}:  # rows of the wrong width: the row function's
            keep = [i for i, row in enumerate(rows) if len(row) == width]
            kept_bodies, kept_users = map_chunk([rows[i] for i in keep])
            bodies: list[bytes | None] = [None] * len(rows)
            users = [""] * len(rows)
            for j, i in enumerate(keep):
                bodies[i], users[i] = kept_bodies[j], kept_users[j]
            return bodies, users
        columns = list(zip(*rows, strict=True))
        bad: set[int] = set()
        users = list(map(_strip, columns[id_column]))
        # Empty ids are rejections; long ones need their bytes counted, and ones with a
        # character that is not printable a look for control characters: the row function's.
        if (
            "" in users
            or max(map(len, users)) > ID_CHARS_ALWAYS_SHORT
            or not all(map(str.isprintable, users))
        ):
            bad.update(
                i
                for i, u in enumerate(users)
                if not u or len(u) > ID_CHARS_ALWAYS_SHORT or not u.isprintable()
            )
        pieces: list[Piece] = [b'{"external_id":"', encode_strings(users), b'"']
        pieces += pieces_of(top, columns, bad)[0]
        merging: list[bool] | None = None  # rows that carry a nested object with merge
        for head, merge, inner, growth in nested:
            if not inner:
                continue  # nothing in it: never sent
            inner_pieces, complete = pieces_of(inner, columns, bad)
            if _may_exceed(growth, columns):  # the row function drops the objects over it
                sizes = [len(t) + 1 if t else 0 for t in _joined(inner_pieces)]  # {...}
                bad.update(i for i, size in enumerate(sizes) if size > MAX_NESTED_BYTES)
            if complete:  # in every row: spliced in, its first key without the comma
                first = inner_pieces[0]
                assert isinstance(first, bytes)
                pieces += [head, first[1:], *inner_pieces[1:], b"}"]
                present = [True] * len(rows)
            else:
                texts = _joined(inner_pieces)
                pieces.append([head + t[1:] + b"}" if t else b"" for t in texts])
                present = [bool(t) for t in texts]
            if merge:
                merging = present if merging is None else list(map(max, merging, present))
        if merging is None or not any(merging):
            pieces.append(tail)
        elif all(merging):
            pieces.append(merge_tail)
        else:
            pieces.append([merge_tail if m else tail for m in merging])
        bodies = list(_joined(pieces))
        for i in bad:
            bodies[i] = None
        return bodies, users

    return map_chunk
