"""The operator's first hour with the real daemon: progress lines and systemd's status while a
long file is sent, the version everywhere, the listen address (flag, environment, YAML) and
what happens when it is taken, /metrics as Prometheus asks for it, JSON log times, Ctrl-C
in a terminal, and debug logs without library noise (watchdog's warning: test_logs.py)."""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import platform
import re
import signal
import socket
import subprocess
from pathlib import Path

import aiohttp

from rpi_braze_sync import package_version
from tests.e2e.conftest import SCRIPT, UPSERT, DaemonProcess, free_port, wait_until, write_config
from tests.fakebraze import FakeBraze

ROWS = 4_500
PROGRESS = re.compile(
    r"progress: ([\d,]+) of ([\d,]+) rows acknowledged \(([\d.]+)%\), ([\d,]+) rows/s, (.+) left"
)


def long_file(daemon: DaemonProcess) -> Path:
    """ROWS rows, every tenth with a newline inside a quoted cell: more lines than rows."""
    path = daemon.export_path(UPSERT, "Spring", "42", "long.txt")
    lines = ["external_id,first_name,note"]
    for i in range(ROWS):
        note = f'"first line\nsecond line {i}"' if i % 10 == 0 else f"plain {i}"
        lines.append(f"u{i},Ann,{note}")
    path.write_text("\n".join(lines) + "\n")
    return path


async def test_progress_lines_status_and_ratio_while_a_rate_limited_file_is_sent(
    daemon: DaemonProcess, fake_braze: FakeBraze, tmp_path: Path
) -> None:
    # 10 requests a second of 75 rows: 4,500 rows take about 6 s.
    daemon.settings["braze"]["rate_limit"] = {"requests": 10, "seconds": 1}
    daemon.settings["logging"] = {"progress_seconds": 1}
    notify = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(notify))
    sock.setblocking(False)
    daemon.extra_env.update({"NOTIFY_SOCKET": str(notify), "WATCHDOG_USEC": "1000000"})
    statuses: list[str] = []
    loop = asyncio.get_running_loop()

    async def receive() -> None:
        while True:
            data = (await loop.sock_recv(sock, 4096)).decode()
            statuses.extend(f for f in data.split("\n") if f.startswith("STATUS="))

    receiver = asyncio.create_task(receive())
    try:
        await daemon.start()
        long_file(daemon)
        await wait_until(lambda: len(fake_braze.objects()) > 500, what="sending to start")
        ratio = await daemon.metric("rpi_braze_sync_current_file_progress_ratio")
        received = len(fake_braze.objects())
        # Acknowledged rows, not bytes read: the whole file is read long before Braze has it.
        assert 0 < ratio * ROWS <= received < ROWS, (ratio, received)
        await wait_until(lambda: len(fake_braze.objects()) == ROWS, timeout_s=30, what="all")
        await wait_until(lambda: "done: " in daemon.log_text(), what="the done line")
    finally:
        receiver.cancel()
        await asyncio.wait([receiver])  # off the loop's selector before the socket closes
        sock.close()
    log = daemon.log_text()
    found = [m for line in log.splitlines() if (m := PROGRESS.search(line))]
    assert len(found) >= 3, log
    acknowledged = [int(m.group(1).replace(",", "")) for m in found]
    assert acknowledged == sorted(acknowledged)
    assert acknowledged[-1] < ROWS
    for match in found:
        assert match.group(2) == f"{ROWS:,}"  # the rows, not the lines (quoted newlines)
        done = int(match.group(1).replace(",", ""))
        assert float(match.group(3)) == round(100 * done / ROWS, 1)
    progress_lines = [line for line in log.splitlines() if "progress: " in line]
    assert all("file_name='long.txt'" in line for line in progress_lines)
    assert any(int(m.group(4).replace(",", "")) > 0 and m.group(5) != "0 s" for m in found)
    done_line = next(line for line in log.splitlines() if "done: " in line)
    assert re.search(
        rf"done: {ROWS:,} rows in [\d.]+ s \([\d,]+ rows/s\): {ROWS:,} sent, 0 rejected", done_line
    ), done_line
    sending = [s for s in statuses if "long.txt:" in s]
    assert sending, statuses
    assert re.match(
        rf"STATUS=sending {UPSERT}/Spring/42/long.txt: [\d,]+ of {ROWS:,} rows acknowledged",
        sending[-1],
    ), sending[-1]
    assert await daemon.metric("rpi_braze_sync_current_file_progress_ratio") == 0  # file done


async def test_version_in_the_log_the_user_agent_and_build_info(
    daemon: DaemonProcess, fake_braze: FakeBraze
) -> None:
    await daemon.start()
    daemon.export_path(UPSERT, "Spring", "42", "f.txt").write_text("external_id\nu1\n")
    await wait_until(lambda: len(fake_braze.objects()) == 1, what="the file")
    version = package_version()
    assert f"rpi-braze-sync {version} (Python {platform.python_version()}) started" in (
        daemon.log_text()
    )
    assert fake_braze.user_agents == {f"rpi-braze-sync/{version}"}
    labels = {"python": platform.python_version(), "version": version}
    assert await daemon.metric("rpi_braze_sync_build_info", labels) == 1
    await daemon.stop()


async def test_metrics_negotiate_openmetrics_and_gzip(daemon: DaemonProcess) -> None:
    await daemon.start()
    url = f"http://127.0.0.1:{daemon.port}/metrics"
    async with aiohttp.ClientSession(auto_decompress=False) as session:
        async with session.get(url, headers={"Accept-Encoding": "identity"}) as plain:
            assert plain.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            assert "Content-Encoding" not in plain.headers
            assert "rpi_braze_sync_build_info" in await plain.text()
        accept = {"Accept": "application/openmetrics-text; version=1.0.0"}
        async with session.get(
            url, headers={**accept, "Accept-Encoding": "identity"}
        ) as open_metrics:
            assert open_metrics.headers["Content-Type"].startswith("application/openmetrics-text")
            assert (await open_metrics.text()).endswith("# EOF\n")
        async with session.get(url, headers={"Accept-Encoding": "gzip"}) as zipped:
            assert zipped.headers["Content-Encoding"] == "gzip"
            assert b"rpi_braze_sync_build_info" in gzip.decompress(await zipped.read())
    await daemon.stop()


async def test_listen_address_flag_beats_environment_beats_yaml(daemon: DaemonProcess) -> None:
    yaml_port, env_port, flag_port = daemon.port, free_port(), free_port()
    daemon.extra_env["RPI_BRAZE_SYNC_LISTEN"] = f"127.0.0.1:{env_port}"
    daemon.port = env_port
    await daemon.start()
    assert f"metrics: http://127.0.0.1:{env_port}/metrics" in daemon.log_text()
    await daemon.stop()
    daemon.port = flag_port
    await daemon.start("--listen", f"127.0.0.1:{flag_port}")
    assert f"metrics: http://127.0.0.1:{flag_port}/metrics" in daemon.log_text()
    await daemon.stop()
    with socket.socket() as probe:  # the YAML's port was never used
        probe.bind(("127.0.0.1", yaml_port))


async def test_a_taken_port_is_one_line_and_exit_69(daemon: DaemonProcess) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", daemon.port))
        taken.listen()
        write_config(daemon.config, daemon.settings)
        proc = await asyncio.create_subprocess_exec(
            str(SCRIPT), "run", "--config", str(daemon.config), env=daemon.env(),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 69
    assert out == b""
    assert err.decode().splitlines() == [
        f"rpi-braze-sync: cannot listen on 127.0.0.1:{daemon.port}: the address is already in"
        " use (another rpi-braze-sync, or another program)"
    ]
    assert not (daemon.state / "journal.sqlite").exists()  # it stopped before the journal


async def test_json_log_times_are_iso_8601_utc_with_milliseconds(daemon: DaemonProcess) -> None:
    daemon.settings["logging"] = {"format": "json"}
    await daemon.start()
    await daemon.stop()
    entries = [json.loads(line) for line in daemon.log_text().splitlines() if line.strip()]
    assert len(entries) > 3
    for entry in entries:
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", entry["time"]), entry


def child_pids(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/task/{pid}/children").read_text().split()


async def test_ctrl_c_in_a_terminal_stops_quietly(
    daemon: DaemonProcess, fake_braze: FakeBraze
) -> None:
    """A terminal's Ctrl-C signals the whole process group, the mapping process included."""
    daemon.own_session = True
    await daemon.start()
    daemon.export_path(UPSERT, "Spring", "42", "f.txt").write_text("external_id\nu1\n")
    await wait_until(lambda: len(fake_braze.objects()) == 1, what="the file")
    assert daemon.proc is not None
    assert child_pids(daemon.proc.pid), "the mapping process is running"
    os.killpg(daemon.proc.pid, signal.SIGINT)
    assert await asyncio.wait_for(daemon.proc.wait(), 20) == 0
    log = daemon.log_text()
    assert "KeyboardInterrupt" not in log, log
    assert "Traceback" not in log, log


async def test_debug_logs_keep_the_daemons_lines_without_library_noise(
    daemon: DaemonProcess, fake_braze: FakeBraze
) -> None:
    daemon.settings["watch"]["observer"] = "native"
    await daemon.start("--log-level", "debug")
    for i in range(12):
        daemon.export_path(UPSERT, f"Offer {i}", f"{i}", "f.txt").write_text(f"external_id\nu{i}\n")
    await wait_until(lambda: len(fake_braze.objects()) == 12, timeout_s=30, what="12 files")
    await daemon.stop()
    log = daemon.log_text()
    assert "in-event" not in log  # watchdog's line for every inotify event
    assert "DEBUG rpi_braze_sync.access: 127.0.0.1 GET /readyz 200" in log  # the daemon's own
