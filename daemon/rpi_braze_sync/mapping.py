"""Pure: compile a channel's YAML mapping once, then map CSV rows to Braze attribute objects.

A row becomes a `Mapped` object (with the fields it had to drop) or a `Rejection`; a bad row is
a value, never an exception. No I/O here: the reader hands in cells, the sender takes objects.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal

import orjson

from .chunks import Drop
from .columnar import ChunkFunction, compile_chunk_function
from .errors import HeaderError as HeaderError  # (re-exported: the error tree owns them)
from .errors import MappingError as MappingError
from .plain import detached
from .rowcode import MAX_EXTERNAL_ID_BYTES, compile_row_function, control_character
from .transforms import (
    MAX_NESTED_BYTES,
    SKIP,
    TYPE_PARSERS,
    Compiled,
    CompiledInRegion,
    FieldValueError,
    compile_value,
    compile_value_in_region,
    infer_value,
    nested_too_large,
)

if TYPE_CHECKING:  # the mapping process imports this module, never pydantic (plain.py)
    from .settings import MappingSpec, SourceSpec, ValueSpec

_NON_ALNUM = re.compile(r"[^a-z0-9]+")
_NESTED_KEY = re.compile(r"[^.$\s]{1,255}")
KeyPath = tuple[str | int, ...]
MAX_NESTED_KEY_CHARS = 255
# Wider than this, a file is mapped row by row by the generic loop (see RowMapper).
ROW_CODE_MAX_COLUMNS = 1000
# Values known about every file besides its path pattern's parts. rpi_channel_execution_id
# comes from RPI's post-execution call for the file (empty when none matched).
EXTRA_PATH_VALUES = ("file_name", "rpi_channel_execution_id")
# Keys of an attributes object that a mapped attribute must never set.
_RESERVED = frozenset({"external_id", "braze_id", "user_alias", "push_token_import"})


def normalise_column(name: str) -> str:
    """'Output Name' -> 'output_name': how header cells and mapping columns are compared."""
    return _NON_ALNUM.sub("_", name.strip().lower()).strip("_")


@dataclass(frozen=True, slots=True)
class Rejection:
    line_no: int
    reason: str


@dataclass(slots=True)
class Mapped:
    user: str  # the identity that orders this user's rows: one request at a time per user
    attributes: dict[str, Any]
    drops: list[Drop] | None = None


def parse_path_pattern(pattern: str) -> list[str | None]:
    """'{channel}/{offer}/{workflow_id}' -> ['channel', 'offer', 'workflow_id'].

    A literal folder in the pattern gives None (it must be present but names nothing).
    """
    names: list[str | None] = []
    for part in pattern.strip("/").split("/"):
        names.append(part[1:-1] if part.startswith("{") and part.endswith("}") else None)
    return names


# --- compiled form ------------------------------------------------------------------------


@dataclass(frozen=True)
class ValueRule:
    """One value of the mapping: where it comes from and its compiled transforms."""

    name: str  # what the operator sees in drops and reasons: "dob", "rpi_cdp_attributes.income"
    source: SourceSpec
    convert: Compiled
    reject_invalid: bool
    required: bool
    # The common case (trim, skip empty, no case/values/default, default length): the row
    # loop calls the type's parser directly, without the general transform's overhead.
    plain: Callable[[str], Any] | None
    built_for: tuple[bool, bool]  # (nested, identifier): how `build` made it
    # type phone with phone_region_column: the converter that also takes the region's cell,
    # and that cell's column; `region_index` is its position in one file (RowMapper's copy).
    convert_in_region: CompiledInRegion | None = None
    region_column: str | None = None
    plain_phone: bool = False  # type phone, nothing else done to the text
    region_index: int | None = None

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled as its recipe (compiled closures do not pickle), its spec a plain copy."""
        return (ValueRule.build, (self.name, detached(self.source), *self.built_for))

    @classmethod
    def build(
        cls, name: str, spec: ValueSpec, nested: bool = False, identifier: bool = False
    ) -> ValueRule:
        only_typed = not identifier and (  # nothing done to the text besides its type
            spec.trim
            and spec.empty == "skip"
            and spec.default is None
            and not spec.required
            and spec.case is None
            and spec.values is None
            and spec.max_length is None
            and not spec.input_formats
        )
        is_plain = (
            only_typed
            and spec.type not in ("phone",)
            and not (nested and spec.type in ("date", "time"))
        )
        region_column = getattr(spec, "phone_region_column", None)
        return cls(
            name,
            spec,
            compile_value(spec, nested, identifier),
            spec.on_invalid == "reject",
            spec.required,
            TYPE_PARSERS[spec.type] if is_plain else None,
            (nested, identifier),
            compile_value_in_region(spec, nested, identifier) if region_column else None,
            region_column,
            only_typed and spec.type == "phone",
        )


@dataclass(frozen=True)
class CompiledMapping:
    """A channel's mapping, checked once at load; `bind` fits it to one file's header."""

    mode: Literal["upsert", "append"]
    identifier_kind: str  # external_id, email, phone or user_alias
    identifier: tuple[ValueRule, ...]  # one value, or alias name and label
    fields: tuple[ValueRule, ...]
    arrays: tuple[tuple[str, str, ValueRule, bool], ...]  # attribute, add|remove, value, warn
    nested: tuple[
        tuple[str, Literal["remaining"] | tuple[str, ...], tuple[ValueRule, ...], bool], ...
    ]
    path_names: tuple[str, ...]
    used_columns: frozenset[str]

    def bind(self, header: Sequence[str], path_values: Mapping[str, str]) -> RowMapper:
        return RowMapper(self, header, path_values)


def compile_mapping(
    spec: MappingSpec, mode: Literal["upsert", "append"], path_pattern: str
) -> CompiledMapping:
    """Check references and constants now, so a mistake is a start-up error, not row 40,000."""
    path_names = (*(n for n in parse_path_pattern(path_pattern) if n), *EXTRA_PATH_VALUES)
    problems: list[tuple[KeyPath, str]] = []
    used: set[str] = set()

    def rule(
        where: KeyPath, name: str, value: ValueSpec, nested: bool = False, ident: bool = False
    ) -> ValueRule:
        sources = [(where, value), ((*where, "if_column_missing"), value.if_column_missing)]
        for at, source in sources:
            if source is not None and source.path is not None and source.path not in path_names:
                allowed = ", ".join(path_names)
                problems.append(((*at, "path"), f"{source.path!r} is not one of {allowed}"))
        for column in (value.column, value.phone_region_column):
            if column is not None:
                used.add(normalise_column(column))
        if nested and (value.empty == "null"):
            problems.append(
                (
                    (*where, "empty"),
                    "null in a nested object makes Braze drop every nested update of the request",
                )
            )
        built = ValueRule.build(name, value, nested, ident)
        if value.value is not None:
            try:
                built.convert(
                    str(value.value).lower() if isinstance(value.value, bool) else str(value.value)
                )
            except FieldValueError as exc:
                problems.append(((*where, "value"), f"{value.value!r} is {exc}"))
        return built

    ident = spec.identifier
    kind = ident.kind
    identifier: tuple[ValueRule, ...]
    if ident.user_alias is not None:
        alias = ident.user_alias
        if alias.name.column is None:
            where = ("identifier", "user_alias", "name")
            problems.append((where, "the alias name must come from a column"))
        identifier = (
            rule(
                ("identifier", "user_alias", "name"),
                "user_alias.alias_name",
                alias.name,
                ident=True,
            ),
            rule(
                ("identifier", "user_alias", "label"),
                "user_alias.alias_label",
                alias.label,
                ident=True,
            ),
        )
    else:
        value = getattr(ident, kind)
        if value.column is None:
            problems.append((("identifier", kind), "the identifier must come from a column"))
        identifier = (rule(("identifier", kind), kind, value, ident=True),)
    # Braze identifies a user by these: mapped as attributes they would change who is updated.
    reserved = _RESERVED | {kind} | ({"email"} if kind == "phone" else set())
    for section, names in (
        ("attributes", spec.attributes),
        ("arrays", spec.arrays),
        ("nested", spec.nested),
    ):
        for name in names:
            if name in reserved or name.startswith("_"):
                why = (
                    f"{name} is the identifier; map it only there"
                    if name == kind
                    else f"{name!r} is reserved: Braze would read it as an identifier or a flag"
                    if name != "email"
                    else "email beside a phone identifier would make Braze identify users by email"
                )
                problems.append(((section, name), why))
    fields = tuple(rule(("attributes", n), n, v) for n, v in spec.attributes.items())
    arrays = tuple(
        (
            name,
            op,
            rule(("arrays", name, op, *((i,) if listed else ())), name, value),
            arr.warn_if_missing,
        )
        for name, arr in spec.arrays.items()
        for op, values, listed in arr.operations()
        for i, value in enumerate(values)
    )
    nested = []
    for name, obj in spec.nested.items():
        keys = []
        for key, value in obj.keys.items():
            if not _NESTED_KEY.fullmatch(key):
                problems.append(
                    (
                        ("nested", name, "keys", key),
                        "a nested key has no '.', '$' or spaces and at most 255 characters",
                    )
                )
            keys.append(rule(("nested", name, "keys", key), f"{name}.{key}", value, nested=True))
        columns: Literal["remaining"] | tuple[str, ...] = (
            "remaining"
            if obj.columns == "remaining"
            else tuple(normalise_column(c) for c in obj.columns or ())
        )
        if columns != "remaining":
            used.update(columns)
        nested.append((name, columns, tuple(keys), obj.merge))
    if problems:
        raise MappingError(problems)
    return CompiledMapping(
        mode=mode,
        identifier_kind=kind,
        identifier=identifier,
        fields=fields,
        arrays=arrays,
        nested=tuple(nested),
        path_names=path_names,
        used_columns=frozenset(used),
    )


# A value fitted to one file: (rule, column index or None, fixed value when not a column).
_Bound = tuple[ValueRule, int | None, Any]


class RowMapper:
    """A mapping fitted to one file: column positions resolved once, cheap per row."""

    def __init__(
        self, mapping: CompiledMapping, header: Sequence[str], path_values: Mapping[str, str]
    ) -> None:
        self.warnings: list[str] = []
        self.header = list(header)
        self.width = len(header)
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
        self._positions = positions
        self._path_values = path_values
        self._kind = mapping.identifier_kind
        self.update_existing_only = mapping.mode == "append"
        self._identifier = [self._bind_required(r) for r in mapping.identifier]
        self.fields: list[_Bound] = []
        self.fixed: dict[str, Any] = {}
        for r in mapping.fields:
            bound = self._bind(r, must_exist=r.required)
            if bound is None:
                continue
            if bound[1] is None:
                if bound[2] is not SKIP:
                    self.fixed[r.name] = bound[2]
            else:
                self.fields.append(bound)
        self.arrays: list[tuple[str, str, _Bound]] = []
        for name, op, r, warn in mapping.arrays:
            bound = self._bind(r, must_exist=False)
            if bound is None:
                if warn:
                    self.warnings.append(
                        f"{name}: the column {r.source.column!r} is missing; {name} is not sent"
                    )
                continue
            self.arrays.append((name, op, bound))
        self.nested: list[tuple[str, bool, list[tuple[str, int]], list[tuple[str, _Bound]]]] = []
        for name, columns, keys, merge in mapping.nested:
            if columns == "remaining":
                inferred = [
                    (key, i)
                    for key, i in positions.items()
                    if key
                    and key not in mapping.used_columns
                    and i not in self._identifier_columns()
                ]
            else:
                inferred = [(c, positions[c]) for c in columns if c in positions]
            too_long = [key for key, _ in inferred if len(key) > MAX_NESTED_KEY_CHARS]
            if too_long:
                self.warnings.append(
                    f"{name}: columns with names over {MAX_NESTED_KEY_CHARS} characters are not"
                    f" sent: {', '.join(k[:40] + '...' for k in too_long)}"
                )
                inferred = [(key, i) for key, i in inferred if len(key) <= MAX_NESTED_KEY_CHARS]
            explicit = []
            for r in keys:
                bound = self._bind(r, must_exist=r.required)
                if bound is not None:
                    explicit.append((r.name.split(".", 1)[1], bound))
            self.nested.append((name, merge, inferred, explicit))
        # The generated row function grows with the columns, and compiling it held about 30 KB
        # a column (300 MB for 10,000): a wider file is mapped by the generic loop.
        self.map_row: Callable[[list[str], int], Mapped | Rejection] = (
            compile_row_function(self) if self.width <= ROW_CODE_MAX_COLUMNS
            else self.map_row_generic
        )  # fmt: skip
        # The column-wise fast path, for the rows it can take (None: every row by map_row).
        self.map_chunk: ChunkFunction | None = compile_chunk_function(self)

    def _identifier_columns(self) -> set[int]:
        return {index for _, index, _ in self._identifier if index is not None}

    def _bind_required(self, rule: ValueRule) -> _Bound:
        bound = self._bind(rule, must_exist=True, what="identifier column")
        assert bound is not None  # must_exist raises instead
        return bound

    def _bind(
        self, rule: ValueRule, must_exist: bool, what: str = "required column"
    ) -> _Bound | None:
        """Resolve a column to its index, or a path part or constant to its final value."""
        source: SourceSpec = rule.source
        if source.column is not None:
            index = self._positions.get(normalise_column(source.column))
            fallback = getattr(rule.source, "if_column_missing", None)
            if index is None and fallback is not None:
                return self._bind(replace(rule, source=fallback), must_exist, what)
            if index is None:
                if must_exist:
                    raise HeaderError(f"the {what} {source.column!r} is missing from the header")
                return None
            if rule.region_column is not None:  # without that column: the default region
                region = self._positions.get(normalise_column(rule.region_column))
                rule = replace(rule, region_index=region)
            return rule, index, None
        text = self._path_values.get(source.path, "") if source.path is not None else source.value
        text = str(text).lower() if isinstance(text, bool) else str(text)
        try:
            return rule, None, rule.convert(text)
        except FieldValueError as exc:
            if must_exist:
                raise HeaderError(f"{rule.name}: {text!r} is {exc}") from None
            self.warnings.append(f"{rule.name}: {text!r} is {exc}; not sent")
            return None

    @staticmethod
    def _value(bound: _Bound, cells: Sequence[str]) -> Any:
        rule, index, fixed = bound
        if index is None:
            return fixed
        plain = rule.plain
        if plain is not None:
            text = cells[index].strip()
            return plain(text) if text else SKIP
        if rule.region_index is not None:
            assert rule.convert_in_region is not None
            return rule.convert_in_region(cells[index], cells[rule.region_index])
        return rule.convert(cells[index])

    def plain_external_id_column(self) -> int | None:
        """The column of an external_id taken as it is (trimmed), or None."""
        if self._kind != "external_id":
            return None
        rule, index, _ = self._identifier[0]
        spec: Any = rule.source  # a ValueSpec, or a fallback's plain SourceSpec (no "trim")
        plain = (
            getattr(spec, "trim", False)
            and spec.default is None
            and spec.case is None
            and spec.values is None
            and spec.type == "string"
            and spec.max_length is None
        )
        return index if plain else None

    def identify(
        self, cells: Sequence[str], line_no: int
    ) -> tuple[str, dict[str, Any]] | Rejection:
        values = []
        for bound in self._identifier:
            try:
                value = self._value(bound, cells)
            except FieldValueError as exc:
                raw = cells[bound[1]] if bound[1] is not None else ""
                return Rejection(line_no, f"{bound[0].name}: {raw.strip()!r} is {exc}")
            if value is SKIP or value is None or value == "":
                return Rejection(line_no, f"{bound[0].name} is empty")
            text = str(value)
            problem = control_character(text)
            if problem is not None:
                return Rejection(line_no, f"{bound[0].name} {problem}")
            values.append(text)
        if self._kind == "user_alias":
            name, label = values
            return f"alias:{label}:{name}", {
                "user_alias": {"alias_name": name, "alias_label": label}
            }
        value = values[0]
        if self._kind == "external_id" and len(value.encode("utf-8")) > MAX_EXTERNAL_ID_BYTES:
            return Rejection(line_no, f"external_id is longer than {MAX_EXTERNAL_ID_BYTES} bytes")
        return (value if self._kind == "external_id" else f"{self._kind}:{value}"), {
            self._kind: value
        }

    def map_row_generic(self, cells: Sequence[str], line_no: int) -> Mapped | Rejection:
        """The reference row loop; `map_row` is its compiled equivalent (rowcode.py)."""
        if len(cells) != self.width:
            return Rejection(
                line_no, f"the row has {len(cells)} fields where the header has {self.width}"
            )
        identity = self.identify(cells, line_no)
        if isinstance(identity, Rejection):
            return identity
        user, attributes = identity
        drops: list[Drop] | None = None
        value_of = self._value
        for bound in self.fields:
            try:
                value = value_of(bound, cells)
            except FieldValueError as exc:
                rule = bound[0]
                raw = cells[bound[1]].strip()  # type: ignore[index]
                if rule.reject_invalid or rule.required:
                    return Rejection(line_no, f"{rule.name}: {raw!r} is {exc}")
                drops = drops or []
                drops.append(Drop(line_no, rule.name, raw, str(exc)))
                continue
            if value is not SKIP:
                attributes[bound[0].name] = value
        if self.fixed:
            attributes.update(self.fixed)
        for name, op, bound in self.arrays:
            try:
                item = value_of(bound, cells)
            except FieldValueError as exc:
                if bound[0].reject_invalid:
                    return Rejection(line_no, f"{name}.{op}: {exc}")
                raw = cells[bound[1]].strip() if bound[1] is not None else ""
                drops = drops or []
                drops.append(Drop(line_no, name, raw, str(exc)))
                continue
            if item is SKIP or item is None:
                continue
            attributes.setdefault(name, {}).setdefault(op, []).append(item)
        merge = False
        for name, merge_this, inferred, explicit in self.nested:
            obj: dict[str, Any] = {}
            for key, index in inferred:
                raw = cells[index].strip()
                if not raw:
                    continue
                try:
                    obj[key] = infer_value(raw)
                except FieldValueError as exc:
                    drops = drops or []
                    drops.append(Drop(line_no, f"{name}.{key}", raw, str(exc)))
            for key, bound in explicit:
                try:
                    value = value_of(bound, cells)
                except FieldValueError as exc:
                    if bound[0].reject_invalid:
                        return Rejection(line_no, f"{name}.{key}: {exc}")
                    raw = cells[bound[1]].strip() if bound[1] is not None else ""
                    drops = drops or []
                    drops.append(Drop(line_no, f"{name}.{key}", raw, str(exc)))
                    continue
                if value is not SKIP:
                    obj[key] = value
            if obj:
                size = len(orjson.dumps(obj))
                if size > MAX_NESTED_BYTES:  # Braze would drop it silently
                    drops = drops or []
                    drops.append(Drop(line_no, name, "", nested_too_large(size)))
                    continue
                attributes[name] = obj
                merge = merge or merge_this
        if merge:
            attributes["_merge_objects"] = True
        attributes["_update_existing_only"] = self.update_existing_only
        return Mapped(user, attributes, drops)
