"""Pure: one attributes object, as the mapping serialised it, seen by delta (issue 16): its
values at their paths, its data points, and the object rebuilt without the values Braze holds.

Paths: a standard field by its name; each key of a nested object at `name.key` when the object
is merged (`_merge_objects`: Braze keeps keys the object lacks), the whole object as one value
otherwise (Braze replaces it); a `{"$time": ...}` value is one value. Array operations
(`{"add": [...], "remove": [...]}`) give one value per element: adds are compared, removes
always sent. The object's first key is its identifier; `_merge_objects` and
`_update_existing_only` are control keys, not data points.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, NamedTuple

import orjson
import xxhash

from .delta import HEADER_BYTES, Merge, Mode, Remember, build_record, raw_body, refreshed_at

CONTROL_KEYS = frozenset({"_merge_objects", "_update_existing_only"})

# The whole object's fingerprint: an unchanged row is decided by it without parsing the object
# (delta.held_whole). XXH3 of the exact bytes: the mapping's encoding is deterministic.
whole_fp = xxhash.xxh3_64_digest
_dumps = orjson.dumps
_loads = orjson.loads


class Parsed(NamedTuple):
    obj: dict[str, Any]
    fields: dict[str, bytes]  # path -> the value's JSON encoding
    adds: list[tuple[str, bytes]]  # (array, value's encoding), in the object's order
    removes: list[tuple[str, bytes]]
    mode: Mode
    nested: frozenset[str]  # names of the objects whose keys are paths of their own

    @property
    def points(self) -> int:
        """Braze data points the object writes."""
        return len(self.fields) + len(self.adds) + len(self.removes)


def _is_array_ops(value: dict[str, Any]) -> bool:
    """{"add": [...]}, {"remove": [...]} or both (called per object of a row: kept lean)."""
    size = len(value)
    if size == 1:
        ops = value.get("add", value.get("remove"))
        return type(ops) is list
    return size == 2 and type(value.get("add")) is list and type(value.get("remove")) is list


def parse(body: bytes) -> Parsed:
    """The object's values at their paths (once per row acknowledged: kept lean)."""
    return _parse_object(_loads(body))


def _parse_object(obj: dict[str, Any]) -> Parsed:
    fields: dict[str, bytes] = {}
    adds: list[tuple[str, bytes]] = []
    removes: list[tuple[str, bytes]] = []
    nested: set[str] = set()
    merge = obj.get("_merge_objects") is True
    dumps = _dumps
    items = iter(obj.items())
    next(items, None)  # the identifier
    for name, value in items:
        if type(value) is not dict:
            fields[name] = dumps(value)
        elif _is_array_ops(value):  # plain loops: no comprehension's frame per array
            for item in value.get("add") or ():
                adds.append((name, dumps(item)))
            for item in value.get("remove") or ():
                removes.append((name, dumps(item)))
        elif merge and not any(key.startswith("$") for key in value):
            nested.add(name)
            prefix = name + "."
            for key, inner in value.items():
                fields[prefix + key] = dumps(inner)
        else:
            fields[name] = dumps(value)
    for key in CONTROL_KEYS:
        fields.pop(key, None)
    mode: Mode = "append" if obj.get("_update_existing_only") is True else "upsert"
    return Parsed(obj, fields, adds, removes, mode, frozenset(nested))


def rebuild(parsed: Parsed, skipped_fields: Iterable[str], skipped_adds: Iterable[int]) -> bytes:
    """The object without the skipped values (its identifier and control keys kept; a nested
    object or array operation left empty is left out)."""
    skip = set(skipped_fields)
    skip_adds = set(skipped_adds)
    out: dict[str, Any] = {}
    items = iter(parsed.obj.items())
    first = next(items, None)
    if first is not None:
        out[first[0]] = first[1]
    add_index = 0
    for name, value in items:
        if name in CONTROL_KEYS:
            out[name] = value
        elif name in parsed.nested:
            kept = {k: v for k, v in value.items() if f"{name}.{k}" not in skip}
            if kept:
                out[name] = kept
        elif type(value) is dict and _is_array_ops(value):
            ops: dict[str, list[Any]] = {}
            added = value.get("add")
            if added is not None:
                kept_adds = [v for i, v in enumerate(added, add_index) if i not in skip_adds]
                add_index += len(added)
                if kept_adds:
                    ops["add"] = kept_adds
            if value.get("remove"):
                ops["remove"] = value["remove"]
            if ops:
                out[name] = ops
        elif name not in skip:
            out[name] = value
    return _dumps(out)


def count_points(body: bytes) -> int:
    """The object's data points, without building its paths (a first acknowledgement)."""
    obj: dict[str, Any] = _loads(body)
    merge = obj.get("_merge_objects") is True
    points = 0
    items = iter(obj.items())
    next(items, None)  # the identifier
    for name, value in items:
        if type(value) is not dict:
            points += name not in CONTROL_KEYS
        elif _is_array_ops(value):
            points += len(value.get("add") or ()) + len(value.get("remove") or ())
        elif merge and not any(key.startswith("$") for key in value):
            points += len(value)
        else:
            points += 1
    return points


def expand(record: bytes | None) -> bytes | None:
    """A RAW record as fingerprints (delta.build_record's form), its time and fingerprint kept;
    any other record as it is. None if it cannot be (then nothing is known)."""
    body = raw_body(record)
    if body is None:
        return record
    assert record is not None
    try:
        parsed = parse(body)
    except orjson.JSONDecodeError:
        return None
    whole = record[HEADER_BYTES - 8 : HEADER_BYTES]
    since = refreshed_at(record)
    if since is None:
        return None
    remember = Remember(Merge.REBUILD, parsed.fields, parsed.adds, whole, None, (), parsed.points)
    return build_record(remember, None, since)
