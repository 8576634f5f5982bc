"""Pure: phone numbers to E.164, the form Braze reads without guessing, by libphonenumber's rules.

libphonenumber takes about 20 µs a number, more than all the rest of a row. A number already
written as `+<digits>` takes a shortcut: its calling code's rules (which region, the general
and per-type patterns and lengths, the national prefix) are compiled once into one pattern
that matches exactly the national numbers libphonenumber finds valid as they are. Anything
else (spaces, a national number, an invalid one, a prefix it might strip) goes to
libphonenumber itself. The tests compare both on every region's numbers and near misses.
"""

from __future__ import annotations

import re
from functools import cache

import phonenumbers
from phonenumbers import COUNTRY_CODE_TO_REGION_CODE, SUPPORTED_REGIONS
from phonenumbers.phonemetadata import PhoneMetadata, PhoneNumberDesc


class PhoneError(ValueError):
    """Not a phone number Braze could use; the message says why."""


def to_e164(text: str, region: str | None) -> str:
    """`text` as E.164 ("+33612345678"). `region` (ISO alpha-2) is where a national number
    (without +) is from; None: national numbers cannot be read."""
    if valid_as_written(text):
        return text
    return _libphonenumber(text, region)


def valid_as_written(text: str) -> bool:
    """`text` is `+<digits>` and libphonenumber finds it valid as it is: it is its E.164.
    False says nothing (libphonenumber may still read it, after stripping a prefix...)."""
    digits = text[1:]
    # E.164 has at most 15 digits (libphonenumber reads 17): a longer text is not looked at,
    # and its length never becomes a key of the pattern cache below.
    if text[:1] != "+" or not 3 <= len(digits) <= 17 or not (digits.isascii() and digits.isdigit()):
        return False
    key = (digits[:3], len(digits))
    found = _BY_START.get(key)
    if found is None:
        found = _BY_START[key] = _pattern_for_start(*key)
    pattern, code_size = found
    return pattern.match(digits, code_size) is not None


# (first three digits, digits): the pattern of the national numbers, and where they start.
_BY_START: dict[tuple[str, int], tuple[re.Pattern[str], int]] = {}


def valid_as_written_all(texts: list[str]) -> list[object]:
    """valid_as_written of each text (truthy or not), for a column: one pattern of the valid
    number shapes met so far (first three digits and length) answers in one C-speed pass; the
    texts it leaves (a new shape, a number that is not valid) are valid_as_written's."""
    if _COMBINED.seen != len(_BY_START):
        _COMBINED.update()
    found: list[object] = list(map(_COMBINED.pattern.fullmatch, texts))
    if None in found:
        for i, match in enumerate(found):
            if match is None:
                found[i] = valid_as_written(texts[i])
    return found


class _Combined:
    """One pattern for the shapes of _BY_START: `+`, the shape's first three digits and
    length checked by a look-ahead, its calling code, then its own pattern, as
    valid_as_written matches them: it matches only what valid_as_written finds valid."""

    MAX_SHAPES = 32  # the first met (a file's own country or two, mostly); others go one by one

    def __init__(self) -> None:
        self.seen = 0  # entries of _BY_START looked at
        self.branches: list[str] = []
        self.pattern: re.Pattern[str] = re.compile("(?!)")

    def update(self) -> None:
        added = False
        for (start, digits), (pattern, code_size) in list(_BY_START.items())[self.seen :]:
            usable = pattern is not _NEVER and not _BACKREFERENCE.search(pattern.pattern)
            if usable and len(self.branches) < self.MAX_SHAPES:
                ahead = f"(?={start}[0-9]{{{digits - 3}}}\\Z)"
                self.branches.append(f"{ahead}{start[:code_size]}(?:{pattern.pattern})")
                added = True
        self.seen = len(_BY_START)
        if added:
            try:
                self.pattern = re.compile(r"\+(?:" + "|".join(self.branches) + ")")
            except re.error:  # (never seen: libphonenumber's patterns are plain) one by one
                self.branches = []
                self.pattern = re.compile("(?!)")


_BACKREFERENCE = re.compile(r"\\[1-9]")  # (none in libphonenumber's: its numbers would shift)
_COMBINED = _Combined()


def _pattern_for_start(start: str, digits: int) -> tuple[re.Pattern[str], int]:
    for size in (1, 2, 3):  # the shortest known calling code, as libphonenumber reads it
        code = int(start[:size])
        if start[0] != "0" and code in COUNTRY_CODE_TO_REGION_CODE:
            return _pattern_of(code, digits - size), size
    return _NEVER, 0


def usable_region(region: str) -> bool:
    return region in SUPPORTED_REGIONS


def _libphonenumber(text: str, region: str | None) -> str:
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        national = not text.startswith("+")
        hint = " (set phone_region for national numbers)" if national and not region else ""
        raise PhoneError("not a phone number" + hint) from None
    if not phonenumbers.is_valid_number(number):
        raise PhoneError("not a valid phone number")
    return str(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))


@cache
def _pattern_of(code: int, length: int) -> re.Pattern[str]:
    """The national numbers of `length` digits under calling code `code` that parse as
    written (no leading zero, no national prefix to strip, 2 to 17 digits) and are valid:
    libphonenumber picks the region as region_code_for_number does (the first whose leading
    digits match, or that finds the number valid), then its type must not be UNKNOWN."""
    home = _metadata(code, phonenumbers.region_code_for_country_code(code))
    if home is None or not 2 <= length <= 17:
        return _NEVER
    prefix = home.national_prefix_for_parsing
    head = r"(?!0)" + (f"(?!{prefix})" if prefix else "")
    regions = [m for r in COUNTRY_CODE_TO_REGION_CODE[code] if (m := _metadata(code, r))]
    if len(COUNTRY_CODE_TO_REGION_CODE[code]) == 1:
        choice = _valid_in(regions[0], length) if regions else "(?!)"
    else:
        choice = "(?!)"  # no region left: not valid
        for metadata in reversed(regions):
            valid, leading = _valid_in(metadata, length), metadata.leading_digits
            if leading is not None:
                choice = f"(?:(?={leading}){valid}|(?!{leading}){choice})"
            else:
                choice = f"(?:{valid}|{choice})"
    return re.compile(head + choice)


_NEVER = re.compile("(?!)")


def _metadata(code: int, region: str | None) -> PhoneMetadata | None:
    if region is None:
        return None
    found: PhoneMetadata | None = PhoneMetadata.metadata_for_region_or_calling_code(code, region)
    return found


def _valid_in(metadata: PhoneMetadata, length: int) -> str:
    """A number of `length` digits valid for this region: the general description and one
    type's match it (the common types first: the pattern is tried in order)."""
    descs = [metadata.fixed_line, metadata.premium_rate, metadata.toll_free,
             metadata.shared_cost, metadata.voip, metadata.personal_number, metadata.pager,
             metadata.uan, metadata.voicemail]  # fmt: skip
    if not metadata.same_mobile_and_fixed_line_pattern:
        descs.insert(1, metadata.mobile)
    types = [t for t in (_pattern_for(d, length) for d in descs) if t is not None]
    general = _pattern_for(metadata.general_desc, length)
    if general is None or not types:
        return "(?!)"
    return rf"(?=(?:{general})\Z)(?:(?:{')|(?:'.join(types)}))\Z"


def _pattern_for(desc: PhoneNumberDesc | None, length: int) -> str | None:
    """The description's pattern, if numbers of this length can match it."""
    if desc is None or not desc.national_number_pattern:
        return None
    lengths = desc.possible_length
    if lengths and length not in lengths:
        return None
    return str(desc.national_number_pattern)
