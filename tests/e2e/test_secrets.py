"""Secrets with a real daemon: a Braze body that echoes the key or a bearer token is shown
redacted (the unauthenticated /readyz, the log, the rejects), and the mapping process runs
without the key or the hook's token in its environment."""

from __future__ import annotations

from pathlib import Path

import orjson

from tests.e2e.conftest import UPSERT, DaemonProcess, wait_until
from tests.fakebraze import FakeBraze, Scripted

TOKEN = "hook-token-8d2e41a7b3"
OTHER_TOKEN = "eyJhbGciOiJIUzI1NiJ9abc123def456ghi789"


def child_environment(pid: int) -> list[bytes]:
    """The environment of the daemon's one child, the mapping process."""
    (child,) = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return Path(f"/proc/{child}/environ").read_bytes().split(b"\0")


async def test_braze_bodies_are_redacted_and_the_mapping_process_has_no_secret(
    daemon: DaemonProcess, fake_braze: FakeBraze
) -> None:
    key = fake_braze.api_key
    echo = f"Invalid API key {key} (Authorization: Bearer {key}; session {OTHER_TOKEN})"
    fake_braze.script.append(Scripted("status", 401, orjson.dumps({"message": echo})))
    row_error = {"type": f"user denied for key {key}", "input_array": "attributes", "index": 0}
    reply = {"message": "success", "errors": [row_error]}
    fake_braze.script.append(Scripted("status", 201, orjson.dumps(reply)))
    daemon.settings["braze"]["auth_retry_seconds"] = 3
    daemon.settings["hook"] = {"token_env": "RPI_HOOK_TOKEN"}
    daemon.extra_env["RPI_HOOK_TOKEN"] = TOKEN
    await daemon.start()
    daemon.export_path(UPSERT, "O", "1", "f.txt").write_text("external_id\nu1\nu2\n")
    await wait_until(lambda: 401 in fake_braze.statuses, what="the 401")
    status, ready = await daemon.get("/readyz")
    assert status == 503
    assert "Braze refuses the API key or URL (HTTP 401: Invalid API key [redacted]" in ready
    assert "Bearer [redacted]" in ready
    for secret in (key, OTHER_TOKEN):
        assert secret not in ready
    assert daemon.proc is not None
    environment = child_environment(daemon.proc.pid)
    names = {entry.split(b"=", 1)[0] for entry in environment if entry}
    assert b"PATH" in names  # it has an environment, only not the secrets
    assert not names & {b"BRAZE_API_KEY", b"RPI_HOOK_TOKEN"}
    assert key.encode() not in b"\0".join(environment)
    rejects = daemon.state / "rejects" / UPSERT / "O" / "1" / "f.txt.rejects.csv"
    await wait_until(rejects.exists, timeout_s=30, what="the row Braze refused")
    assert await daemon.stop() == 0
    assert "Braze: user denied for key [redacted]" in rejects.read_text()
    log = daemon.log_text()
    assert "Invalid API key [redacted]" in log
    for path in [daemon.log, *daemon.state.rglob("*")]:
        if path.is_file():
            data = path.read_bytes()
            for secret in (key, TOKEN, OTHER_TOKEN):
                assert secret.encode() not in data, f"{secret} in {path}"
