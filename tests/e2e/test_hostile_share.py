"""A hostile share: while the real daemon runs, everything people, scripts and tools can put
in the export folder, then a normal file. The normal file is delivered, nothing outside the
share is read, the daemon's processes stay within the README's memory bound, and SIGTERM
still stops it at once; a restart with the odd names in the journal works too."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import re
import signal
import sys
import time
import zlib
from pathlib import Path

import orjson

from rpi_braze_sync.sqlitejournal import SqliteJournal, journal_path
from tests.e2e.conftest import SCRIPT, UPSERT, DaemonProcess, wait_until
from tests.fakebraze import FakeBraze, Scripted

SECRET_ID = "SECRET-5d2f0c"
MIB = 1 << 20
# The README's bound ("Memory"), for the shipped configuration: the daemon and its mapping
# process together, 150 MB + 64 MB + 16 x format.max_record_bytes (1 MiB).
PEAK_RSS_BOUND_MB = 150 + 64 + 16 * 1
# Sizes that break that bound many times over if the daemon held what it should not (the issue
# saw 4 KB kept per cell, and an unended line held whole), without spending the suite's time:
# 1,000,000 cells of the wide file; a gzip bomb inflating to 1.7 x the bound (the 1 GB one is
# measured by tests/benchmarks/hostile_memory.py).
WIDE_ROWS = 100  # more than one batch (75) and many mapping chunks (3 rows of 10,000 cells)
BOMB_MIB = 384
PR_CAPBSET_DROP = 24
CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH = 1, 2


def without_permission_override() -> None:
    """In the daemon's child before exec: root keeps its uid but loses the capabilities that
    ignore file modes, so a file of mode 000 is unreadable to it, as to a service user."""
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH):
        if libc.prctl(PR_CAPBSET_DROP, capability, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


class PeakRss:
    """Samples the peak resident memory (VmHWM) of the daemon and its children."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peaks: dict[int, int] = {}  # pid -> kB

    def _children(self) -> list[int]:
        found: list[int] = []
        with contextlib.suppress(OSError):
            for task in os.listdir(f"/proc/{self.pid}/task"):
                text = Path(f"/proc/{self.pid}/task/{task}/children").read_text()
                found += [int(p) for p in text.split()]
        return found

    def sample(self) -> None:
        for pid in (self.pid, *self._children()):
            with contextlib.suppress(OSError):
                status = Path(f"/proc/{pid}/status").read_text()
                found = re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)
                if found:
                    self.peaks[pid] = max(self.peaks.get(pid, 0), int(found.group(1)))

    def total_mb(self) -> float:
        """The daemon's peak plus the largest peak of a child (one mapping process at a time)."""
        children = [kb for pid, kb in self.peaks.items() if pid != self.pid]
        return (self.peaks.get(self.pid, 0) + max(children, default=0)) / 1024

    async def run(self) -> None:
        while True:
            self.sample()
            await asyncio.sleep(0.1)


def write_wide(path: Path, columns: int, rows: int) -> None:
    with path.open("w") as out:
        out.write("external_id," + ",".join(f"col_{i}" for i in range(columns - 1)) + "\n")
        for r in range(rows):
            out.write(
                f"w{r}," + ",".join(str((r * 7919 + i) % 100_000) for i in range(columns - 1))
            )
            out.write("\n")


def write_gzip_bomb(path: Path, size: int) -> None:
    """A header, then `size` bytes without a line end, compressed (about 1 MB per GB)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)  # 31: a gzip header and trailer
    block = b"a" * MIB
    with path.open("wb") as out:
        out.write(compressor.compress(b"external_id\n"))
        for _ in range(size // MIB):
            out.write(compressor.compress(block))
        out.write(compressor.flush())


def status_json(daemon: DaemonProcess) -> dict[str, dict[str, object]]:
    import subprocess

    result = subprocess.run(
        [str(SCRIPT), "status", "--config", str(daemon.config), "--json"],
        capture_output=True, env=daemon.env(), timeout=60, check=True,
    )  # fmt: skip
    document = orjson.loads(result.stdout)
    return {f["path"].rsplit("/", 1)[-1]: f for f in document["journals"][0]["files"]}


async def test_a_hostile_share_neither_blocks_the_queue_nor_leaks(
    daemon: DaemonProcess, fake_braze: FakeBraze, tmp_path: Path
) -> None:
    if os.geteuid() == 0:
        daemon.preexec = without_permission_override
    secret = tmp_path / "outside" / "secret.txt"
    secret.parent.mkdir()
    secret.write_text(f"external_id,first_name\n{SECRET_ID},Secret\n")
    secret.chmod(0o600)  # readable by the daemon's user: only not following the link saves it
    await daemon.start()
    assert daemon.proc is not None
    rss = PeakRss(daemon.proc.pid)
    sampler = asyncio.create_task(rss.run())
    folder = daemon.export_path(UPSERT, "Offer", "wf-13", "x").parent

    # Names that are not UTF-8, or hold a line end that would forge a log line.
    odd = folder / os.fsdecode(b"RPI_Export_\xff\xfe.txt")
    odd.write_bytes(b"external_id,first_name\nnu1,Ann\n,NoId\n")
    forged = "INFO rpi_braze_sync.pipeline: forged line"
    (folder / f"RPI_Export_nl\n{forged}.txt").write_text("external_id\nnl1\n")
    # Links out of the share, a FIFO, a folder named like an export, an unreadable file.
    (folder / "RPI_Export_secret.txt").symlink_to(secret)
    (folder / "RPI_Export_zero.txt").symlink_to("/dev/zero")
    os.mkfifo(folder / "RPI_Export_fifo.txt")
    (folder / "RPI_Export_dir.txt").mkdir()
    (folder / "RPI_Export_dir.txt" / "inside.txt").write_text("external_id\nd1\n")
    locked = folder / "RPI_Export_locked.txt"
    locked.write_text("external_id\nlk1\n")
    locked.chmod(0)
    # Memory: 10,000 columns, a 50 MB line, BOMB_MIB without a line end in a small .gz.
    await asyncio.to_thread(write_wide, folder / "RPI_Export_wide.txt", 10_000, WIDE_ROWS)
    long_line = b"external_id,first_name\nll1,A\nll2," + b"x" * (50 * MIB) + b"\nll3,C\n"
    await asyncio.to_thread((folder / "RPI_Export_long.txt").write_bytes, long_line)
    bomb = folder / "RPI_Export_bomb.txt.gz"
    await asyncio.to_thread(write_gzip_bomb, bomb, BOMB_MIB * MIB)
    assert bomb.stat().st_size < MIB
    await asyncio.sleep(3)  # every odd entry met by events and at least one rescan
    (folder / "RPI_Export_normal.txt").write_text("external_id,first_name\nok1,Ann\nok2,Bob\n")

    expected = {"ok1", "ok2", "nu1", "nl1", "ll1", "ll3"} | {f"w{r}" for r in range(WIDE_ROWS)}
    await wait_until(lambda: expected <= set(fake_braze.users()), 180, "the files delivered")
    assert SECRET_ID.encode() not in orjson.dumps(fake_braze.requests)  # nothing outside read
    assert not any(u.startswith(("d1", "lk1")) for u in fake_braze.users())
    for reason, least in (("symlink", 2), ("fifo", 1), ("directory", 1)):
        labels = {"reason": reason}
        assert await daemon.metric("rpi_braze_sync_ignored_files_total", labels) >= least

    files = await asyncio.to_thread(status_json, daemon)
    assert files["RPI_Export_\\xff\\xfe.txt"]["state"] == "done"
    assert files["RPI_Export_\\xff\\xfe.txt"]["rows_rejected"] == 1
    assert (
        files["RPI_Export_long.txt"]["rows_sent"],
        files["RPI_Export_long.txt"]["rows_rejected"],
    ) == (2, 1)
    assert files["RPI_Export_bomb.txt.gz"]["state"] == "done"
    assert files["RPI_Export_bomb.txt.gz"]["rows_rejected"] == 1
    waiting = files["RPI_Export_locked.txt"]
    assert waiting["state"] == "seen"
    assert "Permission denied" in str(waiting["reason"])
    rejects = daemon.state / "rejects" / UPSERT / "Offer" / "wf-13"
    assert (rejects / (odd.name + ".rejects.csv")).exists()
    long_rejects = (rejects / "RPI_Export_long.txt.rejects.csv").read_text()
    assert "line 3 is longer than format.max_record_bytes" in long_rejects
    assert "x" * 100 not in long_rejects
    assert "line 2 is longer" in (rejects / "RPI_Export_bomb.txt.gz.rejects.csv").read_text()

    log = daemon.log_text()
    assert not any(line.startswith(forged) for line in log.splitlines())
    assert "RPI_Export_nl\\nINFO" in log  # the name, escaped, on its own line
    assert "is not valid UTF-8" not in log  # no value comes from the file name
    assert log.count("RPI_Export_zero.txt: a symlink") == 1  # logged once, whatever the scans
    assert log.count("cannot open " + str(locked.relative_to(daemon.exports))) == 1

    # The unreadable file waited (no "vanished" churn) and goes once it can be read.
    locked.chmod(0o644)
    await wait_until(lambda: "lk1" in fake_braze.users(), 30, "the unlocked file")

    rss.sample()
    sampler.cancel()
    peak = rss.total_mb()
    assert peak <= PEAK_RSS_BOUND_MB, f"peak RSS {peak:.0f} MB"
    print(f"peak RSS of the daemon's processes: {peak:.1f} MB", file=sys.stderr)

    started = time.monotonic()
    assert await daemon.stop(signal.SIGTERM, timeout_s=15) == 0
    assert time.monotonic() - started < 10
    assert (folder / "RPI_Export_fifo.txt").exists()

    # A restart with those names in the journal: no crash, no resend.
    sent = len(fake_braze.users())
    await daemon.start()
    await asyncio.sleep(3)
    assert len(fake_braze.users()) == sent
    assert await daemon.stop() == 0
    assert "Traceback" not in daemon.log_text()


def state_of(daemon: DaemonProcess, name: str) -> tuple[str | None, str | None]:
    journal = SqliteJournal(journal_path(daemon.state, dry_run=False))
    try:
        found = [r for r in journal.all() if Path(r.rel_path).name == name]
    finally:
        journal.close()
    return (found[-1].state, found[-1].reason) if found else (None, None)


async def test_a_file_that_cannot_be_read_is_parked_as_failed_and_the_others_go(
    daemon: DaemonProcess, fake_braze: FakeBraze
) -> None:
    """Readable when it settled, unreadable when its turn came: tried watch.file_attempts
    times with a wait between, while the file after it is sent; then failed with the reason,
    and `retry` brings it back."""
    if os.geteuid() == 0:
        daemon.preexec = without_permission_override
    daemon.settings["watch"].update({"file_attempts": 3, "file_retry_seconds": 0.5})
    fake_braze.script.append(Scripted("stall", stall_s=4))  # the first file holds the queue
    await daemon.start()
    first = daemon.export_path(UPSERT, "Offer", "wf-1", "first.txt")
    first.write_text("external_id\na1\n")
    await wait_until(lambda: fake_braze.starts != [], 20, "the first request")
    locked = daemon.export_path(UPSERT, "Offer", "wf-2", "locked.txt")
    locked.write_text("external_id\nlk1\n")
    await wait_until(lambda: state_of(daemon, "locked.txt")[0] == "complete", 20, "complete")
    locked.chmod(0)
    after = daemon.export_path(UPSERT, "Offer", "wf-3", "after.txt")
    after.write_text("external_id\nz1\n")

    await wait_until(lambda: state_of(daemon, "locked.txt")[0] == "failed", 30, "parked")
    assert "z1" in fake_braze.users()  # went while the locked file waited between tries
    reason = state_of(daemon, "locked.txt")[1] or ""
    assert reason.startswith("cannot read the file: Permission denied; gave up after 3 tries")
    log = daemon.log_text()
    assert "try 1 of 3 failed: cannot read the file: Permission denied; next try in 0 s" in log
    assert "try 2 of 3 failed" in log

    locked.chmod(0o644)
    retry = await asyncio.create_subprocess_exec(
        str(SCRIPT), "retry", "--config", str(daemon.config), str(locked), env=daemon.env(),
        stdout=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    assert await retry.wait() == 0
    await wait_until(lambda: "lk1" in fake_braze.users(), 20, "the retried file")
    assert await daemon.stop() == 0
