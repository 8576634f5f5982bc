"""The HTTP server against hostile clients, with a real daemon and real sockets: idle
connections under systemd's default descriptor limit, hook bodies sent in pieces, malformed
Authorization headers, and a flood of RPI calls."""

from __future__ import annotations

import asyncio
import os
import resource
import sqlite3
from pathlib import Path

import orjson

from rpi_braze_sync.server import IDLE_TIMEOUT_S, MAX_CONNECTIONS
from tests.e2e.conftest import UPSERT, DaemonProcess, wait_until
from tests.fakebraze import FakeBraze

HOOK = "/rpi/post-execution"
TOKEN = "hook-token-51c0"
IDLE_CLIENTS = 1_100


def systemd_default_limit() -> None:
    """LimitNOFILE's default, in the daemon's process before exec."""
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))


def open_files(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


async def raw_request(port: int, head: bytes, body_parts: list[bytes]) -> bytes:
    """Send exactly these bytes (the parts with a pause between), return the whole answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(head)
    for part in body_parts:
        await writer.drain()
        await asyncio.sleep(0.2)
        writer.write(part)
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 30)
    writer.close()
    return answer


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


def chunked(data: bytes, pieces: int) -> list[bytes]:
    size = -(-len(data) // pieces)
    parts = [data[i : i + size] for i in range(0, len(data), size)]
    return [b"%x\r\n%s\r\n" % (len(p), p) for p in parts] + [b"0\r\n\r\n"]


def call(n: int, filler: str = "") -> dict[str, str]:
    return {
        "channelName": UPSERT,
        "offerName": f"Offer {n}{filler}",
        "workflowAssociationInstanceID": str(n),
        "channelExecutionID": f"{n}{filler}",
    }


async def test_idle_connections_neither_take_every_descriptor_nor_flood_the_log(
    daemon: DaemonProcess, fake_braze: FakeBraze
) -> None:
    daemon.preexec = systemd_default_limit
    await daemon.start()
    assert daemon.proc is not None
    pid = daemon.proc.pid
    before = open_files(pid)
    clients = []
    for _ in range(IDLE_CLIENTS):  # they connect, and say nothing
        clients.append(await asyncio.open_connection("127.0.0.1", daemon.port))
    await asyncio.sleep(0.5)
    refused = 0
    for reader, _ in clients:
        try:
            answer = await asyncio.wait_for(reader.read(100), 0.01)
        except TimeoutError:
            continue  # held open, idle
        refused += answer.startswith(b"HTTP/1.1 503")
    assert refused >= IDLE_CLIENTS - MAX_CONNECTIONS - 64  # the accept backlog may slip past
    held = open_files(pid) - before
    assert held <= MAX_CONNECTIONS + 64, held
    # the daemon still works: the share, the journal, Braze
    daemon.export_path(UPSERT, "O", "1", "f.txt").write_text("external_id\nu1\nu2\n")
    await wait_until(lambda: len(fake_braze.objects()) == 2, what="delivery during the flood")
    # the idle ones are closed by the daemon once their headers are overdue
    await daemon.wait_http("/healthz", timeout_s=IDLE_TIMEOUT_S + 10)
    for reader, writer in clients:
        await asyncio.wait_for(reader.read(), 5)  # the daemon closed it: end of stream
        writer.close()
    assert open_files(pid) <= before + 8
    assert (await daemon.get("/readyz"))[0] == 200
    assert await daemon.stop() == 0
    log = daemon.log_text()
    assert log.count("too many HTTP connections") == 1, log[-2000:]
    assert len(log) < 20_000, len(log)
    assert "Traceback" not in log


async def test_hook_bodies_read_whole_and_authorization_checked_without_errors(
    daemon: DaemonProcess,
) -> None:
    daemon.settings["hook"] = {"token_env": "RPI_HOOK_TOKEN"}
    daemon.extra_env["RPI_HOOK_TOKEN"] = TOKEN
    await daemon.start()
    port = daemon.port
    body = orjson.dumps(call(1))
    head = (
        f"POST {HOOK} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
        "Content-Type: application/json\r\nConnection: close\r\n"
    ).encode()
    # chunked, in pieces that arrive apart
    answer = await raw_request(port, head + b"Transfer-Encoding: chunked\r\n\r\n", chunked(body, 3))
    assert status_of(answer) == 202, answer
    # Content-Length, the body in pieces too
    second = orjson.dumps(call(2))
    answer = await raw_request(
        port, head + b"Content-Length: %d\r\n\r\n" % len(second), [second[:7], second[7:]]
    )
    assert status_of(answer) == 202, answer
    # too large, said by Content-Length or found while reading chunks
    big = orjson.dumps(call(3, "x" * 70_000))
    answer = await raw_request(port, head + b"Content-Length: %d\r\n\r\n" % len(big), [big])
    assert status_of(answer) == 413, answer
    answer = await raw_request(port, head + b"Transfer-Encoding: chunked\r\n\r\n", chunked(big, 4))
    assert status_of(answer) == 413, answer
    # malformed Authorization headers: 401, never a 500
    for authorization in (
        b"Bearer \xff\xfe" + TOKEN.encode(),
        "Bearer ü".encode(),
        b"Bearer",
        b"Bearer ",
        b"Basic " + TOKEN.encode(),
        b"bearer" + TOKEN.encode(),
        TOKEN.encode(),
    ):
        request = (
            f"POST {HOOK}?token={TOKEN} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n".encode()
            + b"Authorization: " + authorization + b"\r\n"
            + b"Content-Length: %d\r\n\r\n" % len(body)
        )  # fmt: skip
        answer = await raw_request(port, request, [body])
        assert status_of(answer) in (400, 401), (authorization, answer)  # 400: aiohttp's parser
    assert await daemon.stop() == 0
    assert "Traceback" not in daemon.log_text()


async def test_a_flood_of_rpi_calls_is_capped_and_pruned(daemon: DaemonProcess) -> None:
    daemon.settings["hook"] = {"token_env": "RPI_HOOK_TOKEN", "call_ttl_seconds": 60}
    daemon.extra_env["RPI_HOOK_TOKEN"] = TOKEN
    await daemon.start()
    assert daemon.proc is not None
    pid = daemon.proc.pid
    journal = daemon.state / "journal.sqlite"
    auth = {"Authorization": f"Bearer {TOKEN}"}
    await daemon.post(HOOK, call(0), auth)
    rss_before = rss_kb(pid)
    # 1,500 calls of 60 KB each (within the body limit): refused, a field is at most 512 characters
    statuses = set()
    for n in range(1_500):
        statuses.add((await daemon.post(HOOK, call(n, "x" * 30_000), auth))[0])
    assert statuses == {400}
    # 1,500 calls as large as allowed: the newest 1,000 are kept
    for n in range(1_500):
        status, _ = await daemon.post(HOOK, call(n, "y" * 500), auth)
        assert status == 202
    grown_mb = (rss_kb(pid) - rss_before) / 1024
    assert grown_mb < 15, f"{grown_mb:.0f} MB"
    with sqlite3.connect(f"{journal.as_uri()}?mode=ro", uri=True) as db:
        (kept,) = db.execute("SELECT count(*) FROM rpi_calls").fetchone()
    assert kept == 1_000
    on_disk = sum(p.stat().st_size for p in daemon.state.glob("journal.sqlite*"))
    assert on_disk < 12 * 1024 * 1024, on_disk
    assert await daemon.stop() == 0
