"""Pure: value transforms of the mapping language, compiled once into one callable per value.

A compiled value takes the raw cell text and returns the value to send, `SKIP` (nothing to
send), or raises `FieldValueError` with a reason an operator can act on.
"""

from __future__ import annotations

import collections
import datetime
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

import pycountry

from .errors import FieldValueError as FieldValueError  # (re-exported: the error tree owns it)
from .phones import PhoneError, to_e164, usable_region

if TYPE_CHECKING:  # the mapping process imports this module, never pydantic (plain.py)
    from .settings import FieldType, ValueSpec

MAX_STRING_CHARS: Final = 255  # Braze's limit for string attributes and nested strings
# Braze drops a nested object over 100 KB silently. Whether its KB is 1,000 or 1,024 bytes is
# not said: the lower bound, so that nothing Braze would drop goes unrecorded.
MAX_NESTED_BYTES: Final = 100_000


def nested_too_large(size: int) -> str:
    """The reason recorded for a nested object left out of its row."""
    return (
        f"the object is {size} bytes as JSON, over Braze's 100 KB limit for a nested object"
        " (Braze would drop it silently); the rest of the row was sent"
    )


# An ISO 8601 date-time is at most 32 characters (2024-01-02T03:04:05.123456+05:30); a longer
# text is refused before Python's parser sees it.
MAX_DATE_TIME_CHARS: Final = 64
_WHOLE = r"-?(?:0|[1-9][0-9]{0,14})"
_WHOLE_NUMBER = re.compile(_WHOLE)
_NUMBER = re.compile(_WHOLE + r"(\.[0-9]++)?")
_INTEGER = re.compile(r"[+-]?[0-9]{1,18}")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
# Linear time, whatever the text: each quantifier is possessive (never gives characters back),
# so a long run of near misses costs one pass. local@domain, the domain holding a dot with a
# character on each side: the dot is the first one after the domain's first character.
_ADDRESS_CHAR = r"[^@\s\"(),:;<>\[\\\]]"
_EMAIL = re.compile(
    rf"{_ADDRESS_CHAR}++@{_ADDRESS_CHAR}(?:(?!\.){_ADDRESS_CHAR})*+\.{_ADDRESS_CHAR}++"
)
_GENDERS = {"m": "M", "f": "F", "o": "O", "n": "N", "p": "P"}
_GENDERS |= {"male": "M", "female": "F", "other": "O"}


class _Skip:
    def __repr__(self) -> str:
        return "SKIP"


SKIP: Final = _Skip()  # the field is not sent for this row (an empty cell, by default)


def check_length(value: str, limit: int = MAX_STRING_CHARS) -> str:
    if len(value) > limit:
        raise FieldValueError(f"longer than {limit} characters ({len(value)})")
    return value


def _strict_date(value: str) -> datetime.date:
    if not _DATE.fullmatch(value):
        raise FieldValueError("not a yyyy-MM-dd date")
    try:
        return datetime.date.fromisoformat(value)
    except ValueError:
        raise FieldValueError("not a real date") from None


def parse_date(value: str) -> str:
    return _strict_date(value).isoformat()


def parse_time(value: str) -> str:
    """ISO 8601 date-time (a date alone is midnight); a time without a zone is UTC."""
    if len(value) > MAX_DATE_TIME_CHARS:
        raise FieldValueError("not an ISO 8601 date-time")
    try:
        moment = datetime.datetime.fromisoformat(value)
    except ValueError:
        raise FieldValueError("not an ISO 8601 date-time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return moment.isoformat().replace("+00:00", "Z")


def parse_integer(value: str) -> int:
    if not _INTEGER.fullmatch(value):
        raise FieldValueError("not an integer")
    return int(value)


def parse_float(value: str) -> float:
    check_length(value)  # before the parse: its work grows with the digits
    try:
        number = float(value)
    except ValueError:
        raise FieldValueError("not a number") from None
    if number != number or number in (float("inf"), float("-inf")):
        raise FieldValueError("not a finite number")
    return number


def parse_boolean(value: str) -> bool:
    lowered = value.lower()
    if lowered in ("true", "1", "yes", "y"):
        return True
    if lowered in ("false", "0", "no", "n"):
        return False
    raise FieldValueError("not a boolean (true/false, yes/no, 1/0)")


def parse_email(value: str) -> str:
    check_length(value)  # first: a long text is refused without being searched
    if not _EMAIL.fullmatch(value):
        raise FieldValueError("not an email address")
    return value


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
    """ISO alpha-2: Braze silently nulls a country it cannot map, so we map it here."""
    code = _COUNTRIES.get(value.lower())
    if code is None:
        raise FieldValueError("not an ISO 3166 country code or name")
    return code


def phone_parser(region: str | None) -> Callable[[str], str]:
    """E.164 (phones.py); national numbers are read as numbers of `region`."""

    def parse_phone(value: str) -> str:
        try:
            return to_e164(value, region)
        except PhoneError as exc:
            raise FieldValueError(str(exc)) from None

    return parse_phone


def phone_in_region_parser(default_region: str | None) -> Callable[[str, str], str]:
    """E.164, national numbers read in the region another cell names ("France", "FRA", "fr"),
    or in `default_region` when that cell is empty or names no usable region."""
    cache: dict[str, str | None] = {}

    def region_of(text: str) -> str | None:
        region = cache.get(text, "")
        if region == "":
            code = _COUNTRIES.get(text.strip().lower())
            region = code if code is not None and usable_region(code) else default_region
            if len(cache) < 1024:
                cache[text] = region
        return region

    def parse_phone_in_region(value: str, region_text: str) -> str:
        try:
            return to_e164(value, region_of(region_text))
        except PhoneError as exc:
            raise FieldValueError(str(exc)) from None

    return parse_phone_in_region


def formats_parser(formats: list[str], as_time: bool) -> Callable[[str], str]:
    """Dates or times written in other formats (strptime), to yyyy-MM-dd or ISO 8601."""

    def parse_with_formats(value: str) -> str:
        check_length(value)  # strptime matches with a regular expression
        for fmt in formats:
            try:
                moment = datetime.datetime.strptime(value, fmt)
            except ValueError:
                continue
            if not as_time:
                return moment.date().isoformat()
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=datetime.UTC)
            return moment.isoformat().replace("+00:00", "Z")
        raise FieldValueError(f"in none of the formats {', '.join(formats)}")

    return parse_with_formats


TYPE_PARSERS: dict[FieldType, Callable[[str], Any]] = {
    "string": check_length,
    "integer": parse_integer,
    "float": parse_float,
    "boolean": parse_boolean,
    "date": parse_date,
    "time": parse_time,
    "email": parse_email,
    "gender": parse_gender,
    "country": parse_country,
}


def infer_value(value: str) -> Any:
    """Typed value for an unmapped column: integer, float, boolean, date ($time), else text.

    `value` is not empty. The first character decides which checks can apply (hot path)."""
    if len(value) > MAX_STRING_CHARS:  # before any pattern: a long text is never searched
        raise FieldValueError(f"longer than {MAX_STRING_CHARS} characters ({len(value)})")
    first = value[0]
    if first in "-0123456789":
        number = _NUMBER.fullmatch(value)
        if number:
            return float(value) if number.group(1) else int(value)
        if len(value) == 10 and _DATE.fullmatch(value):
            try:
                datetime.date.fromisoformat(value)
                return {"$time": value}
            except ValueError:
                pass
    elif first in "tTfF":
        lowered = value.lower()
        if lowered == "true":
            return True
        if lowered == "false":
            return False
    return value


# --- whole columns at once, for the column-wise mapper (columnar.py) -----------------------


def _emails_as_written(values: list[str]) -> list[str] | None:
    if max(map(len, values)) > MAX_STRING_CHARS:  # the lengths first, as parse_email
        return None
    return values if None not in map(_EMAIL.fullmatch, values) else None


def _dates_as_written(values: list[str]) -> list[str] | None:
    if None in map(_DATE.fullmatch, values):
        return None
    try:
        collections.deque(map(datetime.date.fromisoformat, values), maxlen=0)
    except ValueError:
        return None
    return values


def _whole_numbers(values: list[str]) -> list[int] | None:
    """infer_value's integers (ids, amounts, counts)."""
    return None if None in map(_WHOLE_NUMBER.fullmatch, values) else list(map(int, values))


# Whole-column forms of some parsers: each takes a non-empty column of trimmed texts and gives
# every value at once (the texts themselves where they are sent as written), or None when
# some value needs the parser one by one.
COLUMN_PARSERS: dict[Callable[[str], Any], Callable[[list[str]], list[Any] | None]] = {
    parse_email: _emails_as_written,
    parse_date: _dates_as_written,
    infer_value: _whole_numbers,
}


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


def compile_value(spec: ValueSpec, nested: bool = False, identifier: bool = False) -> Compiled:
    """One callable: trim, empty handling, case, value map, type, length, in that order.

    An identifier has no 255-character limit (external_id may take 987 bytes).
    """
    if spec.type == "string":
        parse: Callable[[str], Any] = _text  # the length is checked last, to truncate or not
    elif spec.type == "phone":
        parse = phone_parser(spec.phone_region)
    elif spec.input_formats and spec.type in ("date", "time"):
        parse = formats_parser(spec.input_formats, as_time=spec.type == "time")
    else:
        parse = TYPE_PARSERS[spec.type]
    prepare, finish = _steps(spec, nested, identifier)

    def compiled(raw: str) -> Any:
        text = prepare(raw)
        return text.value if type(text) is _Done else finish(parse(text))

    return compiled


def compile_value_in_region(
    spec: ValueSpec, nested: bool = False, identifier: bool = False
) -> CompiledInRegion:
    """compile_value for a phone whose region another cell names (phone_region_column)."""
    parse = phone_in_region_parser(spec.phone_region)
    prepare, finish = _steps(spec, nested, identifier)

    def compiled_in_region(raw: str, region_text: str) -> Any:
        text = prepare(raw)
        return text.value if type(text) is _Done else finish(parse(text, region_text))

    return compiled_in_region


def _steps(
    spec: ValueSpec, nested: bool, identifier: bool
) -> tuple[Callable[[str], Any], Callable[[Any], Any]]:
    """The steps before the type (to the text to parse, or _Done) and after it."""
    wrap_time = nested and spec.type in ("date", "time")
    trim, case, mapped = spec.trim, spec.case, spec.values
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
                raise FieldValueError(f"longer than {limit} characters ({len(value)})")
            value = value[:limit]
        return {"$time": value} if wrap_time else value

    return prepare, finish
