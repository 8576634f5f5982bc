"""Production interfaces of the real daemon: sd_notify, the RPI post-execution hook, JSON logs,
and secrets that never leave memory."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import time
from pathlib import Path

from tests.e2e.conftest import APPEND, UPSERT, DaemonProcess, wait_until
from tests.fakebraze import FakeBraze

HOOK = "/rpi/post-execution"
TOKEN = "hook-token-7d1e"


def rpi_call(channel: str, offer: str, workflow: str, execution: str = "9911") -> dict[str, str]:
    return {
        "interactionID": "int-1",
        "workflowAssociationID": "wa-1",
        "workflowAssociationInstanceID": workflow,
        "dataflowID": "df-1",
        "offerName": offer,
        "channelName": channel,
        "activityName": "Export",
        "channelOfferName": f"{channel} {offer}",
        "channelExecutionID": execution,
        "clientID": "client-1",
    }


async def test_sd_notify_ready_watchdog_reload_and_stopping(
    daemon: DaemonProcess, tmp_path: Path
) -> None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify.sock"))
    sock.setblocking(False)
    daemon.extra_env.update(
        {"NOTIFY_SOCKET": str(tmp_path / "notify.sock"), "WATCHDOG_USEC": "400000"}
    )
    messages: list[str] = []
    loop = asyncio.get_running_loop()

    async def receive() -> None:
        while True:
            data = await loop.sock_recv(sock, 4096)
            messages.append(data.decode())

    receiver = asyncio.create_task(receive())
    try:
        await daemon.start()
        await wait_until(lambda: any(m.startswith("READY=1") for m in messages), what="READY=1")
        await asyncio.sleep(1.2)
        assert sum(m == "WATCHDOG=1" for m in messages) >= 4  # every 0.2 s
        assert any(m.startswith("STATUS=") for m in messages)
        assert daemon.proc is not None
        count = len(messages)
        daemon.proc.send_signal(signal.SIGHUP)
        await wait_until(
            lambda: any(m.startswith("READY=1") for m in messages[count:]),
            what="READY after reload",
        )
        reload_messages = messages[count:]
        reloading = next(i for i, m in enumerate(reload_messages) if m.startswith("RELOADING=1"))
        assert "\nMONOTONIC_USEC=" in reload_messages[reloading]
        assert any(m.startswith("READY=1") for m in reload_messages[reloading:])
        assert await daemon.stop() == 0
        await wait_until(lambda: "STOPPING=1" in messages, what="STOPPING=1")
    finally:
        receiver.cancel()
        sock.close()


async def test_hook_token_guards_only_its_route(daemon: DaemonProcess) -> None:
    daemon.settings["hook"] = {"token_env": "RPI_HOOK_TOKEN"}
    daemon.extra_env["RPI_HOOK_TOKEN"] = TOKEN
    await daemon.start("--log-level", "debug")
    call = rpi_call(UPSERT, "Offer", "wf-1")
    assert (await daemon.post(HOOK, call))[0] == 401
    assert (await daemon.post(HOOK, call, {"Authorization": "Bearer nope"}))[0] == 401
    assert (await daemon.post(f"{HOOK}?token=nope", call))[0] == 401
    status, body = await daemon.post(HOOK, call, {"Authorization": f"Bearer {TOKEN}"})
    assert (status, json.loads(body)) == (202, {"status": "accepted"})
    status, body = await daemon.post(f"{HOOK}?token={TOKEN}", call)  # RPI may not send headers
    assert (status, json.loads(body)) == (
        200,
        {"status": "already known"},
    )  # duplicates are harmless
    status, body = await daemon.post(f"{HOOK}?token={TOKEN}", {"channelName": 5})
    assert status == 400
    assert (await daemon.get("/metrics"))[0] == 200  # Prometheus needs no token
    assert await daemon.metric("rpi_braze_sync_hook_calls_total", {"outcome": "unauthorised"}) == 3
    assert await daemon.metric("rpi_braze_sync_hook_calls_total", {"outcome": "accepted"}) == 1
    assert await daemon.metric("rpi_braze_sync_hook_calls_total", {"outcome": "duplicate"}) == 1
    assert await daemon.stop() == 0
    log = daemon.log_text()
    assert f"{HOOK} 202" in log  # the access log is on (debug) ...
    assert TOKEN not in log  # ... and never shows the token, not even from a query string


async def test_a_call_makes_matching_files_complete_after_a_short_recheck(
    daemon: DaemonProcess, fake_braze: FakeBraze
) -> None:
    daemon.settings["watch"]["settle_seconds"] = 60  # far longer than this test
    daemon.settings["hook"] = {"recheck_seconds": 0.5}
    await daemon.start()
    # A file written before the call, in the workflow folder the call names ...
    daemon.export_path(UPSERT, "Offer", "wf-7", "a.txt").write_text(
        "external_id,first_name\nu1,A\n"
    )
    # ... and an append file without a ChannelExecutionID column, written just after it.
    await asyncio.sleep(0.3)
    called = time.monotonic()
    status, _ = await daemon.post(HOOK, rpi_call(UPSERT, "Offer", "wf-7", execution="5501"))
    assert status == 202
    await wait_until(lambda: len(fake_braze.objects()) == 1, timeout_s=5, what="the upsert file")
    latency = fake_braze.starts[0] - called
    assert latency < 0.5 + 1.0  # the re-check, then under a second to the first request
    status, _ = await daemon.post(HOOK, rpi_call(APPEND, "Offer", "wf-8", execution="5502"))
    assert status == 202
    daemon.export_path(APPEND, "Offer", "wf-8", "b.txt").write_text(
        "external_id,output_name\nu1,Aud\n"
    )
    await wait_until(lambda: len(fake_braze.objects()) == 2, timeout_s=10, what="the append file")
    assert await daemon.stop() == 0
    upsert, append = fake_braze.objects()
    assert upsert["rpi_channel_exec_ids"] == {"add": ["5501"]}
    assert append["rpi_channel_exec_ids"] == {"add": ["5502"]}  # from the call: no such column
    assert append["_update_existing_only"] is True


async def test_a_call_is_kept_across_a_kill(daemon: DaemonProcess, fake_braze: FakeBraze) -> None:
    daemon.settings["watch"]["settle_seconds"] = 60
    daemon.settings["hook"] = {"recheck_seconds": 0.5}
    await daemon.start()
    assert (await daemon.post(HOOK, rpi_call(UPSERT, "Offer", "wf-1")))[0] == 202
    await daemon.stop(signal.SIGKILL)  # answered 2xx: it was in the journal already
    await daemon.start()
    daemon.export_path(UPSERT, "Offer", "wf-1", "late.txt").write_text("external_id\nu1\n")
    await wait_until(
        lambda: fake_braze.users() == ["u1"], timeout_s=8, what="the file the call matched"
    )
    assert await daemon.stop() == 0


async def test_json_logs_name_the_file_they_are_about(
    daemon: DaemonProcess, fake_braze: FakeBraze
) -> None:
    await daemon.start("--log-format", "json")
    daemon.export_path(UPSERT, "Spring", "wf-2", "f.txt").write_text("external_id\nu1\n")
    await wait_until(lambda: fake_braze.users() == ["u1"], what="the file")
    assert await daemon.stop() == 0
    entries = [json.loads(line) for line in daemon.log_text().splitlines() if line.strip()]
    about_file = [e for e in entries if e.get("file_name") == "f.txt"]
    assert about_file
    assert all(
        (e["channel"], e["offer"], e["workflow_id"]) == (UPSERT, "Spring", "wf-2")
        for e in about_file
    )
    assert {"time", "level", "logger", "message"} <= set(entries[0])


async def test_secrets_never_reach_logs_metrics_or_files(
    daemon: DaemonProcess, fake_braze: FakeBraze
) -> None:
    wrong_key = "wrong-key-c0ffee"
    key_file = daemon.tmp / "braze-key"
    key_file.write_text(wrong_key)
    daemon.settings["braze"].update({"api_key_file": str(key_file), "auth_retry_seconds": 0.3})
    daemon.settings["hook"] = {"token_env": "RPI_HOOK_TOKEN"}
    daemon.extra_env["RPI_HOOK_TOKEN"] = TOKEN
    await daemon.start("--log-level", "debug")
    daemon.export_path(UPSERT, "O", "1", "f.txt").write_text(
        "external_id,dob\nu1,bad\n,1990-01-01\n"
    )
    await daemon.post(f"{HOOK}?token={TOKEN}", rpi_call(UPSERT, "O", "1"))
    await daemon.post(f"{HOOK}?token=not-{TOKEN}", rpi_call(UPSERT, "O", "1"))
    await wait_until(lambda: 401 in fake_braze.statuses, what="a 401")
    key_file.write_text(fake_braze.api_key)
    assert daemon.proc is not None
    daemon.proc.send_signal(signal.SIGHUP)
    await wait_until(lambda: fake_braze.users() == ["u1"], what="delivery after the fix")
    _, metrics = await daemon.get("/metrics")
    _, ready = await daemon.get("/readyz")
    assert await daemon.stop() == 0
    written = [
        p
        for p in daemon.tmp.rglob("*")
        if p.is_file() and p.name not in ("braze-key", "config.yaml")
    ]
    assert any(p.suffix == ".csv" for p in written)  # rejects and dropped files exist
    assert any("journal" in p.name for p in written)
    for secret in (wrong_key, fake_braze.api_key, TOKEN):
        for path in written:
            assert secret.encode() not in path.read_bytes(), f"{secret} found in {path}"
        assert secret not in metrics
        assert secret not in ready
