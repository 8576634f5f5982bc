"""Braze unreachable or refusing the key: the operator is told why, the metrics say it without
counting false duplicates, and SIGTERM stops at once when nothing is on the wire."""

from __future__ import annotations

import asyncio
import time

from tests.e2e.conftest import UPSERT, DaemonProcess, free_port, wait_until
from tests.fakebraze import FakeBraze

P = "rpi_braze_sync_"


async def samples(daemon: DaemonProcess) -> dict[str, float]:
    """Every sample of /metrics, keyed by its line's name and labels."""
    _, text = await daemon.get("/metrics")
    found = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, value = line.rsplit(" ", 1)
            found[key] = float(value)
    return found


async def test_every_labelled_family_is_there_before_its_first_event(
    daemon: DaemonProcess,
) -> None:
    await daemon.start()
    found = await samples(daemon)
    assert await daemon.stop() == 0
    expected = [
        f'{P}retries_total{{reason="timeout"}}',
        f'{P}retries_total{{reason="rate_limited"}}',
        f'{P}rate_limit_waits_total{{source="braze"}}',
        f'{P}requests_total{{code="429"}}',
        f'{P}requests_total{{code="503"}}',
        f'{P}request_errors_total{{error="connection"}}',
        f'{P}request_errors_total{{error="dns"}}',
        f'{P}rows_total{{channel="{UPSERT}",outcome="sent"}}',
        f'{P}rows_total{{channel="{UPSERT}",outcome="rejected"}}',
        f'{P}files_total{{channel="{UPSERT}",outcome="failed"}}',
        f'{P}fields_dropped_total{{channel="{UPSERT}"}}',
        f'{P}hook_calls_total{{outcome="accepted"}}',
        f'{P}config_reloads_total{{outcome="failed"}}',
        f'{P}ignored_files_total{{reason="layout"}}',
    ]
    assert {key: found.get(key) for key in expected} == dict.fromkeys(expected, 0.0)


async def test_a_refused_connection_says_why_counts_no_duplicate_and_stops_at_once(
    daemon: DaemonProcess, fake_braze: FakeBraze
) -> None:
    closed = free_port()  # nothing listens there: every connection is refused
    daemon.settings["braze"].update(
        {"api_url": f"http://127.0.0.1:{closed}", "retry_max_delay_seconds": 30}
    )
    daemon.settings["shutdown_grace_seconds"] = 20
    await daemon.start()
    daemon.export_path(UPSERT, "O", "1", "f.txt").write_text(
        "external_id,first_name\n" + "".join(f"u{i},N\n" for i in range(500))
    )
    refused = f"Braze did not answer well (connection refused by 127.0.0.1:{closed})"
    await wait_until(lambda: refused in daemon.log_text(), what="the refused connection")
    await asyncio.sleep(8)  # retries by now wait up to 16-30 s in their backoff
    found = await samples(daemon)
    assert found[f'{P}request_errors_total{{error="connection"}}'] >= 1
    assert found[f'{P}retries_total{{reason="connection"}}'] >= 1
    assert found[f"{P}possible_duplicate_rows_total"] == 0  # it never reached Braze
    assert not [key for key in found if 'code="connection"' in key]
    stopping = time.monotonic()
    assert await daemon.stop() == 0
    assert time.monotonic() - stopping < 3  # no waiting for backoffs: nothing was on the wire

    daemon.settings["braze"]["api_url"] = fake_braze.url  # Braze is back
    await daemon.start()
    await wait_until(lambda: len(fake_braze.users()) == 500, what="every row")
    assert await daemon.stop() == 0
    assert sorted(fake_braze.users()) == sorted(f"u{i}" for i in range(500))


async def test_sigterm_while_braze_refuses_the_key_stops_at_once(
    daemon: DaemonProcess, fake_braze: FakeBraze
) -> None:
    daemon.extra_env["BRAZE_API_KEY"] = "a-revoked-key"
    daemon.settings["braze"]["auth_retry_seconds"] = 30
    daemon.settings["shutdown_grace_seconds"] = 20
    await daemon.start()
    daemon.export_path(UPSERT, "O", "1", "f.txt").write_text("external_id\nu1\nu2\n")
    await wait_until(lambda: 401 in fake_braze.statuses, what="the refused key")
    await asyncio.sleep(0.5)
    assert await daemon.metric(f"{P}braze_auth_failing") == 1
    stopping = time.monotonic()
    assert await daemon.stop() == 0
    assert time.monotonic() - stopping < 5
    assert fake_braze.users() == []
    assert "a-revoked-key" not in daemon.log_text()
