"""The E.164 shortcut gives libphonenumber's own answer, on every region's numbers and near
misses of them."""

from __future__ import annotations

import random

import phonenumbers
import pytest
from phonenumbers import PhoneNumberFormat, PhoneNumberType

from rpi_braze_sync import phones
from rpi_braze_sync.phones import (
    PhoneError,
    _libphonenumber,
    to_e164,
    valid_as_written,
    valid_as_written_all,
)


def outcome(call: object, *args: object) -> str:
    try:
        return str(call(*args))  # type: ignore[operator]
    except PhoneError as exc:
        return f"error: {exc}"


def international_numbers() -> list[str]:
    """Every example number of every region and type, in E.164, and near misses of each."""
    rng = random.Random(5)
    examples: list[str] = []
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        for kind in PhoneNumberType.values():
            number = phonenumbers.example_number_for_type(region, kind)
            if number is not None:
                examples.append(phonenumbers.format_number(number, PhoneNumberFormat.E164))
    for code in sorted(phonenumbers.COUNTRY_CODES_FOR_NON_GEO_REGIONS):
        number = phonenumbers.example_number_for_non_geo_entity(code)
        if number is not None:
            examples.append(phonenumbers.format_number(number, PhoneNumberFormat.E164))
    found = set(examples)
    for text in examples:
        digits = text[1:]
        found.add(text[:-1])  # one digit short
        found.add(text + str(rng.randrange(10)))  # one too many
        last = int(digits[-1])
        found.add(text[:-1] + str((last + 1) % 10))
        position = rng.randrange(1, len(digits))
        found.add("+" + digits[:position] + str(rng.randrange(10)) + digits[position + 1 :])
        found.add("+" + digits[:3] + "".join(str(rng.randrange(10)) for _ in range(7)))
    return sorted(found)


NUMBERS = international_numbers()


def test_the_shortcut_answers_as_libphonenumber_does() -> None:
    differ = [
        (text, outcome(to_e164, text, "US"), outcome(_libphonenumber, text, "US"))
        for text in NUMBERS
        if outcome(to_e164, text, "US") != outcome(_libphonenumber, text, "US")
    ]
    assert differ == []
    assert len(NUMBERS) > 5000


def test_the_shortcut_takes_nearly_every_valid_number() -> None:
    valid = [t for t in NUMBERS if not outcome(_libphonenumber, t, None).startswith("error")]
    taken = [t for t in valid if valid_as_written(t)]
    assert len(taken) > 0.95 * len(valid)
    assert len(valid) > 2000


@pytest.mark.parametrize(
    ("text", "region", "expected"),
    [
        ("+33612345678", None, "+33612345678"),
        ("+33 6 12 34 56 78", None, "+33612345678"),
        ("06 12 34 56 78", "FR", "+33612345678"),
        ("2025550143", "US", "+12025550143"),  # what Braze would assume without the +
        ("2025550143", "FR", "error: not a valid phone number"),
        ("0612345678", None, "error: not a phone number (set phone_region for national numbers)"),
        ("+1 202 555 0143 ext. 9", None, "+12025550143"),
        ("+999123", None, "error: not a phone number"),
        ("+12", None, "error: not a phone number"),
        ("call me", "US", "error: not a phone number"),
    ],
)
def test_to_e164(text: str, region: str | None, expected: str) -> None:
    assert outcome(to_e164, text, region) == expected


def test_the_column_shortcut_answers_as_the_shortcut_does(monkeypatch: pytest.MonkeyPatch) -> None:
    # valid_as_written_all answers a column with one pattern of the shapes met so far; it must
    # say yes exactly where valid_as_written does, on every example and near miss, with the
    # shapes met in a different order (first half, then all), and with spaces and other text;
    # with the usual bound on the shapes in the pattern, and with every shape in it.
    texts = [*NUMBERS, "+33 1 23 45 67 89", "0123456789", "", "+", "+33", "+\u0663\u0663123456789"]
    half = texts[::2]
    assert phones._Combined.MAX_SHAPES == 32
    for bound in (32, 100_000):
        monkeypatch.setattr(phones, "_COMBINED", phones._Combined())
        monkeypatch.setattr(phones._COMBINED, "MAX_SHAPES", bound)
        for column in (half, texts, list(reversed(texts))):
            answers = [bool(found) for found in valid_as_written_all(column)]
            assert answers == [valid_as_written(text) for text in column]
        branches = len(phones._COMBINED.branches)
        assert (branches == 32) if bound == 32 else (branches > 300)  # then every valid shape
