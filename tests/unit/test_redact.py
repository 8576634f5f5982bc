"""What may be shown of a text from Braze: credentials masked, the rest kept, bounded."""

from __future__ import annotations

import pytest

from rpi_braze_sync.braze import Reply, classify
from rpi_braze_sync.redact import SHOWN_CHARS, redact, without

KEY = "5f1c9a2b-1234-4cde-8f00-0123456789ab"


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("Invalid API key", "Invalid API key"),
        (f"Authorization: Bearer {KEY}", "Authorization: Bearer [redacted]"),
        (f"bearer {KEY}, then", "bearer [redacted], then"),
        ("Basic dXNlcjpwYXNz", "Basic [redacted]"),
        (f"api_key={KEY}", "api_key=[redacted]"),
        ("token: abc", "token: [redacted]"),
        (f"key {KEY} refused", "key [redacted] refused"),
        (
            "jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.c2lnbmF0dXJlMTIzNDU2Nzg5",
            "jwt [redacted].[redacted].[redacted]",
        ),
        # readable words, host names and short ids stay
        (
            "see https://rest.iad-01.braze.com/users/track",
            "see https://rest.iad-01.braze.com/users/track",
        ),
        ("external_id user_12345 is invalid", "external_id user_12345 is invalid"),
        ("attributes_processed_successfully", "attributes_processed_successfully"),
    ],
)
def test_credentials_are_masked(text: str, shown: str) -> None:
    assert redact(text) == shown


def test_a_long_text_is_bounded_and_no_token_is_cut_in_two() -> None:
    text = "word " * 230 + KEY + " tail" * 1000
    shown = redact(text)
    assert len(shown) <= SHOWN_CHARS + 1
    assert KEY[:8] not in shown


def test_the_key_is_masked_as_sent_and_json_escaped() -> None:
    key = "abc/def+ghi"
    body = b'{"message":"bad abc/def+ghi or abc\\/def+ghi"}'
    assert without(body, key) == b'{"message":"bad [redacted] or [redacted]"}'


def test_classify_redacts_messages_and_row_errors() -> None:
    body = (
        b'{"message":"Bearer ' + KEY.encode() + b'","errors":[{"type":"key '
        + KEY.encode() + b' refused","input_array":"attributes","index":0}]}'
    )  # fmt: skip
    assert classify(Reply(401, {}, body)).message == "Bearer [redacted]"
    verdict = classify(Reply(201, {}, body))
    assert verdict.errors == {0: "key [redacted] refused"}
