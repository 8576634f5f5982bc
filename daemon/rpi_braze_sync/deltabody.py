"""Pure: one attributes object, as the mapping serialised it, seen by delta (issue 16): its
values at their paths and its summary (deltarecord.summarize) where it was not made from the
mapping's columns (deltacolumns.py); and the object rebuilt without the values Braze holds, in
the daemon.

Paths: a standard field by its name; each key of a nested object at `name.key` when the object
is merged (`_merge_objects`: Braze keeps keys the object lacks), the whole object as one value
otherwise (Braze replaces it); a `{"$time": ...}` value is one value. Array operations
(`{"add": [...], "remove": [...]}`) give one value per element: adds are compared, removes
always sent. The object's first key is its identifier; `_merge_objects` and
`_update_existing_only` are control keys, not data points. Fields and array values are
numbered in the object's order: `summary` and `rebuild` walk it alike.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any, NamedTuple

import orjson
import xxhash

from .delta import Mode
from .deltarecord import summarize
from .fileplan import MERGE_OBJECTS, UPDATE_EXISTING_ONLY

CONTROL_KEYS = frozenset({MERGE_OBJECTS, UPDATE_EXISTING_ONLY})

# The whole object's fingerprint: an unchanged row is decided by it without reading the object
# (delta.held_whole). XXH3 of the exact bytes: the mapping's encoding is deterministic.
whole_fp = xxhash.xxh3_64_digest
_dumps = orjson.dumps
_loads = orjson.loads


class Parsed(NamedTuple):
    obj: dict[str, Any]
    paths: list[str]  # each field's path, in the object's order
    encodings: list[bytes]  # each field's value's JSON encoding, likewise
    adds: list[tuple[str, bytes]]  # (array, value's encoding), in the object's order
    removes: list[tuple[str, bytes]]
    mode: Mode

    @property
    def fields(self) -> dict[str, bytes]:
        return dict(zip(self.paths, self.encodings, strict=True))

    @property
    def points(self) -> int:
        """Braze data points the object writes."""
        return len(self.paths) + len(self.adds) + len(self.removes)


def is_array_ops(value: dict[str, Any]) -> bool:
    """{"add": [...]}, {"remove": [...]} or both (called per object of a row: kept lean)."""
    size = len(value)
    if size == 1:
        ops = value.get("add", value.get("remove"))
        return type(ops) is list
    return size == 2 and type(value.get("add")) is list and type(value.get("remove")) is list


def merged(value: dict[str, Any]) -> bool:
    """A nested object whose keys are paths of their own (under _merge_objects)."""
    return not any(key.startswith("$") for key in value)


def parse(body: bytes) -> Parsed:
    """The object's values at their paths (once per row, in the mapping process: kept lean)."""
    obj: dict[str, Any] = _loads(body)
    paths: list[str] = []
    encodings: list[bytes] = []
    adds: list[tuple[str, bytes]] = []
    removes: list[tuple[str, bytes]] = []
    merge = obj.get(MERGE_OBJECTS) is True
    dumps = _dumps
    items = iter(obj.items())
    next(items, None)  # the identifier
    for name, value in items:
        if type(value) is not dict:
            if name not in CONTROL_KEYS:
                paths.append(name)
                encodings.append(dumps(value))
        elif is_array_ops(value):  # plain loops: no comprehension's frame per array
            for item in value.get("add") or ():
                adds.append((name, dumps(item)))
            for item in value.get("remove") or ():
                removes.append((name, dumps(item)))
        elif merge and merged(value):
            prefix = name + "."
            for key, inner in value.items():
                paths.append(prefix + key)
                encodings.append(dumps(inner))
        else:
            paths.append(name)
            encodings.append(dumps(value))
    mode: Mode = "append" if obj.get(UPDATE_EXISTING_ONLY) is True else "upsert"
    return Parsed(obj, paths, encodings, adds, removes, mode)


def summary(body: bytes) -> bytes:
    """The row as delta compares and remembers it (deltarecord.summarize), from parse's walk.
    Rows mapped column-wise are summarised from their columns instead (deltacolumns.py)."""
    parsed = parse(body)
    return summarize(parsed.paths, parsed.encodings, parsed.adds, parsed.removes, whole_fp(body))


def rebuild(
    obj: dict[str, Any], skipped_fields: Collection[int], skipped_adds: Collection[int]
) -> bytes:
    """The object (as parsed from its body) without the skipped fields and array values, by
    their numbers (delta.Decision); its identifier and control keys kept, a nested object or
    array operation left empty left out."""
    skip = skipped_fields if isinstance(skipped_fields, (set, frozenset)) else set(skipped_fields)
    skip_adds = skipped_adds if isinstance(skipped_adds, (set, frozenset)) else set(skipped_adds)
    merge = obj.get(MERGE_OBJECTS) is True
    out: dict[str, Any] = {}
    items = iter(obj.items())
    first = next(items, None)
    if first is not None:
        out[first[0]] = first[1]
    field = add = 0
    for name, value in items:
        if type(value) is not dict:
            if name in CONTROL_KEYS:
                out[name] = value
            else:
                if field not in skip:
                    out[name] = value
                field += 1
        elif is_array_ops(value):
            add = _keep_array_ops(out, name, value, add, skip_adds)
        elif merge and merged(value):
            kept = {}
            for key, inner in value.items():
                if field not in skip:
                    kept[key] = inner
                field += 1
            if kept:
                out[name] = kept
        else:
            if field not in skip:
                out[name] = value
            field += 1
    return _dumps(out)


def arrays_only(obj: dict[str, Any], skipped_adds: Collection[int]) -> bytes:
    """rebuild with every field skipped (a row whose fields Braze holds: delta's `static`
    matched): its identifier, the array values not skipped and the control keys."""
    skip_adds = skipped_adds if isinstance(skipped_adds, (set, frozenset)) else set(skipped_adds)
    out: dict[str, Any] = {}
    items = iter(obj.items())
    first = next(items, None)
    if first is not None:
        out[first[0]] = first[1]
    add = 0
    for name, value in items:
        if type(value) is dict:
            if is_array_ops(value):
                add = _keep_array_ops(out, name, value, add, skip_adds)
        elif name in CONTROL_KEYS:
            out[name] = value
    return _dumps(out)


def _keep_array_ops(
    out: dict[str, Any], name: str, value: dict[str, Any], add: int, skip_adds: Collection[int]
) -> int:
    """Copy `name`'s array operations into `out`, less the added values skipped (numbered
    across the object from `add`); returns the number of the next added value."""
    ops: dict[str, list[Any]] = {}
    added = value.get("add")
    if added:
        kept_adds = [v for i, v in enumerate(added, add) if i not in skip_adds]
        add += len(added)
        if kept_adds:
            ops["add"] = kept_adds
    if value.get("remove"):
        ops["remove"] = value["remove"]
    if ops:
        out[name] = ops
    return add
