"""Pure: JSON text over a column (columnar.py): a column's values encoded by as few orjson
calls as their types allow, as pieces (constant text, or one text per row) that a body is
joined from, row by row, in C; and the bound on a nested object's size that says when to
measure it.
"""

from __future__ import annotations

from itertools import compress, repeat
from operator import is_
from typing import Any

import orjson

from .columncache import EncodedCells
from .fileplan import ValuePlan
from .parsers import SKIP
from .transforms import MAX_NESTED_BYTES

# A body is the join of pieces: constant text, or one encoded text per row.
Piece = bytes | list[bytes]

_dumps = orjson.dumps


def encode_strings(values: list[str]) -> list[bytes]:
    """Each string JSON-encoded, without its quotes, in one orjson call, split where one item
    ends and the next begins (b'","'). A value with a quote can make that sequence itself (a
    cell ending in `",` is encoded `\\",` before the next item's quote), so when any value
    holds one, each is encoded apart (sliced: a copy, not orjson's 4 KB buffer)."""
    encoded = _dumps(values)
    if b'\\"' not in encoded:
        return encoded[2:-2].split(b'","')
    return [_dumps(value)[1:-1] for value in values]


def quoted_strings(values: list[str]) -> list[bytes]:
    """Each string JSON-encoded, with its quotes (delta fingerprints exactly that), in one
    orjson call: its items are split apart at a NUL byte put between them, a byte orjson
    never writes (it escapes every control character). The search for b'","' starts after
    the first quote: from it, a string "," would read as a separator."""
    encoded = _dumps(values)
    if b'\\"' not in encoded:  # (see encode_strings)
        return (b'"' + encoded[2:-1].replace(b'","', b'"\0"')).split(b"\0")
    return [b'"' + text + b'"' for text in encode_strings(values)]


_Skip = type(SKIP)
# Values whose JSON never holds a comma: a column of them is encoded by one orjson call.
_COMMA_FREE = frozenset({int, float, bool, type(None)})
_STRINGS_SKIPPED = {str, _Skip}
_SKIP_AS_EMPTY = {_Skip: ""}  # by type: a look-up that never hashes a cell's text


def encode(prefix: bytes, values: list[Any], strings: bool, suffix: bytes) -> list[Piece]:
    """The pieces of `prefix value suffix` for each row; rows whose value is SKIP get none.
    `strings`: every value is known to be a string."""
    if strings:
        return [prefix + b'"', encode_strings(values), b'"' + suffix]
    types = list(map(type, values))
    kinds = set(types)
    if kinds == {str}:
        return [prefix + b'"', encode_strings(values), b'"' + suffix]
    if _Skip not in kinds and kinds <= _COMMA_FREE:
        return [prefix, _dumps(values)[1:-1].split(b","), suffix]
    if kinds == _STRINGS_SKIPPED:  # strings, and rows without the value: loops in C
        texts = encode_strings(list(map(_SKIP_AS_EMPTY.get, types, values)))
        heads, tails = {str: prefix + b'"', _Skip: b""}, {str: b'"' + suffix, _Skip: b""}
        return [list(map(heads.__getitem__, types)), texts, list(map(tails.__getitem__, types))]
    # Mixed (numbers and texts, rows without the value): the strings in one orjson call, the
    # values without a comma in another, and each row takes the next of its type's, in C.
    # (Never a list of orjson's own results: each keeps its whole working buffer, 4 KB,
    # alive; the few others are copied with their key.)
    strs: list[str] = list(compress(values, map(is_, types, repeat(str))))
    plain = list(compress(values, map(_COMMA_FREE.__contains__, types)))
    each = iter(encode_strings(strs) if strs else ())
    comma_free = iter(_dumps(plain)[1:-1].split(b",") if plain else ())
    rest = kinds - _COMMA_FREE - _STRINGS_SKIPPED  # ({"$time": ...} of a nested date)
    others = iter([prefix + _dumps(v) for v in values if v.__class__ in rest])
    encoded = {str: each, _Skip: repeat(b""), **dict.fromkeys(_COMMA_FREE, comma_free)}
    heads = {str: prefix + b'"', _Skip: b"", **dict.fromkeys(rest, b"")}
    tails = {str: b'"' + suffix, _Skip: b""}
    return [
        list(map(heads.get, types, repeat(prefix))),
        list(map(next, map(encoded.get, types, repeat(others)))),
        list(map(tails.get, types, repeat(suffix))),
    ]


def encode_recorded(
    prefix: bytes, values: list[Any], strings: bool, suffix: bytes
) -> tuple[list[Piece], list[bytes] | None, bool]:
    """encode's pieces, and each row's value as JSON (b"" where the row has none) for delta
    (deltacolumns.Json) where a column of strings or numbers gives them at no extra call, and
    whether any row has none."""
    if not strings:
        types = list(map(type, values))
        kinds = set(types)
        if kinds == {str}:
            strings = True
        elif _Skip not in kinds and kinds <= _COMMA_FREE:
            texts = _dumps(values)[1:-1].split(b",")
            return [prefix, texts, suffix], texts, False
        elif kinds == _STRINGS_SKIPPED:
            texts = quoted_strings(list(map(_SKIP_AS_EMPTY.get, types, values)))
            for i in compress(range(len(types)), map(is_, types, repeat(_Skip))):
                texts[i] = b""
            heads, tails = {str: prefix, _Skip: b""}, {str: suffix, _Skip: b""}
            ends = [list(map(tails.__getitem__, types))] if suffix else []
            return [list(map(heads.__getitem__, types)), texts, *ends], texts, True
        else:
            return encode(prefix, values, False, suffix), None, True
    texts = quoted_strings(values)
    return [prefix, texts, suffix], texts, False


def joined(pieces: list[Piece]) -> list[bytes]:
    """One text per row: the pieces joined, constants repeated."""
    merged: list[Piece] = []
    for piece in pieces:
        if isinstance(piece, bytes) and merged and isinstance(merged[-1], bytes):
            merged[-1] += piece
        elif piece != b"":
            merged.append(piece)
    columns = (repeat(p) if isinstance(p, bytes) else p for p in merged)
    return list(map(b"".join, zip(*columns, strict=False)))  # repeat() never ends: rows do


# How large a nested object's part can be: (the column it comes from or None, bytes a
# character of it can become at most, bytes besides).
Growth = tuple[int | None, int, int]


def may_exceed(
    growth: list[Growth], columns: list[tuple[str, ...]], caches: list[EncodedCells | None]
) -> bool:
    """Whether a row of the chunk could hold a nested object over Braze's limit: a bound from
    the longest cell of each column, so that the exact size is measured only then. (A
    character becomes 6 bytes of JSON at most, \\u0000; 18 if a case change triples it.) A
    column whose cells were all remembered (`caches`, one a part) is bounded by the longest
    text its cache knows, without a pass over it."""
    bound = 2
    for (index, per_char, besides), cache in zip(growth, caches, strict=True):
        bound += besides
        if index is None:
            continue
        if cache is not None and cache.whole:
            bound += per_char * cache.longest
        else:
            bound += per_char * max(map(len, columns[index]))
    return bound > MAX_NESTED_BYTES


def longest_constant(v: ValuePlan) -> int:
    """The longest text a value map or default can put in place of a cell."""
    recipe = v.rule.recipe
    constants = [*(value for _, value in recipe.values or ()), recipe.default or ""]
    return max(len(str(c)) for c in constants)
