"""Pure: a value of the mapping as plain data (ValueRecipe, what crosses to the mapping
process), and its transforms compiled into one callable (trim, empty, case, values, type,
length), in the process that uses it.

A compiled value takes the raw cell text and returns the value to send, `SKIP` (nothing to
send), or raises `FieldValueError` with a reason an operator can act on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Final, Literal

from .parsers import (
    MAX_STRING_CHARS,
    OPERATIONS,
    SKIP,
    FieldValueError,
    formats_parser,
    phone_in_region_parser,
    phone_parser,
    too_long,
)

if TYPE_CHECKING:  # the mapping process imports this module, never pydantic
    from .channelsettings import OriginSpec, ValueSpec

Scalar = str | int | float | bool


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a value comes from: exactly one of a column, a path part or a constant."""

    column: str | None = None
    path: str | None = None
    value: Scalar | None = None

    @classmethod
    def of(cls, spec: OriginSpec) -> Origin:
        return cls(spec.column, spec.path, spec.value)


@dataclass(frozen=True, slots=True)
class ValueRecipe:
    """A ValueSpec's fields as plain, hashable data: the settings models (pydantic) stay in
    the daemon, this crosses to the mapping process and compiles there."""

    origin: Origin
    fallback: Origin | None = None  # if_column_missing
    type: str = "string"
    trim: bool = True
    empty: Literal["skip", "null"] = "skip"
    default: Scalar | None = None
    required: bool = False
    case: Literal["lower", "upper"] | None = None
    values: tuple[tuple[str, Scalar], ...] | None = None
    input_formats: tuple[str, ...] = ()
    phone_region: str | None = None
    phone_region_column: str | None = None
    max_length: int | None = None
    too_long: Literal["drop", "truncate"] = "drop"
    reject_invalid: bool = False  # on_invalid: reject

    @classmethod
    def of(cls, spec: ValueSpec) -> ValueRecipe:
        fallback = spec.if_column_missing
        return cls(
            Origin.of(spec),
            None if fallback is None else Origin.of(fallback),
            spec.type,
            spec.trim,
            spec.empty,
            spec.default,
            spec.required,
            spec.case,
            None if spec.values is None else tuple(spec.values.items()),
            tuple(spec.input_formats or ()),
            spec.phone_region,
            spec.phone_region_column,
            spec.max_length,
            spec.too_long,
            spec.on_invalid == "reject",
        )


# How executors treat a value, decided once here (what was "is this rule plain"): "text", a string
# only trimmed and within 255 characters; "parse", a type's parser on the trimmed text;
# "phone", E.164 with nothing else done; "convert", the general compiled transform.
Kind = Literal["text", "parse", "phone", "convert"]


def kind_of(recipe: ValueRecipe, nested: bool, identifier: bool) -> Kind:
    only_typed = not identifier and (  # nothing done to the text besides its type
        recipe.trim
        and recipe.empty == "skip"
        and recipe.default is None
        and not recipe.required
        and recipe.case is None
        and recipe.values is None
        and recipe.max_length is None
        and not recipe.input_formats
    )
    if not only_typed:
        return "convert"
    if recipe.type == "phone":
        return "phone"
    if nested and recipe.type in ("date", "time"):
        return "convert"  # wrapped in {"$time": ...}
    return "text" if recipe.type == "string" else "parse"


# Braze drops a nested object over 100 KB silently. Whether its KB is 1,000 or 1,024 bytes is
# not said: the lower bound, so that nothing Braze would drop goes unrecorded.
MAX_NESTED_BYTES: Final = 100_000


def nested_too_large(size: int) -> str:
    """The reason recorded for a nested object left out of its row."""
    return (
        f"the object is {size} bytes as JSON, over Braze's 100 KB limit for a nested object"
        " (Braze would drop it silently); the rest of the row was sent"
    )


Compiled = Callable[[str], Any]
CompiledInRegion = Callable[[str, str], Any]  # a phone and the cell naming its region


class _Done:
    """What a value became before its type applied (SKIP, null, or a mapped non-text)."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


_SKIPPED, _NULLED = _Done(SKIP), _Done(None)


def _text(value: str) -> str:
    return value


@lru_cache(maxsize=4096)  # a recipe compiles once per process, whatever the files
def compile_value(spec: ValueRecipe, nested: bool = False, identifier: bool = False) -> Compiled:
    """One callable: trim, empty handling, case, value map, type, length, in that order.

    An identifier has no 255-character limit (external_id may take 987 bytes).
    """
    if spec.type == "string":
        parse: Callable[[str], Any] = _text  # the length is checked last, to truncate or not
    elif spec.type == "phone":
        parse = phone_parser(spec.phone_region)
    elif spec.input_formats and spec.type in ("date", "time"):
        parse = formats_parser(list(spec.input_formats), as_time=spec.type == "time")
    else:
        parse = OPERATIONS[spec.type].scalar
    prepare, finish = _steps(spec, nested, identifier)

    def compiled(raw: str) -> Any:
        text = prepare(raw)
        return text.value if type(text) is _Done else finish(parse(text))

    return compiled


@lru_cache(maxsize=4096)
def compile_value_in_region(
    spec: ValueRecipe, nested: bool = False, identifier: bool = False
) -> CompiledInRegion:
    """compile_value for a phone whose region another cell names (phone_region_column)."""
    parse = phone_in_region_parser(spec.phone_region)
    prepare, finish = _steps(spec, nested, identifier)

    def compiled_in_region(raw: str, region_text: str) -> Any:
        text = prepare(raw)
        return text.value if type(text) is _Done else finish(parse(text, region_text))

    return compiled_in_region


def _steps(
    spec: ValueRecipe, nested: bool, identifier: bool
) -> tuple[Callable[[str], Any], Callable[[Any], Any]]:
    """The steps before the type (to the text to parse, or _Done) and after it."""
    wrap_time = nested and spec.type in ("date", "time")
    trim, case = spec.trim, spec.case
    mapped = None if spec.values is None else dict(spec.values)
    default = None if spec.default is None else str(spec.default)
    required, empty_null = spec.required, spec.empty == "null"
    limit = spec.max_length or (None if identifier else MAX_STRING_CHARS)
    truncate = spec.too_long == "truncate"

    def prepare(raw: str) -> str | _Done:
        text = raw.strip() if trim else raw
        if not text:
            if default is not None:
                text = default
            elif required:
                raise FieldValueError("required and empty")
            else:
                return _NULLED if empty_null else _SKIPPED
        if case == "lower":
            text = text.lower()
        elif case == "upper":
            text = text.upper()
        if mapped is not None and text in mapped:
            value = mapped[text]
            if not isinstance(value, str):
                return _Done(value)
            text = value
        return text

    def finish(value: Any) -> Any:
        if limit is not None and isinstance(value, str) and len(value) > limit:
            if not truncate:
                raise FieldValueError(too_long(len(value), limit))
            value = value[:limit]
        return {"$time": value} if wrap_time else value

    return prepare, finish
