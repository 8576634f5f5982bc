"""Pure: the value operations of the mapping language, each defined once: its scalar form
(one text in, the value out, or FieldValueError whose message is the reason an operator
reads), and where it pays a column form (a whole column at once, in C-speed loops) that
columnar.py uses and that must agree with the scalar form (the property tests check it).
No I/O. (The identifier rules: identifiers.py.)
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from .countries import country_index
from .errors import FieldValueError as FieldValueError  # (re-exported: the error tree owns it)
from .phones import PhoneError, to_e164, usable_region

MAX_STRING_CHARS: Final = 255  # Braze's limit for string attributes and nested strings
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


def too_long(length: int, limit: int = MAX_STRING_CHARS) -> str:
    """The reason for a text over its limit (Braze's 255 characters, or max_length)."""
    return f"longer than {limit} characters ({length})"


def check_length(value: str, limit: int = MAX_STRING_CHARS) -> str:
    if len(value) > limit:
        raise FieldValueError(too_long(len(value), limit))
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


_COUNTRIES = country_index()


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


def infer_value(value: str) -> Any:
    """Typed value for an unmapped column: integer, float, boolean, date ($time), else text.

    `value` is not empty. The first character decides which checks can apply (hot path)."""
    if len(value) > MAX_STRING_CHARS:  # before any pattern: a long text is never searched
        raise FieldValueError(too_long(len(value)))
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
# A column form takes a non-empty column of trimmed texts and gives each value, or MISS where
# the scalar form must decide (an empty text, an invalid one, one it does not know at once);
# None when every value needs the scalar form.


class _Miss:
    def __repr__(self) -> str:
        return "MISS"


MISS: Final = _Miss()
# A match's text, or MISS where there is none: map(_MISS_IF_NONE.get, matches, texts), in C
# (a match is never a key: it gives its text back).
_MISS_IF_NONE: dict[Any, Any] = {None: MISS}
ColumnForm = Callable[[list[str]], list[Any] | None]


def _texts_within_limit(values: list[str]) -> list[Any]:
    """check_length's column form: texts within the limit as written (an empty one, to skip,
    and a longer one, to refuse, are the scalar form's)."""
    if max(map(len, values)) <= MAX_STRING_CHARS and "" not in values:
        return values
    return [v if v and len(v) <= MAX_STRING_CHARS else MISS for v in values]


def _emails_as_written(values: list[str]) -> list[Any]:
    if max(map(len, values)) <= MAX_STRING_CHARS:  # the lengths first, as parse_email
        found = list(map(_EMAIL.fullmatch, values))
        return values if None not in found else list(map(_MISS_IF_NONE.get, found, values))
    return [v if len(v) <= MAX_STRING_CHARS and _EMAIL.fullmatch(v) else MISS for v in values]


# Real dates, 29 February aside (its year decides: the scalar form's), without year 0.
_REAL_DATE = re.compile(
    r"(?!0000)[0-9]{4}-(?:(?:0[13578]|1[02])-(?:0[1-9]|[12][0-9]|3[01])"
    r"|(?:0[469]|11)-(?:0[1-9]|[12][0-9]|30)|02-(?:0[1-9]|1[0-9]|2[0-8]))"
)


def _dates_as_written(values: list[str]) -> list[Any]:
    """Real dates as written, each told by one pattern (a real export has 2024-02-30 and
    15/03/2024, and an exception a cell costs microseconds); the others are MISS."""
    found = list(map(_REAL_DATE.fullmatch, values))
    return values if None not in found else list(map(_MISS_IF_NONE.get, found, values))


# infer_value's texts that stay texts, told by a pattern: a first character no number, date or
# boolean starts with, or digits with a leading zero (loyalty numbers: never a number).
_PLAIN_TEXT = re.compile(
    rf"[^-0-9tTfF].{{0,{MAX_STRING_CHARS - 1}}}|0[0-9]{{1,{MAX_STRING_CHARS - 1}}}", re.S
)


def _whole_numbers(values: list[str]) -> list[int] | None:
    """infer_value's integers (ids, amounts, counts)."""
    return None if None in map(_WHOLE_NUMBER.fullmatch, values) else list(map(int, values))


@dataclass(frozen=True, slots=True)
class Operation:
    """A value operation: the scalar form, and the column form where there is one."""

    scalar: Callable[[str], Any]
    column: ColumnForm | None = None
    # Texts this matches are their own value: tried on the texts that the column form and a
    # cache of distinct texts left, before the scalar form (one C call instead of a Python one).
    as_written: re.Pattern[str] | None = None


# The types of the mapping language (phone aside: it takes a region), and infer_value.
OPERATIONS: dict[str, Operation] = {
    "string": Operation(check_length, _texts_within_limit),
    "integer": Operation(parse_integer),
    "float": Operation(parse_float),
    "boolean": Operation(parse_boolean),
    "date": Operation(parse_date, _dates_as_written),
    "time": Operation(parse_time),
    "email": Operation(parse_email, _emails_as_written),
    "gender": Operation(parse_gender),
    "country": Operation(parse_country),
    "infer": Operation(infer_value, _whole_numbers, _PLAIN_TEXT),
}
