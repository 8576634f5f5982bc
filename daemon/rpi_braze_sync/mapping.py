"""Pure: compile a channel's YAML mapping once, at load, into a MappingPlan: plain data (no
closure, no settings model) that is checked now, so that a mistake is a start-up error, and
that crosses to the mapping process as it is. fileplan.py fits it to one file's header.

A row becomes a `Mapped` object (with the fields it had to drop) or a `Rejection`; a bad row is
a value, never an exception.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from .errors import HeaderError as HeaderError  # (re-exported: the error tree owns them)
from .errors import MappingError as MappingError
from .parsers import FieldValueError
from .transforms import ValueRecipe, compile_value

if TYPE_CHECKING:  # the mapping process imports this module, never pydantic
    from .settings import MappingSpec, ValueSpec

_NON_ALNUM = re.compile(r"[^a-z0-9]+")
_NESTED_KEY = re.compile(r"[^.$\s]{1,255}")
KeyPath = tuple[str | int, ...]
MAX_NESTED_KEY_CHARS = 255
# Values known about every file besides its path pattern's parts. rpi_channel_execution_id
# comes from RPI's post-execution call for the file (empty when none matched).
EXTRA_PATH_VALUES = ("file_name", "rpi_channel_execution_id")
# Keys of an attributes object that a mapped attribute must never set.
_RESERVED = frozenset({"external_id", "braze_id", "user_alias", "push_token_import"})


def normalise_column(name: str) -> str:
    """'Output Name' -> 'output_name': how header cells and mapping columns are compared."""
    return _NON_ALNUM.sub("_", name.strip().lower()).strip("_")


@dataclass(frozen=True, slots=True)
class Drop:
    """An optional field left out of its row, and why (the row itself is sent)."""

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


@dataclass(frozen=True, slots=True)
class ValueRule:
    """One value of the mapping: what the operator calls it, and its recipe."""

    name: str  # what the operator sees in drops and reasons: "dob", "rpi_cdp_attributes.income"
    recipe: ValueRecipe
    nested: bool = False  # in a nested object: dates and times go as {"$time": ...}
    identifier: bool = False  # no 255-character limit

    def convert(self, text: str) -> Any:
        """The value of `text` (SKIP or FieldValueError as compile_value says)."""
        return compile_value(self.recipe, self.nested, self.identifier)(text)


@dataclass(frozen=True)
class MappingPlan:
    """A channel's mapping, checked once at load; fileplan.plan_file fits it to a header."""

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

    def paths_used(self) -> frozenset[str]:
        """The path parts (and RPI call values) some value comes from, or falls back to."""
        rules = [*self.identifier, *self.fields, *(a[2] for a in self.arrays)]
        rules += [rule for nested in self.nested for rule in nested[2]]
        origins = [o for r in rules for o in (r.recipe.origin, r.recipe.fallback) if o]
        return frozenset(o.path for o in origins if o.path is not None)


def compile_mapping(
    spec: MappingSpec, mode: Literal["upsert", "append"], path_pattern: str
) -> MappingPlan:
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
        built = ValueRule(name, ValueRecipe.of(value), nested, ident)
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
    return MappingPlan(
        mode=mode,
        identifier_kind=kind,
        identifier=identifier,
        fields=fields,
        arrays=arrays,
        nested=tuple(nested),
        path_names=path_names,
        used_columns=frozenset(used),
    )
