"""The oracle of the mapping executors: a FilePlan walked row by row, generically, every value
through its general compiled transform (transforms.compile_value), with none of the
executors' shortcuts (kinds, inlined identifiers, column forms, caches). The row function
(rowcode.py) and the column-wise encoder (columnar.py) must give what this gives, byte for
byte: tests/unit/test_property.py checks it on random rows of every test mapping.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from rpi_braze_sync.chunks import Drop
from rpi_braze_sync.fileplan import MERGE_OBJECTS, UPDATE_EXISTING_ONLY, FilePlan, ValuePlan
from rpi_braze_sync.identifiers import identifier_problem
from rpi_braze_sync.mapping import Mapped, Rejection
from rpi_braze_sync.parsers import SKIP, FieldValueError, infer_value
from rpi_braze_sync.transforms import MAX_NESTED_BYTES, nested_too_large


def value_of(v: ValuePlan, cells: Sequence[str]) -> Any:
    if v.column is None:
        return v.fixed
    if v.region_column is not None:
        return v.converter()(cells[v.column], cells[v.region_column])
    return v.converter()(cells[v.column])


def identify(
    plan: FilePlan, cells: Sequence[str], line_no: int
) -> tuple[str, dict[str, Any]] | Rejection:
    values = []
    kind = plan.identifier_kind
    for v in plan.identifier:
        try:
            value = value_of(v, cells)
        except FieldValueError as exc:
            raw = cells[v.column] if v.column is not None else ""
            return Rejection(line_no, f"{v.name}: {raw.strip()!r} is {exc}")
        if value is SKIP or value is None or value == "":
            return Rejection(line_no, f"{v.name} is empty")
        problem = identifier_problem(v.name, str(value), kind == "external_id")
        if problem is not None:
            return Rejection(line_no, problem)
        values.append(str(value))
    if kind == "user_alias":
        name, label = values
        return f"user_alias\0{label}\0{name}", {
            "user_alias": {"alias_name": name, "alias_label": label}
        }
    value = values[0]
    return (value if kind == "external_id" else f"{kind}\0{value}"), {kind: value}


def map_row_oracle(plan: FilePlan, cells: Sequence[str], line_no: int) -> Mapped | Rejection:
    if len(cells) != plan.width:
        return Rejection(
            line_no, f"the row has {len(cells)} fields where the header has {plan.width}"
        )
    identity = identify(plan, cells, line_no)
    if isinstance(identity, Rejection):
        return identity
    user, attributes = identity
    drops: list[Drop] = []

    def bad(v: ValuePlan, exc: FieldValueError) -> Rejection | None:
        raw = cells[v.column].strip() if v.column is not None else ""
        if v.reject is None:
            drops.append(Drop(line_no, v.name, raw, str(exc)))
            return None
        if v.show_value:
            return Rejection(line_no, f"{v.reject}: {raw!r} is {exc}")
        return Rejection(line_no, f"{v.reject}: {exc}")

    for v in plan.fields:
        try:
            value = value_of(v, cells)
        except FieldValueError as exc:
            if (rejection := bad(v, exc)) is not None:
                return rejection
            continue
        if value is not SKIP:
            attributes[v.name] = value
    attributes.update(plan.fixed)
    for array in plan.arrays:
        try:
            item = value_of(array.value, cells)
        except FieldValueError as exc:
            if (rejection := bad(array.value, exc)) is not None:
                return rejection
            continue
        if item is SKIP or item is None:
            continue
        attributes.setdefault(array.name, {}).setdefault(array.op, []).append(item)
    merge = False
    for nested in plan.nested:
        obj: dict[str, Any] = {}
        for key, index in nested.inferred:
            raw = cells[index].strip()
            if not raw:
                continue
            try:
                obj[key] = infer_value(raw)
            except FieldValueError as exc:
                drops.append(Drop(line_no, f"{nested.name}.{key}", raw, str(exc)))
        for key, v in nested.explicit:
            try:
                value = value_of(v, cells)
            except FieldValueError as exc:
                if (rejection := bad(v, exc)) is not None:
                    return rejection
                continue
            if value is not SKIP:
                obj[key] = value
        if obj:
            size = len(orjson.dumps(obj))
            if size > MAX_NESTED_BYTES:  # Braze would drop it silently
                drops.append(Drop(line_no, nested.name, "", nested_too_large(size)))
                continue
            attributes[nested.name] = obj
            merge = merge or nested.merge
    if merge:
        attributes[MERGE_OBJECTS] = True
    attributes[UPDATE_EXISTING_ONLY] = plan.update_existing_only
    return Mapped(user, attributes, drops or None)
