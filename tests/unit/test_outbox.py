"""The dry run's transport: each body one line of the outbox, answered as Braze would."""

from __future__ import annotations

from pathlib import Path

import orjson

from rpi_braze_sync.braze import OutboxTransport


async def test_each_body_is_a_line_and_the_reply_counts_its_attributes_objects(
    tmp_path: Path,
) -> None:
    outbox = OutboxTransport(tmp_path / "outbox")
    objects = [
        {"external_id": "u1", "first_name": "A", "_update_existing_only": False},
        {"external_id": "u2", "_merge_objects": True, "_update_existing_only": True},
    ]
    body = orjson.dumps({"attributes": objects})
    reply = await outbox.post(body, "Channel/a.csv")
    assert (reply.status, orjson.loads(reply.body)) == (
        201, {"message": "success", "attributes_processed": 2},
    )  # fmt: skip
    outbox.finish("Channel/a.csv")
    await outbox.close()
    assert outbox.path_for("Channel/a.csv").read_bytes() == body + b"\n"
