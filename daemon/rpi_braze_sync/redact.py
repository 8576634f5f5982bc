"""Pure: what may be shown of a text that came from Braze (logs, /readyz, rejects, errors).

Braze's error bodies can echo the request's headers: the API key, a bearer token. /readyz is
unauthenticated, so nothing that looks like a credential leaves this module: the key itself
(removed where the answer enters, braze.py), an authorization scheme's token, and any long
run of token characters that mixes letters and digits (keys, UUIDs, JWTs, base64).
"""

from __future__ import annotations

import re
from typing import Final

MASK: Final = "[redacted]"
SHOWN_CHARS: Final = 300  # of a message, after redaction
_READ_CHARS = 4 * SHOWN_CHARS  # of a message, before: the work is bounded by this
# "Bearer abc", "Authorization: Basic abc", "api_key=abc", "token: abc": the name is kept
_SCHEME = re.compile(
    r"(?i)\b((?:authorization|x-api-key|api[_ -]?key|token)\s*+[:=]?+\s*+"
    r"(?:(?:bearer|basic|token)\s++)?+|(?:bearer|basic)\s++)[^\s,;\"']++"
)
_TOKEN_RUN = re.compile(r"[A-Za-z0-9_\-+/=]{20,}+")  # not ".": host names stay readable


def _mask_token(found: re.Match[str]) -> str:
    run = found.group()
    has_letter = any(c.isalpha() for c in run)
    has_digit = any(c.isdigit() for c in run)
    return MASK if has_letter and has_digit else run


def redact(text: str) -> str:
    """`text` without anything that looks like a credential, at most SHOWN_CHARS long."""
    if len(text) > _READ_CHARS:
        # Cut at a space, so that no token is cut in two and half of it kept.
        head = text[:_READ_CHARS]
        text = head[: head.rfind(" ")] if " " in head else ""
    text = _SCHEME.sub(lambda m: m.group(1) + MASK, text)
    text = _TOKEN_RUN.sub(_mask_token, text)
    return text if len(text) <= SHOWN_CHARS else text[:SHOWN_CHARS] + "…"


def without(body: bytes, secret: str) -> bytes:
    """`body` with every occurrence of `secret` (as sent, or JSON-escaped) masked."""
    if not secret:
        return body
    for form in {secret.encode(), secret.replace("/", "\\/").encode()}:  # JSON may escape /
        body = body.replace(form, MASK.encode())
    return body
