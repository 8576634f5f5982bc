"""Pure: a chunk's summaries (deltarecord.summarize_fps's bytes) assembled from its columns'
fingerprints (deltacolumns.py), in a few passes over the chunk: rows are told apart by which
fields they have and how many array values (their pattern), each pattern's header and paths'
fingerprints made once; each row is then its fingerprints joined, in C, its source row's
fingerprint (deltaprefilter.py) among them where it may carry one."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import compress, repeat
from operator import is_
from typing import Any

from .deltarecord import (
    HEADER,
    MAX_ADDS,
    NO_RAW,
    PLAIN,
    RAW_AT,
    RECORD_VERSION,
    items,
    shape,
    summarize_fps,
    value_fp,
)

Column = tuple[list[bytes], bool]  # an array's fingerprints per row; whether their sizes vary

_join = b"".join
# Each pattern's header and paths (_head), by the chunk's columns and pattern; cleared when full.
_HEADS_CACHED = 4096
_heads: dict[tuple[Any, ...], tuple[bytes | None, bytes, bool]] = {}


def assembled(
    paths: list[str],
    fields: list[list[bytes]],
    varied: list[int],
    adds: list[Column],
    removes: list[Column],
    wholes: list[bytes],
    raws: Sequence[bytes] | None,
) -> list[bytes]:
    """Each row's summary from columns of fingerprints, b"" where a row has none: `fields` (at
    `paths`; `varied`: those some rows lack), the arrays' values added and removed (each saying
    whether its size varies from row to row), each row's whole object's, and its source row's
    (`raws`, carried where the row's pattern may: deltaprefilter.keepable). A column said to
    vary need not; one that varies must say so."""
    size = len(wholes)
    if not size:
        return []
    arrays = [column for column, _ in (*adds, *removes)]
    # The columns that differ in size from row to row (a field some rows lack, an array with
    # no value or several in some) make the pattern; the others count the same in each row.
    varied_arrays = [i for i, (_, flag) in enumerate((*adds, *removes)) if flag]
    counted = [len(c[0]) // 8 if i not in varied_arrays else 0 for i, c in enumerate(arrays)]
    columns = (tuple(paths), tuple(varied), tuple(varied_arrays), tuple(counted), len(adds))
    if len(_heads) > _HEADS_CACHED:
        _heads.clear()
    patterns: list[tuple[int, ...]] | None = None  # the usual chunk: one pattern
    if varied or varied_arrays:
        lengths = [list(map(len, fields[i])) for i in varied]
        lengths += [list(map(len, arrays[i])) for i in varied_arrays]
        patterns = list(zip(*lengths, strict=True))
    heads: dict[tuple[int, ...], bytes | None] = {}  # the header up to `raw`, by pattern
    shapes: dict[tuple[int, ...], bytes] = {}  # its paths' fingerprints
    keeps: dict[tuple[int, ...], bool] = {}  # whether its rows name their source rows
    for pattern in {()} if patterns is None else set(patterns):
        made = _heads.get((columns, pattern))
        if made is None:
            made = _heads[columns, pattern] = _head(*columns, pattern)
        heads[pattern], shapes[pattern], keeps[pattern] = made
    if patterns is None:
        row_heads, row_shapes = [heads[()]] * size, [shapes[()]] * size
    else:
        row_heads = list(map(heads.__getitem__, patterns))
        row_shapes = list(map(shapes.__getitem__, patterns))
    if raws is None or not any(keeps.values()):
        raws = [NO_RAW] * size
    elif patterns is not None and not all(keeps.values()):
        raws = [r if keeps[p] else NO_RAW for r, p in zip(raws, patterns, strict=True)]
    keyed = list(map(_join, zip(row_shapes, *fields, strict=True)))  # paths, then values
    statics = map(value_fp, keyed)
    if None not in heads.values():
        rest = (raws, wholes, statics, keyed, *arrays)
        return list(map(_join, zip(row_heads, *rest, strict=True)))
    # Paths that collide: those rows are made one by one.
    starts = map(_or_empty, row_heads)
    found = list(map(_join, zip(starts, raws, wholes, statics, keyed, *arrays, strict=True)))
    for i in compress(range(size), map(is_, row_heads, repeat(None))):
        row = [c[i] for c in fields], [c[0][i] for c in adds], [c[0][i] for c in removes]
        found[i] = _row(paths, *row, wholes[i])
    return found


def _head(
    paths: tuple[str, ...],
    varied: tuple[int, ...],
    varied_arrays: tuple[int, ...],
    counted: tuple[int, ...],
    n_adds: int,
    pattern: tuple[int, ...],
) -> tuple[bytes | None, bytes, bool]:
    """A pattern's header up to `raw` (None where its paths collide: its rows are made one by
    one), its paths' fingerprints, and whether its rows may name their source rows (none
    removes array values: deltaprefilter.keepable)."""
    lacking = {i for i, length in zip(varied, pattern[: len(varied)], strict=True) if not length}
    present = tuple(p for i, p in enumerate(paths) if i not in lacking)
    counts = list(counted)
    for i, length in zip(varied_arrays, pattern[len(varied) :], strict=True):
        counts[i] = length // 8
    n, m, r = len(present), sum(counts[:n_adds]), sum(counts[n_adds:])
    shaped = shape(present) if max(n, m, r) <= 0xFFFF else None
    if shaped is None:
        return None, b"", False
    flags = PLAIN if not r and m <= MAX_ADDS else 0
    points = min(n + m + r, 0xFFFF)
    head = HEADER.pack(RECORD_VERSION, flags, 0, n, m, r, points, NO_RAW, b"", b"")
    return head[:RAW_AT], shaped, not r


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
