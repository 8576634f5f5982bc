"""Pure: the identifier rules, once, for every executor: what makes an identifier's value
unusable (a control character; an external_id over Braze's 987 bytes), the cheap test that
tells when the full one is needed, and that test's column form; and the user identity a
row's identifier makes.
"""

from __future__ import annotations

import re
from typing import Final

MAX_EXTERNAL_ID_BYTES: Final = 987
# 4 bytes a character at most: an id this short is always within Braze's 987 bytes.
ID_CHARS_ALWAYS_SHORT: Final = MAX_EXTERNAL_ID_BYTES // 4
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")  # Unicode's Cc: C0, DEL and C1


def control_character(identifier: str) -> str | None:
    """Why an identifier cannot be used, if it holds a control character (a NUL, a tab, a
    newline...): Braze would keep it as a different user. Printable text, nearly every value,
    is answered by str.isprintable in C; only the others are searched."""
    if identifier.isprintable():
        return None
    found = _CONTROL.search(identifier)
    if found is None:
        return None  # other non-printables (a no-break space...) are ordinary characters
    code, at = ord(found.group()), found.start() + 1
    return f"holds a control character (U+{code:04X} at character {at})"


def identifier_problem(name: str, text: str, external_id: bool) -> str | None:
    """Why a non-empty identifier value rejects its row, or None. The executors call it only
    for a text that could have a problem (not printable, or long): `might_be_unusable`."""
    problem = control_character(text)
    if problem is not None:
        return f"{name} {problem}"
    if external_id and len(text.encode("utf-8")) > MAX_EXTERNAL_ID_BYTES:
        return f"external_id is longer than {MAX_EXTERNAL_ID_BYTES} bytes"
    return None


def might_be_unusable(text: str) -> bool:
    """False when identifier_problem is sure to be None (nor is the text empty): the cheap
    test before the full one, for one identifier."""
    return not text or len(text) > ID_CHARS_ALWAYS_SHORT or not text.isprintable()


def unusable_rows(texts: list[str]) -> list[int]:
    """might_be_unusable's column form: the rows whose identifier needs the full test."""
    if (
        "" in texts
        or max(map(len, texts)) > ID_CHARS_ALWAYS_SHORT
        or not all(map(str.isprintable, texts))
    ):
        return [i for i, text in enumerate(texts) if might_be_unusable(text)]
    return []


def identity(kind: str, texts: list[str]) -> str:
    """A user's identity (the sender's "same user", delta's store key: deltarecord.user_key)
    from the identifier's kind and values (user_alias: label, name). An external_id is its
    value: its store keys keep the order of ids, so an export sorted by id reads the store in
    order; the mapping's fast path takes the column as it is. Any other kind is its name, then
    each value after a NUL, which no usable identifier holds (identifier_problem): no two
    users meet, as an external_id "email:a@b.c" and the email "a@b.c" did with ':', or the
    aliases label "a:b" name "c" and label "a" name "b:c"."""
    if kind == "external_id":
        return texts[0]
    return "\0".join((kind, *texts))
