"""Pure: compile a channel's YAML mapping once, then map CSV rows to Braze attribute objects.

A row becomes a `Mapped` object (with the fields it had to drop) or a `Rejection`; a bad row is
a value, never an exception. No I/O here: the reader hands in cells, the sender takes objects.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import pycountry

from .settings import FieldType, MappingSpec, SourceSpec

MAX_STRING_CHARS = 255  # Braze truncates or refuses longer strings
MAX_EXTERNAL_ID_BYTES = 987
_NON_ALNUM = re.compile(r"[^a-z0-9]+")
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]{0,14})(\.[0-9]+)?")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_EMAIL = re.compile(r"[^@\s\"(),:;<>\[\\\]]+@[^@\s\"(),:;<>\[\\\]]+\.[^@\s\"(),:;<>\[\\\]]+")
_GENDERS = {"m": "M", "f": "F", "o": "O", "n": "N", "p": "P"}
_GENDERS |= {"male": "M", "female": "F", "other": "O"}


def normalise_column(name: str) -> str:
    """'Output Name' -> 'output_name': how header cells and mapping columns are compared."""
    return _NON_ALNUM.sub("_", name.strip().lower()).strip("_")


class FieldValueError(ValueError):
    """A value that Braze would refuse or misread; the reason is shown to the operator."""


class HeaderError(ValueError):
    """The file's header cannot be used with this mapping: the whole file fails."""


@dataclass(frozen=True, slots=True)
class Drop:
    line_no: int
    field: str
    value: str
    reason: str


@dataclass(frozen=True, slots=True)
class Rejection:
    line_no: int
    reason: str


@dataclass(slots=True)
class Mapped:
    user: str
    attributes: dict[str, Any]
    drops: list[Drop] | None = None


def _check_length(value: str) -> str:
    if len(value) > MAX_STRING_CHARS:
        raise FieldValueError(f"longer than {MAX_STRING_CHARS} characters ({len(value)})")
    return value


def parse_date(value: str) -> str:
    if not _DATE.fullmatch(value):
        raise FieldValueError("not a yyyy-MM-dd date")
    try:
        datetime.date.fromisoformat(value)
    except ValueError:
        raise FieldValueError("not a real date") from None
    return value


def parse_integer(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise FieldValueError("not an integer") from None


def parse_float(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise FieldValueError("not a number") from None
    if number != number or number in (float("inf"), float("-inf")):
        raise FieldValueError("not a finite number")
    return number


def parse_boolean(value: str) -> bool:
    lowered = value.lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise FieldValueError("not a boolean (true/false, 1/0, yes/no)")


def parse_email(value: str) -> str:
    if not _EMAIL.fullmatch(value):
        raise FieldValueError("not an email address")
    return _check_length(value)


def parse_gender(value: str) -> str:
    letter = _GENDERS.get(value.lower())
    if letter is None:
        raise FieldValueError("not a gender (M, F, O, N, P, male, female, other)")
    return letter


def _country_index() -> dict[str, str]:
    index: dict[str, str] = {}
    for country in pycountry.countries:
        for attr in ("name", "official_name", "common_name", "alpha_3", "alpha_2"):
            text = getattr(country, attr, None)
            if text:
                index[text.lower()] = country.alpha_2
    return index


_COUNTRIES = _country_index()


def parse_country(value: str) -> str:
    """ISO alpha-2 only: Braze silently nulls a country it cannot map, so we map it here."""
    code = _COUNTRIES.get(value.lower())
    if code is None:
        raise FieldValueError("not an ISO 3166 country code or name")
    return code


Converter = Callable[[str], Any]
CONVERTERS: dict[FieldType, Converter] = {
    "string": _check_length,
    "integer": parse_integer,
    "float": parse_float,
    "boolean": parse_boolean,
    "date": parse_date,
    "email": parse_email,
    "gender": parse_gender,
    "country": parse_country,
}


def infer_nested_value(value: str) -> Any:
    """Typed value for a nested key: integers, floats, booleans, dates as $time, else text."""
    number = _NUMBER.fullmatch(value)
    if number:
        return float(value) if number.group(1) else int(value)
    lowered = value.lower()
    if lowered == "true":
        return True
    if lowered == "false":
        return False
    if _DATE.fullmatch(value):
        try:
            datetime.date.fromisoformat(value)
            return {"$time": value}
        except ValueError:
            pass
    return _check_length(value)


def parse_path_pattern(pattern: str) -> list[str | None]:
    """'{channel}/{offer}/{workflow_id}' -> ['channel', 'offer', 'workflow_id'].

    A literal folder in the pattern gives None (it must be present but names nothing).
    """
    names: list[str | None] = []
    for part in pattern.strip("/").split("/"):
        names.append(part[1:-1] if part.startswith("{") and part.endswith("}") else None)
    return names


# --- compiled form ------------------------------------------------------------------------

Reject = Literal["drop", "reject"]


@dataclass(frozen=True)
class _FieldRule:
    name: str
    source: SourceSpec
    convert: Converter
    required: bool
    on_invalid: Reject


@dataclass(frozen=True)
class _ArrayRule:
    name: str
    add: SourceSpec | None
    remove: SourceSpec | None
    warn_if_missing: bool


@dataclass(frozen=True)
class CompiledMapping:
    """A channel's mapping, checked once at load; `bind` fits it to one file's header."""

    mode: Literal["upsert", "append"]
    identifier_column: str
    fields: tuple[_FieldRule, ...]
    arrays: tuple[_ArrayRule, ...]
    nested: tuple[tuple[str, Literal["remaining"] | tuple[str, ...], bool], ...]
    path_names: tuple[str, ...]
    used_columns: frozenset[str] = field(default=frozenset())

    def bind(self, header: Sequence[str], path_values: Mapping[str, str]) -> RowMapper:
        return RowMapper(self, header, path_values)


def compile_mapping(
    spec: MappingSpec, mode: Literal["upsert", "append"], path_pattern: str
) -> CompiledMapping:
    """Check references and constants now, so a mistake is a start-up error, not row 40,000."""
    path_names = (*(n for n in parse_path_pattern(path_pattern) if n), "file_name")
    problems: list[str] = []
    used: set[str] = set()

    def check_source(where: str, source: SourceSpec) -> None:
        if source.path is not None and source.path not in path_names:
            problems.append(f"{where}.path: {source.path!r} is not one of {', '.join(path_names)}")
        if source.column is not None:
            used.add(normalise_column(source.column))

    assert spec.identifier.external_id is not None  # the model guarantees it
    if spec.identifier.external_id.column is None:
        problems.append("identifier.external_id: must come from a column")
    check_source("identifier.external_id", spec.identifier.external_id)
    fields: list[_FieldRule] = []
    for name, rule in spec.attributes.items():
        check_source(f"attributes.{name}", rule)
        convert = CONVERTERS[rule.type]
        if rule.value is not None:
            try:
                convert(str(rule.value))
            except FieldValueError as exc:
                problems.append(f"attributes.{name}.value: {rule.value!r} is {exc}")
        fields.append(_FieldRule(name, rule, convert, rule.required, rule.on_invalid))
    arrays: list[_ArrayRule] = []
    for name, arr in spec.arrays.items():
        for op, source in (("add", arr.add), ("remove", arr.remove)):
            if source is not None:
                check_source(f"arrays.{name}.{op}", source)
        arrays.append(_ArrayRule(name, arr.add, arr.remove, arr.warn_if_missing))
    nested: list[tuple[str, Literal["remaining"] | tuple[str, ...], bool]] = []
    for name, obj in spec.nested.items():
        if obj.columns == "remaining":
            nested.append((name, "remaining", obj.merge))
        else:
            columns = tuple(normalise_column(c) for c in obj.columns)
            used.update(columns)
            nested.append((name, columns, obj.merge))
    if problems:
        raise ValueError("; ".join(problems))
    return CompiledMapping(
        mode=mode,
        identifier_column=normalise_column(spec.identifier.external_id.column or ""),
        fields=tuple(fields),
        arrays=tuple(arrays),
        nested=tuple(nested),
        path_names=path_names,
        used_columns=frozenset(used),
    )


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
            key = normalise_column(name)
            if key in positions:
                raise HeaderError(
                    f"columns {header[positions[key]]!r} and {name!r} both normalise to {key!r}"
                )
            positions[key] = i
        id_col = mapping.identifier_column
        if id_col not in positions:
            raise HeaderError(f"the identifier column {id_col!r} is missing from the header")
        self._id_index = positions[id_col]
        self._update_existing_only = mapping.mode == "append"

        def resolve(source: SourceSpec) -> tuple[int | None, str | None]:
            """(column index, None) or (None, fixed text); (None, None) if the column is absent."""
            if source.column is not None:
                return positions.get(normalise_column(source.column)), None
            if source.path is not None:
                return None, path_values.get(source.path)
            return None, str(source.value).lower() if isinstance(source.value, bool) else str(
                source.value
            )

        # (name, column index or None, fixed value or None, converter, required, reject?)
        self._fields: list[tuple[str, int, Converter, bool, bool]] = []
        self._fixed: dict[str, Any] = {}
        for rule in mapping.fields:
            index, fixed = resolve(rule.source)
            if index is not None:
                self._fields.append(
                    (rule.name, index, rule.convert, rule.required, rule.on_invalid == "reject")
                )
            elif fixed is not None and fixed.strip():
                try:
                    self._fixed[rule.name] = rule.convert(fixed.strip())
                except FieldValueError as exc:
                    self.warnings.append(f"{rule.name}: {fixed!r} is {exc}; not sent")
            elif rule.required:
                what = rule.source.column or rule.source.path
                raise HeaderError(f"the required column {what!r} is missing from the header")

        self._arrays: list[tuple[str, str, int | None, str | None]] = []
        for arr in mapping.arrays:
            for op, source in (("add", arr.add), ("remove", arr.remove)):
                if source is None:
                    continue
                index, fixed = resolve(source)
                if index is None and fixed is None:
                    if arr.warn_if_missing:
                        self.warnings.append(
                            f"{arr.name}: the column {source.column!r} is missing; "
                            f"{arr.name} is not sent"
                        )
                    continue
                self._arrays.append((arr.name, op, index, fixed))

        self._nested: list[tuple[str, list[tuple[str, int]]]] = []
        self._merge = False
        for name, columns, merge in mapping.nested:
            if columns == "remaining":
                keys = [
                    (normalise_column(h), i)
                    for i, h in enumerate(header)
                    if normalise_column(h) not in mapping.used_columns
                    and i != self._id_index
                    and not h.strip().startswith("_")
                    and normalise_column(h)
                ]
            else:
                keys = [(c, positions[c]) for c in columns if c in positions]
            self._nested.append((name, keys))
            self._merge = self._merge or merge

    def map_row(self, cells: Sequence[str], line_no: int) -> Mapped | Rejection:
        if len(cells) != self.width:
            return Rejection(
                line_no, f"the row has {len(cells)} fields where the header has {self.width}"
            )
        user = cells[self._id_index].strip()
        if not user:
            return Rejection(line_no, "external_id is empty")
        if len(user.encode("utf-8")) > MAX_EXTERNAL_ID_BYTES:
            return Rejection(line_no, f"external_id is longer than {MAX_EXTERNAL_ID_BYTES} bytes")
        attributes: dict[str, Any] = {"external_id": user}
        drops: list[Drop] | None = None
        for name, index, convert, required, reject_invalid in self._fields:
            raw = cells[index].strip()
            if not raw:
                if required:
                    return Rejection(line_no, f"{name} is required and empty")
                continue
            try:
                attributes[name] = convert(raw)
            except FieldValueError as exc:
                if reject_invalid:
                    return Rejection(line_no, f"{name}: {raw!r} is {exc}")
                drops = drops or []
                drops.append(Drop(line_no, name, raw, str(exc)))
        if self._fixed:
            attributes.update(self._fixed)
        for name, op, column, fixed in self._arrays:
            item = cells[column].strip() if column is not None else fixed
            if not item:
                continue
            if len(item) > MAX_STRING_CHARS:
                drops = drops or []
                drops.append(
                    Drop(line_no, name, item, f"longer than {MAX_STRING_CHARS} characters")
                )
                continue
            target = attributes.setdefault(name, {})
            target.setdefault(op, []).append(item)
        has_nested = False
        for name, keys in self._nested:
            obj: dict[str, Any] = {}
            for key, index in keys:
                raw = cells[index].strip()
                if not raw:
                    continue
                try:
                    obj[key] = infer_nested_value(raw)
                except FieldValueError as exc:
                    drops = drops or []
                    drops.append(Drop(line_no, f"{name}.{key}", raw, str(exc)))
            if obj:
                attributes[name] = obj
                has_nested = True
        if has_nested and self._merge:
            attributes["_merge_objects"] = True
        attributes["_update_existing_only"] = self._update_existing_only
        return Mapped(user, attributes, drops)
