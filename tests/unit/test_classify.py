"""What a /users/track answer means for the sender (braze.classify)."""

from __future__ import annotations

import json

import pytest
from multidict import CIMultiDict

from rpi_braze_sync.braze import Action, Reply, Verdict, classify

VALID_DATA = "Valid data must be provided in the 'attributes', 'events', or 'purchases' fields."
NGINX_502 = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    b"<center><h1>502 Bad Gateway</h1></center>\r\n</body>\r\n</html>\r\n"
)
NGINX_502_TEXT = (
    "<html> <head><title>502 Bad Gateway</title></head> <body> "
    "<center><h1>502 Bad Gateway</h1></center> </body> </html>"
)


def reply(status: int, body: object = b"", **headers: str) -> Reply:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return Reply(status, CIMultiDict(headers), raw)


def error(index: object, kind: str = "EMAIL_BAD_FORMAT", array: str = "attributes") -> object:
    return {"type": kind, "input_array": array, "index": index}


SUCCESS = {"message": "success", "attributes_processed": 5}


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (reply(201, SUCCESS), Verdict(Action.SENT)),
        (reply(200, SUCCESS), Verdict(Action.SENT)),
        (
            reply(201, {**SUCCESS, "errors": [error(3)]}),
            Verdict(Action.SENT, errors={3: "EMAIL_BAD_FORMAT"}),
        ),
        (
            reply(201, {**SUCCESS, "errors": [error(0), error(4, "BAD_LOCATION_UPDATE")]}),
            Verdict(Action.SENT, errors={0: "EMAIL_BAD_FORMAT", 4: "BAD_LOCATION_UPDATE"}),
        ),
        (  # another array's indexes are not ours
            reply(
                201, {**SUCCESS, "errors": [error(1, "x", "events"), error(2, "y", "purchases")]}
            ),
            Verdict(Action.SENT),
        ),
        (  # no input_array: attributes is the only array sent
            reply(201, {**SUCCESS, "errors": [{"type": "BAD_DEVICE_ID", "index": 2}]}),
            Verdict(Action.SENT, errors={2: "BAD_DEVICE_ID"}),
        ),
        (  # free-text message when there is no type
            reply(201, {**SUCCESS, "errors": [{"message": "odd", "index": 1}]}),
            Verdict(Action.SENT, errors={1: "odd"}),
        ),
        (
            reply(201, {**SUCCESS, "errors": [{"index": 1}]}),
            Verdict(Action.SENT, errors={1: "rejected by Braze"}),
        ),
        (  # malformed elements are skipped, not fatal
            reply(201, {**SUCCESS, "errors": ["text", error("3"), error(None), error(2)]}),
            Verdict(Action.SENT, errors={2: "EMAIL_BAD_FORMAT"}),
        ),
        (reply(201, {**SUCCESS, "errors": None}), Verdict(Action.SENT)),
        (reply(201, b"OK"), Verdict(Action.SENT)),
        (reply(201, b""), Verdict(Action.SENT)),
        (reply(201, b"[1, 2]"), Verdict(Action.SENT)),
        (reply(201, b"\xff\xfe"), Verdict(Action.SENT)),
    ],
)
def test_success(answer: Reply, expected: Verdict) -> None:
    assert classify(answer) == expected


@pytest.mark.parametrize("errors", [5, True])
def test_success_with_non_list_errors_is_still_sent(errors: object) -> None:
    assert classify(reply(201, {**SUCCESS, "errors": errors})) == Verdict(Action.SENT)


def test_every_object_invalid_rejects_all_with_reasons() -> None:
    body = {"message": VALID_DATA, "errors": [error(0), error(1, "BAD_DEVICE_ID")]}
    assert classify(reply(400, body)) == Verdict(
        Action.REJECT_ALL, VALID_DATA, {0: "EMAIL_BAD_FORMAT", 1: "BAD_DEVICE_ID"}
    )


@pytest.mark.parametrize(
    ("answer", "action", "message"),
    [
        (reply(400, {"message": VALID_DATA}), Action.REJECT_ALL, VALID_DATA),
        (
            reply(400, {"message": "Max Input Length Exceeded"}),
            Action.SPLIT,
            "Max Input Length Exceeded",
        ),
        (reply(413, b"Request Entity Too Large"), Action.SPLIT, "Request Entity Too Large"),
        (reply(413, {"message": "too big"}), Action.SPLIT, "too big"),
        (reply(413), Action.SPLIT, "HTTP 413"),
        (reply(400, {"message": "Invalid JSON"}), Action.BISECT, "Invalid JSON"),
        (reply(400, b"<html>Bad Request</html>"), Action.BISECT, "<html>Bad Request</html>"),
        (reply(400), Action.BISECT, "HTTP 400"),
        (reply(401, {"message": "Invalid API Key"}), Action.AUTH, "Invalid API Key"),
        (reply(403, {"message": "Access Denied"}), Action.AUTH, "Access Denied"),
        (reply(404, b"Not Found"), Action.AUTH, "Not Found"),
        (
            reply(429, b"429 Rate Limited", **{"x-ratelimit-retry-after": "3"}),
            Action.RATE_LIMITED,
            "429 Rate Limited",
        ),
        (reply(429), Action.RATE_LIMITED, "HTTP 429"),
        (reply(500, {"message": "Internal Server Error"}), Action.RETRY, "Internal Server Error"),
        (reply(502, NGINX_502), Action.RETRY, NGINX_502_TEXT),
        (
            reply(503, b"<html><body>no healthy upstream</body></html>"),
            Action.RETRY,
            "<html><body>no healthy upstream</body></html>",
        ),
        (reply(504, b"\x00\xffgateway  timeout\n"), Action.RETRY, "\x00\ufffdgateway timeout"),
        (reply(504), Action.RETRY, "HTTP 504"),
    ],
)
def test_failures(answer: Reply, action: Action, message: str) -> None:
    verdict = classify(answer)
    assert (verdict.action, verdict.message, verdict.errors) == (action, message, {})


def test_reject_all_is_recognised_whatever_the_case() -> None:
    verdict = classify(reply(400, {"message": VALID_DATA.upper()}))
    assert verdict.action is Action.REJECT_ALL


def test_a_long_html_body_gives_a_short_message() -> None:
    body = b"<html><body>" + b"x" * 5000 + b"</body></html>"
    verdict = classify(reply(503, body))
    assert verdict.action is Action.RETRY
    assert verdict.message == "<html><body>" + "x" * 188
