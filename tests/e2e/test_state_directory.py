"""The state directory, with real daemon processes: one daemon at a time (a lock), and files
that hold personal data kept from other users whatever the caller's umask."""

from __future__ import annotations

import asyncio
import os
import signal
import stat
import subprocess
from pathlib import Path

from rpi_braze_sync.sqlitejournal import SqliteJournal
from tests.e2e.conftest import SCRIPT, UPSERT, DaemonProcess, free_port, wait_until, write_config
from tests.fakebraze import FakeBraze


async def run_second(daemon: DaemonProcess, *extra: str) -> tuple[int, str, str]:
    """Another `run` on the same configuration but its own port: only the lock can stop it."""
    settings = {**daemon.settings, "http": {"listen": f"127.0.0.1:{free_port()}"}}
    config = write_config(daemon.tmp / "second.yaml", settings)
    proc = await asyncio.create_subprocess_exec(
        str(SCRIPT), "run", "--config", str(config), *extra, env=daemon.env(),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 30)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_a_second_daemon_on_the_same_state_directory_exits_75_in_one_line(
    daemon: DaemonProcess, fake_braze: FakeBraze
) -> None:
    await daemon.start()
    assert daemon.proc is not None
    lock = daemon.state / "rpi-braze-sync.lock"
    journal = daemon.state / "journal.sqlite"
    before = journal.stat().st_mtime_ns
    for extra in ((), ("--dry-run",)):  # one lock for the live and the dry-run journal
        status, out, err = await run_second(daemon, *extra)
        assert status == 75, err
        assert out == ""
        assert err.splitlines() == [
            f"rpi-braze-sync: another rpi-braze-sync (pid {daemon.proc.pid}) is running on the"
            f" state directory {daemon.state} (it holds {lock}); stop it first, or give this"
            " one another state_directory"
        ]
    assert not (daemon.state / "journal-dry-run.sqlite").exists()
    assert journal.stat().st_mtime_ns == before
    # status and retry are tools that run beside the daemon: no lock needed
    status_cli = await asyncio.create_subprocess_exec(
        str(SCRIPT), "status", "--config", str(daemon.config), env=daemon.env(),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    shown, _ = await status_cli.communicate()
    assert status_cli.returncode == 0, shown
    # the first daemon goes on
    daemon.export_path(UPSERT, "Spring", "42", "f.txt").write_text("external_id\nu1\n")
    await wait_until(lambda: len(fake_braze.objects()) == 1, what="the file")
    # killed, it leaves its lock file behind; the kernel let the lock go
    daemon.proc.send_signal(signal.SIGKILL)
    await daemon.proc.wait()
    assert lock.exists()
    await daemon.start()
    assert (await daemon.stop()) == 0


def modes_under(root: Path) -> dict[str, int]:
    found = {".": stat.S_IMODE(root.stat().st_mode)}
    for path in root.rglob("*"):
        found[str(path.relative_to(root))] = stat.S_IMODE(path.lstat().st_mode)
    return found


def too_open(modes: dict[str, int], root: Path) -> list[str]:
    """Directories must be 0750 or tighter, files 0640 or tighter."""
    wrong = []
    for rel, mode in modes.items():
        limit = 0o750 if (root / rel).is_dir() else 0o640
        if mode & ~limit:
            wrong.append(f"{rel}: {mode:o}")
    return wrong


async def test_state_files_are_private_under_umask_022(
    daemon: DaemonProcess, fake_braze: FakeBraze
) -> None:
    # What an earlier version left under a loose umask is tightened at start.
    old = daemon.state / "rejects" / "old"
    old.mkdir(parents=True)
    os.chmod(daemon.state, 0o755)
    os.chmod(old, 0o777)
    (old / "f.txt.rejects.csv").write_text("external_id,_line,_reason\n")
    os.chmod(old / "f.txt.rejects.csv", 0o666)
    previous = os.umask(0o022)  # the daemon inherits it
    try:
        for mode in ("--dry-run", None):
            await daemon.start(*([mode] if mode else []))
            name = f"{mode or 'live'}.txt"
            daemon.export_path(UPSERT, "Spring", "42", name).write_text(
                "external_id,email,dob\nu1,not-an-email,\n,a@b.co,\nu3,c@d.co,1999-02-31\n"
            )
            rejects = daemon.state / "rejects" / UPSERT / "Spring" / "42" / f"{name}.rejects.csv"
            await wait_until(rejects.exists, what="the rejects file")
            journal = "journal-dry-run.sqlite" if mode else "journal.sqlite"
            await wait_until((daemon.state / f"{journal}-wal").exists, what="the WAL")
            running = modes_under(daemon.state)  # while the journal is open: -wal and -shm
            assert f"{journal}-shm" in running
            assert too_open(running, daemon.state) == []
            assert (await daemon.stop()) == 0
    finally:
        os.umask(previous)
    modes = modes_under(daemon.state)
    assert too_open(modes, daemon.state) == []
    for present in (
        "rpi-braze-sync.lock",
        "journal.sqlite",
        "journal-dry-run.sqlite",
        f"outbox/{UPSERT}/Spring/42/--dry-run.txt.jsonl",
        f"rejects/{UPSERT}/Spring/42/live.txt.rejects.csv",
        f"rejects/{UPSERT}/Spring/42/live.txt.dropped.csv",
    ):
        assert present in modes, sorted(modes)
    assert modes["."] == 0o750
    assert modes["rejects/old"] == 0o750
    assert modes["rejects/old/f.txt.rejects.csv"] == 0o640
    assert modes["journal.sqlite"] == 0o640
    # u1 and u3 went live (both files: the dry run's is news to the first live run, issue 12);
    # the row without an id did not
    assert set(fake_braze.users()) == {"u1", "u3"}


async def run_once(daemon: DaemonProcess, *command: str) -> tuple[int, str, str]:
    write_config(daemon.config, daemon.settings)
    proc = await asyncio.create_subprocess_exec(
        str(SCRIPT), *command, "--config", str(daemon.config), env=daemon.env(),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


SERVICE = Path(__file__).resolve().parents[2] / "systemd" / "rpi-braze-sync.service"


def damage(journal: Path) -> None:
    """A real journal of some pages, then random bytes over three of them."""
    kept = SqliteJournal(journal)
    for n in range(3000):
        kept.record_seen(f"{UPSERT}/Spring/{n}/file-{n}.txt", UPSERT, n, n)
    kept.close()
    with journal.open("r+b") as damaged:
        damaged.seek(5 * 4096)
        damaged.write(os.urandom(3 * 4096))


async def test_a_damaged_journal_stops_the_start_with_65_in_one_line(
    daemon: DaemonProcess,
) -> None:
    """Not a journal at all, then a real one with damaged pages: exit 65 (the unit's
    RestartPreventExitStatus), one line, no traceback; status says the same."""
    journal = daemon.state / "journal.sqlite"
    damage(journal)
    not_a_journal = os.urandom(8192)
    for case in ("damaged", "not a journal"):
        if case == "not a journal":
            for leftover in daemon.state.glob("journal.sqlite*"):
                leftover.unlink()
            journal.write_bytes(not_a_journal)
        for command in ("run", "status"):
            status, out, err = await run_once(daemon, command)
            assert status == 65, (case, command, err)
            assert out == ""
            (line,) = err.splitlines()
            assert line.startswith(
                f"journal error: the journal {journal} is damaged or is not a journal ("
            ), line
            assert line.endswith(
                "restarting will not help: move it aside (see the README, 'A damaged journal')"
            )
    assert "\nRestartPreventExitStatus=78 64 65\n" in SERVICE.read_text()
