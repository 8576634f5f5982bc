"""Pure: a channel's MappingPlan fitted to one file's header, the FilePlan. Plain data that
every executor is generated from: the row function (rowcode.py), the column-wise encoder
(columnar.py) and the tests' oracle. Per output value: its column (or fixed value), how it is
converted (kind, recipe), whether a bad value rejects the row or drops the value, its key.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .mapping import MAX_NESTED_KEY_CHARS, HeaderError, MappingPlan, ValueRule, normalise_column
from .parsers import SKIP, FieldValueError
from .transforms import Kind, Origin, compile_value, compile_value_in_region, kind_of

# The control keys of an attributes object, written by every executor from here.
UPDATE_EXISTING_ONLY = "_update_existing_only"
MERGE_OBJECTS = "_merge_objects"


@dataclass(frozen=True, slots=True)
class ValuePlan:
    """One value fitted to the file: from a cell (column), or fixed for the whole file."""

    rule: ValueRule
    column: int | None
    fixed: Any = SKIP  # the value when column is None
    region_column: int | None = None  # the cell naming a phone's region (phone_region_column)
    # A bad value rejects the row with this prefix (and quotes the text when show_value), or
    # None: the value is dropped (a Drop named rule.name) and the row sent without it.
    reject: str | None = None
    show_value: bool = False

    @property
    def name(self) -> str:
        return self.rule.name

    @property
    def kind(self) -> Kind:
        return kind_of(self.rule.recipe, self.rule.nested, self.rule.identifier)

    def converter(self) -> Any:
        """The compiled transform: of the cell, or of (cell, region cell)."""
        rule = self.rule
        if self.region_column is not None:
            return compile_value_in_region(rule.recipe, rule.nested, rule.identifier)
        return compile_value(rule.recipe, rule.nested, rule.identifier)


@dataclass(frozen=True, slots=True)
class ArrayPlan:
    name: str
    op: str  # add | remove
    value: ValuePlan


@dataclass(frozen=True, slots=True)
class NestedPlan:
    name: str
    merge: bool
    inferred: tuple[tuple[str, int], ...]  # (key, column): unmapped columns, typed by infer_value
    explicit: tuple[tuple[str, ValuePlan], ...]


@dataclass(frozen=True)
class FilePlan:
    header: list[str]
    width: int
    identifier_kind: str  # external_id, email, phone or user_alias
    identifier: tuple[ValuePlan, ...]
    # The column of an external_id sent as written (trimmed): executors inline it.
    id_column_as_written: int | None
    fields: tuple[ValuePlan, ...]  # top-level attributes from a cell, in order
    fixed: dict[str, Any]  # top-level attributes fixed for the file, after those
    arrays: tuple[ArrayPlan, ...]
    nested: tuple[NestedPlan, ...]
    update_existing_only: bool
    warnings: list[str] = field(default_factory=list)  # said once per file


def plan_file(
    mapping: MappingPlan, header: Sequence[str], path_values: Mapping[str, str]
) -> FilePlan:
    """HeaderError when the header cannot be used with the mapping (the whole file fails)."""
    return _Planner(mapping, header, path_values).plan()


class _Planner:
    def __init__(
        self, mapping: MappingPlan, header: Sequence[str], path_values: Mapping[str, str]
    ) -> None:
        self.mapping = mapping
        self.header = list(header)
        self.path_values = path_values
        self.warnings: list[str] = []
        positions: dict[str, int] = {}
        for i, name in enumerate(header):
            if name.strip().startswith("_"):
                continue  # _line, _reason and other "_" columns are never mapped
            key = normalise_column(name)
            if key in positions:
                raise HeaderError(
                    f"columns {header[positions[key]]!r} and {name!r} both normalise to {key!r}"
                )
            positions[key] = i
        self.positions = positions

    def plan(self) -> FilePlan:
        m = self.mapping
        identifier = tuple(self._required(r) for r in m.identifier)
        fields: list[ValuePlan] = []
        fixed: dict[str, Any] = {}
        for r in m.fields:
            reject = r.recipe.reject_invalid or r.recipe.required
            bound = self._bind(r, r.recipe.required, r.name if reject else None, True)
            if bound is None:
                continue
            if bound.column is not None:
                fields.append(bound)
            elif bound.fixed is not SKIP:
                fixed[r.name] = bound.fixed
        arrays: list[ArrayPlan] = []
        for name, op, r, warn in m.arrays:
            bound = self._bind(r, False, f"{name}.{op}" if r.recipe.reject_invalid else None)
            if bound is None:
                if warn:
                    self.warnings.append(
                        f"{name}: the column {r.recipe.origin.column!r} is missing;"
                        f" {name} is not sent"
                    )
                continue
            if bound.column is None and (bound.fixed is SKIP or bound.fixed is None):
                continue
            arrays.append(ArrayPlan(name, op, bound))
        taken = {v.column for v in identifier}
        nested = [self._nested(*n, taken) for n in m.nested]
        first = identifier[0]
        id_as_written = (
            first.column
            if m.identifier_kind == "external_id"
            and kind_of(first.rule.recipe, False, False) == "text"
            else None
        )
        return FilePlan(
            self.header,
            len(self.header),
            m.identifier_kind,
            identifier,
            id_as_written,
            tuple(fields),
            fixed,
            tuple(arrays),
            tuple(nested),
            m.mode == "append",
            self.warnings,
        )

    def _nested(
        self,
        name: str,
        columns: Any,
        keys: tuple[ValueRule, ...],
        merge: bool,
        taken: set[int | None],
    ) -> NestedPlan:
        if columns == "remaining":
            used = self.mapping.used_columns
            inferred = [
                (key, i)
                for key, i in self.positions.items()
                if key and key not in used and i not in taken
            ]
        else:
            inferred = [(c, self.positions[c]) for c in columns if c in self.positions]
        too_long = [key for key, _ in inferred if len(key) > MAX_NESTED_KEY_CHARS]
        if too_long:
            self.warnings.append(
                f"{name}: columns with names over {MAX_NESTED_KEY_CHARS} characters are not"
                f" sent: {', '.join(k[:40] + '...' for k in too_long)}"
            )
            inferred = [(key, i) for key, i in inferred if len(key) <= MAX_NESTED_KEY_CHARS]
        explicit = []
        for r in keys:
            reject = r.name if r.recipe.reject_invalid else None
            bound = self._bind(r, r.recipe.required, reject)
            if bound is not None and (bound.column is not None or bound.fixed is not SKIP):
                explicit.append((r.name.split(".", 1)[1], bound))
        return NestedPlan(name, merge, tuple(inferred), tuple(explicit))

    def _required(self, rule: ValueRule) -> ValuePlan:
        bound = self._bind(rule, True, rule.name, what="identifier column")
        assert bound is not None  # must_exist raises instead
        return bound

    def _bind(
        self,
        rule: ValueRule,
        must_exist: bool,
        reject: str | None,
        show_value: bool = False,
        what: str = "required column",
        origin: Origin | None = None,
    ) -> ValuePlan | None:
        """Resolve a column to its index, or a path part or constant to its final value."""
        source = origin or rule.recipe.origin
        if source.column is not None:
            index = self.positions.get(normalise_column(source.column))
            fallback = rule.recipe.fallback
            if index is None and fallback is not None and origin is None:
                return self._bind(rule, must_exist, reject, show_value, what, fallback)
            if index is None:
                if must_exist:
                    raise HeaderError(f"the {what} {source.column!r} is missing from the header")
                return None
            region = rule.recipe.phone_region_column
            # without that column: the default region
            region_index = None if region is None else self.positions.get(normalise_column(region))
            return ValuePlan(rule, index, SKIP, region_index, reject, show_value)
        text = self.path_values.get(source.path, "") if source.path is not None else source.value
        text = str(text).lower() if isinstance(text, bool) else str(text)
        try:
            return ValuePlan(rule, None, rule.convert(text))
        except FieldValueError as exc:
            if must_exist:
                raise HeaderError(f"{rule.name}: {text!r} is {exc}") from None
            self.warnings.append(f"{rule.name}: {text!r} is {exc}; not sent")
            return None
