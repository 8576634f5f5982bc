"""Pure: a value's converter over a whole column of a chunk (columnar.py), from the
operations of parsers.py: the column form first, then the scalar form once per distinct text
(remembered, bad texts too), the phone shortcut, or the general transform cell by cell. A bad
value is reported with its row, text and reason: the caller drops it or rejects the row.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from itertools import compress, repeat
from operator import is_, itemgetter, not_
from typing import Any

from .fileplan import ValuePlan
from .parsers import MISS, OPERATIONS, SKIP, FieldValueError
from .phones import valid_as_written_all

_strip = str.strip
_first = itemgetter(0)

# A column's bad values: (row, text, reason).
Failures = list[tuple[int, str, str]]
# Converts one column for a chunk, adding its bad values to the failures it is given; says
# whether every value is known to be a string (none SKIP), which saves a check.
ColumnConverter = Callable[[Sequence[Any], Failures], tuple[list[Any], bool]]
# Distinct values remembered per column and file (countries, genders, categories, and the
# bad values): about 150 KB a column at most, and gone with the file; and at most CACHE_TOTAL
# for all columns (10,000 columns of 1,024 entries each took 300 MB).
CACHE_ENTRIES = 1024
CACHE_TOTAL = 65_536


class _Failed:
    """A bad value remembered in a cache: its reason."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason


def parsed(operation: str, entries: int) -> ColumnConverter:
    """An operation over a column: its column form first; for the cells it leaves, a cache of
    distinct texts (bad ones too), then its as-written pattern, then its scalar form."""
    op = OPERATIONS[operation]
    column_form, parse, as_written = op.column, op.scalar, op.as_written
    cache: dict[str, Any] = {"": SKIP}  # an empty cell sends nothing
    failures: dict[str, str] = {}  # bad texts and why

    def convert(column: Sequence[str], failed: Failures) -> tuple[list[Any], bool]:
        texts = list(map(_strip, column))
        values = column_form(texts) if column_form is not None else None
        if values is texts:
            return values, True  # sent as written: strings, none skipped
        unknown: Any = MISS
        if values is None:
            # All as written (codes with a leading zero, say): in one pass, which stops at
            # the first other text (an empty one never matches: none skipped).
            if as_written is not None and all(map(as_written.fullmatch, texts)):
                return texts, True
            values = list(map(cache.get, texts))  # None: not known yet (parsers never give it)
            unknown = None
        if unknown not in values:
            return values, False
        missing = list(compress(range(len(values)), map(is_, values, repeat(unknown))))
        if as_written is not None:
            found = list(map(as_written.fullmatch, [texts[i] for i in missing]))
            room = len(cache) < entries
            for i in compress(missing, found):
                values[i] = text = texts[i]
                if room:
                    cache[text] = text
                    room = len(cache) < entries
            missing = [i for i, match in zip(missing, found, strict=True) if match is None]
        for i in missing:
            text = texts[i]
            if not text:
                values[i] = SKIP
                continue
            value = cache.get(text)
            if value is None:
                reason = failures.get(text)
                if reason is None:
                    try:
                        value = parse(text)
                    except FieldValueError as exc:
                        reason = str(exc)
                if reason is not None:
                    if len(failures) < entries:
                        failures[text] = reason
                    failed.append((i, text, reason))
                    values[i] = SKIP
                    continue
                if len(cache) < entries:
                    cache[text] = value
            values[i] = value
        return values, False

    return convert


def _converted(convert_one: Callable[[Any], Any], pairs: bool, skip_none: bool) -> ColumnConverter:
    """The general transform (case, value maps, defaults...), one call per cell."""

    def convert(column: Sequence[Any], failed: Failures) -> tuple[list[Any], bool]:
        values: list[Any] = []
        append = values.append
        for i, raw in enumerate(column):
            try:
                value = convert_one(raw)
            except FieldValueError as exc:
                failed.append((i, (raw[0] if pairs else raw).strip(), str(exc)))
                value = SKIP
            append(SKIP if skip_none and value is None else value)
        return values, False

    return convert


def _phones(convert_one: Callable[[Any], Any], pairs: bool, entries: int) -> ColumnConverter:
    """Phone numbers already in E.164 and valid go as written, without a call each; the
    others (national, spaced, invalid) through the converter, remembered per (text, region)."""
    cache: dict[Any, Any] = {}

    def convert(column: Sequence[Any], failed: Failures) -> tuple[list[Any], bool]:
        texts = list(map(_strip, map(_first, column) if pairs else column))
        quick = valid_as_written_all(texts)
        if all(quick):
            return texts, True
        values: list[Any] = texts[:]  # the others replaced below
        for i in compress(range(len(texts)), map(not_, quick)):
            text = texts[i]
            if not text:
                values[i] = SKIP
                continue
            raw = column[i]
            value = cache.get(raw)
            if value is None:
                try:
                    value = convert_one(raw)
                except FieldValueError as exc:
                    value = _Failed(str(exc))
                if len(cache) < entries:
                    cache[raw] = value
            if value.__class__ is _Failed:
                failed.append((i, text, value.reason))
                value = SKIP
            values[i] = value
        return values, False

    return convert


def column_converter(v: ValuePlan, skip_none: bool, entries: int) -> ColumnConverter:
    kind, pairs = v.kind, v.region_column is not None
    if kind == "text":
        return parsed("string", entries)
    if kind == "parse":
        return parsed(v.rule.recipe.type, entries)
    convert = v.converter()
    one: Callable[[Any], Any] = (lambda pair: convert(*pair)) if pairs else convert
    if kind == "phone":
        return _phones(one, pairs, entries)
    return _converted(one, pairs, skip_none)


def columns_of(v: ValuePlan) -> int | tuple[int, int]:
    """Where a value's cells come from: its column, or its column and its region's."""
    assert v.column is not None
    return v.column if v.region_column is None else (v.column, v.region_column)


def cells_of(columns: list[tuple[str, ...]], where: int | tuple[int, int]) -> Sequence[Any]:
    if isinstance(where, int):
        return columns[where]
    return list(zip(columns[where[0]], columns[where[1]], strict=True))
