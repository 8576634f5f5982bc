"""Pure: the JSON a value's cells became, remembered per cell text and file, for columnar.py.

A real export repeats a few texts in most columns (genders and booleans in any case, countries,
income bands, amounts): converting and encoding them again in every chunk was most of the cost
of such data. Here a chunk's cells are looked up at once (a loop in C), and only the cells not
seen before go to the converter. A bad cell is never remembered (so that each is dropped, or
rejects its row, with its reason again), and a column of mostly distinct texts (names,
addresses, phone numbers) stops being looked up at its first chunk, or once its texts fill the
cache.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import compress, repeat
from operator import is_
from typing import Any

import orjson

from .parsers import SKIP

_dumps = orjson.dumps
# A chunk that brings more new texts than a quarter of its cells (and this many): a column of
# distinct texts, which its converter's column form encodes faster than look-ups would.
_FEW_NEW = 32
# Fewer entries a column than this (a file of over 256 columns, read a few rows at a time):
# no cache. Its look-ups would cost more than they save, and 10,000 columns of small caches
# held 8 MB.
_MIN_ENTRIES = 256


class EncodedCells:
    """A value's cells (a cell's text, or a phone's text and its region's) -> its part of a
    body, `prefix value suffix` (its key, its value as JSON, what closes it), or b"" where the
    row sends nothing (an empty cell)."""

    __slots__ = ("entries", "known", "longest", "prefix", "suffix", "whole")

    def __init__(self, entries: int, prefix: bytes, suffix: bytes = b"") -> None:
        self.known: dict[Any, bytes] | None = {}  # None: off for the rest of the file
        self.entries = entries
        self.prefix, self.suffix = prefix, suffix
        self.whole = False  # the last chunk's cells were all known
        self.longest = 0  # characters of the longest text known (a phone's, not its region's)

    def _part(self, value: Any) -> bytes:
        # (A new bytes: orjson's own result keeps its whole working buffer, 4 KB, alive.)
        return b"" if value is SKIP else self.prefix + _dumps(value) + self.suffix

    def look_up(self, cells: Sequence[Any]) -> tuple[list[Any], list[int]] | None:
        """Each cell's part (None where not known) and the rows not known; None when off or
        none is known (the converter's column form then does the whole column)."""
        known = self.known
        if not known:
            return None
        if self.whole:  # likely again: no look for a None after the look-ups
            try:
                return list(map(known.__getitem__, cells)), []
            except KeyError:
                pass
        encoded = list(map(known.get, cells))
        self.whole = None not in encoded
        if self.whole:
            return encoded, []
        missing = list(compress(range(len(encoded)), map(is_, encoded, repeat(None))))
        return (encoded, missing) if len(missing) < len(cells) else None

    def learn(self, cells: Sequence[Any], values: list[Any], bad: set[Any]) -> None:
        """Remembers the cells' values (converted, in order), the bad cells' excepted, or
        turns off for a column of distinct texts."""
        known = self.known
        if known is None:
            return
        fresh = dict(zip(cells, values, strict=True))
        for cell in bad:
            fresh.pop(cell, None)
        new = fresh.keys() - known.keys()
        if len(new) > self.entries - len(known) or len(new) > max(_FEW_NEW, len(cells) // 4):
            self.known = None
            return
        for cell in new:
            known[cell] = self._part(fresh[cell])
            self.longest = max(self.longest, len(cell if cell.__class__ is str else cell[0]))

    def fill(self, encoded: list[Any], missing: list[int], values: list[Any]) -> None:
        """Puts the missing cells' parts (values converted, in the order of `missing`) in
        `encoded`."""
        for i, value in zip(missing, values, strict=True):
            encoded[i] = self._part(value)

    @property
    def on(self) -> bool:
        return self.known is not None


def cells_cache(entries: int, prefix: bytes, suffix: bytes = b"") -> EncodedCells | None:
    """A column's cache of `entries`, or None where it would not pay (see _MIN_ENTRIES)."""
    return EncodedCells(entries, prefix, suffix) if entries >= _MIN_ENTRIES else None
