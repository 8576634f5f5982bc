"""Pure: RPI's post-execution call, and which export files it speaks for.

RPI POSTs a flat JSON object of strings after a channel run. It names no file: it is matched
to files by their channel and offer folders, and by the workflow id folder when one of the
call's ids equals it. A call is a hint that makes matching files settle sooner, never the
only trigger.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

FIELDS = (
    "interactionID", "workflowAssociationID", "workflowAssociationInstanceID", "dataflowID",
    "offerName", "channelName", "activityName", "channelOfferName", "channelExecutionID",
    "clientID",
)  # fmt: skip
# RPI's ids and names are short; a longer field is refused, so that the calls kept (memory and
# journal, rpicalls.py) stay small whatever a caller posts.
MAX_FIELD_CHARS = 512
WORKFLOW_ID_FIELDS = ("workflowAssociationInstanceID", "workflowAssociationID", "interactionID")


@dataclass(frozen=True)
class RpiCall:
    received_at: float  # epoch seconds
    fields: Mapping[str, str]

    @property
    def channel(self) -> str:
        return self.fields.get("channelName", "")

    @property
    def offer(self) -> str:
        return self.fields.get("offerName", "")

    @property
    def channel_execution_id(self) -> str:
        return self.fields.get("channelExecutionID", "")

    @property
    def workflow_ids(self) -> frozenset[str]:
        return frozenset(v for k in WORKFLOW_ID_FIELDS if (v := self.fields.get(k, "")))


def parse_rpi_call(payload: object, received_at: float) -> RpiCall | str:
    """The call, or why it cannot be used (shown to the caller with a 400)."""
    if not isinstance(payload, dict):
        return "the body must be a JSON object"
    fields = {k: v for k, v in payload.items() if k in FIELDS}
    wrong = sorted(k for k, v in fields.items() if not isinstance(v, str))
    if wrong:
        return f"these fields must be strings: {', '.join(wrong)}"
    long = sorted(k for k, v in fields.items() if len(v) > MAX_FIELD_CHARS)
    if long:
        return f"these fields are longer than {MAX_FIELD_CHARS} characters: {', '.join(long)}"
    if not fields.get("channelName") or not fields.get("offerName"):
        return "channelName and offerName are required"
    return RpiCall(received_at, fields)


def call_for(
    values: Mapping[str, str], calls: Iterable[RpiCall], now: float, ttl_s: float
) -> RpiCall | None:
    """The newest live call for a file's path values: same channel and offer, and the same
    workflow id when a call carries that file's id (else any call of the channel and offer)."""
    live = [
        c
        for c in calls
        if now - c.received_at <= ttl_s
        and c.channel == values.get("channel")
        and c.offer == values.get("offer")
    ]
    exact = [c for c in live if values.get("workflow_id") in c.workflow_ids]
    chosen = exact or live
    return max(chosen, key=lambda c: c.received_at) if chosen else None
