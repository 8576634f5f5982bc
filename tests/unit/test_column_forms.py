"""Each value operation's column form (and its as-written pattern) agrees with its scalar
form: a value it gives is the scalar form's value for that text, and MISS leaves the text to
the scalar form. columnar.py trusts both; the property tests check whole bodies."""

from __future__ import annotations

import itertools

import pytest

from rpi_braze_sync.parsers import MISS, OPERATIONS, FieldValueError

DATES = [
    f"{year}-{month:02d}-{day:02d}"
    for year, month, day in itertools.product(
        ["0000", "0001", "1900", "1984", "2000", "2023", "2024", "9999"], range(14), range(33)
    )
]
OTHERS = ["1", "0", "-3", "007", "1e3", "12.50", "true", "False", "yes", "n", "Paris", "x" * 300,
          "2024-1-02", "15/03/2024", "a@b.c", "a@b", "M", "female", "France", "fra", "<25k",
          "2024-02-30T10:00:00", "+33123456789", "\u0661\u0662", "tRUE", "-0", "01.5"]  # fmt: skip


def scalar_or_error(operation: str, text: str) -> object:
    try:
        return OPERATIONS[operation].scalar(text)
    except FieldValueError as exc:
        return exc


@pytest.mark.parametrize("operation", sorted(OPERATIONS))
def test_a_column_form_gives_the_scalar_forms_value_or_leaves_the_text(operation: str) -> None:
    op = OPERATIONS[operation]
    texts = DATES + OTHERS
    if op.column is not None:
        for column in (texts, DATES[:40], ["1984-05-06"] * 3, ["12", "0", "-7"]):
            values = op.column(column)
            if values is None:
                continue
            for text, value in zip(column, values, strict=True):
                if value is not MISS:
                    assert value == scalar_or_error(operation, text), text
                    assert type(value) is type(scalar_or_error(operation, text)), text
    if op.as_written is not None:
        for text in texts:
            if op.as_written.fullmatch(text):
                assert scalar_or_error(operation, text) == text
