"""deltastore: the remembered values on real files (RocksDB) — reopen, retention, forgetting,
a workspace change, the read-only open and a kill -9 — with records made by delta itself."""

from __future__ import annotations

import logging
import os
import signal
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from rpi_braze_sync.delta import Send, build_record, compare, user_key
from rpi_braze_sync.deltarecord import KEY_BYTES
from rpi_braze_sync.deltastore import (
    STORE_DIRECTORY,
    DeltaStore,
    DeltaStoreError,
    workspace_fingerprint,
)

DAY = 86400
MAX_AGE = 30 * DAY
NOW = 1_800_000_000
WORKSPACE = workspace_fingerprint("https://rest.iad-01.braze.com", "key-one")


def record_for(n: int, now: int = NOW) -> bytes:
    """The record delta writes once Braze acknowledged user n's first row."""
    decision = compare(
        {"first_name": b'"F%d"' % n, "n": b"%d" % n}, [], None, now, MAX_AGE, "upsert"
    )
    assert decision.remember is not None
    record = build_record(decision.remember, None, now)
    assert record is not None
    return record


def users(count: int, start: int = 0) -> list[tuple[bytes, bytes]]:
    return [(user_key(f"u{n}"), record_for(n)) for n in range(start, start + count)]


@pytest.fixture(autouse=True)
def _umask_kept() -> Iterator[None]:
    """DeltaStore.open tightens the process umask (by design); other tests keep theirs."""
    old = os.umask(0o022)
    os.umask(old)
    yield
    os.umask(old)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[DeltaStore]:
    opened = DeltaStore.open(tmp_path, WORKSPACE)
    yield opened
    opened.close()


def test_records_survive_closing_and_opening_again(tmp_path: Path) -> None:
    store = DeltaStore.open(tmp_path, WORKSPACE)
    written = users(1200)  # more than a chunk, looked up in one call below
    for start in range(0, len(written), 75):  # one write per acknowledged request
        store.remember(written[start : start + 75])
    store.close()
    store = DeltaStore.open(tmp_path, WORKSPACE)
    missing = [user_key("never-seen"), user_key("u-1")]
    keys = [k for k, _ in written] + missing
    assert store.lookup(keys) == [r for _, r in written] + [None, None]
    assert store.lookup([]) == []
    store.close()


def test_a_row_remembered_is_skipped_after_a_restart(tmp_path: Path) -> None:
    fields = {"first_name": b'"Ann"', "rpi_cdp_attributes.income": b"55000"}
    adds = [("rpi_offers", b'"Spring"')]
    key = user_key("ann")
    store = DeltaStore.open(tmp_path, WORKSPACE)
    (record,) = store.lookup([key])
    first = compare(fields, adds, record, NOW, MAX_AGE, "upsert")
    assert first.send is Send.ALL
    assert first.remember is not None
    written = build_record(first.remember, record, NOW)
    assert written is not None
    store.remember([(key, written)])
    store.close()
    store = DeltaStore.open(tmp_path, WORKSPACE)
    (record,) = store.lookup([key])
    assert compare(fields, adds, record, NOW + DAY, MAX_AGE, "upsert").send is Send.NOTHING
    store.close()


def test_the_last_record_of_a_batch_wins(store: DeltaStore) -> None:
    key = user_key("u1")
    store.remember([(key, record_for(1)), (key, record_for(2))])
    assert store.lookup([key]) == [record_for(2)]


def test_files_are_0640_and_folders_0750(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        store = DeltaStore.open(tmp_path, WORKSPACE)
        store.remember(users(100))
        store._db.flush()  # an SST file, created by RocksDB after opening
        store.close()
        paths = [tmp_path / STORE_DIRECTORY, *(tmp_path / STORE_DIRECTORY).rglob("*")]
        assert any(p.suffix == ".sst" for p in paths)
        for path in paths:
            mode = stat.S_IMODE(path.stat().st_mode)
            assert mode & ~(0o750 if path.is_dir() else 0o640) == 0, (path, oct(mode))
    finally:
        os.umask(old)


# --- retention and forgetting -----------------------------------------------------------------


def test_the_sweep_deletes_records_older_than_max_age_in_resumable_steps(
    store: DeltaStore,
) -> None:
    old = [(user_key(f"old{n}"), record_for(n, NOW - 40 * DAY)) for n in range(300)]
    fresh = users(300)
    unreadable = [(user_key("garbage"), b"\x09not a record")]
    store.remember(old + fresh + unreadable)
    deleted, after, steps = 0, None, 0
    while True:
        count, after = store.sweep_step(NOW, MAX_AGE, after, limit=64)
        deleted += count
        steps += 1
        if after is None:
            break
    assert deleted == 301
    assert steps >= 601 // 64
    assert store.lookup([k for k, _ in old + unreadable]) == [None] * 301
    assert store.lookup([k for k, _ in fresh]) == [r for _, r in fresh]
    assert store.sweep(NOW, MAX_AGE) == 0


def test_forget_users_older_than_and_all(tmp_path: Path) -> None:
    store = DeltaStore.open(tmp_path, WORKSPACE)
    store.remember(users(50))
    store.remember([(user_key("old"), record_for(1, NOW - 10 * DAY))])
    assert store.forget_users(["u1", "u2", "nobody"]) == 2
    assert store.lookup([user_key("u1"), user_key("u3")]) == [None, record_for(3)]
    assert store.forget_older_than(NOW, 7) == 1
    assert store.lookup([user_key("old")]) == [None]
    store.close()
    store = DeltaStore.open(tmp_path, WORKSPACE)  # forgetting is durable
    assert store.lookup([user_key("u1"), user_key("old")]) == [None, None]
    store.forget_all()
    assert store.lookup([k for k, _ in users(50)]) == [None] * 50
    store.remember(users(1))  # still usable
    store.close()
    store = DeltaStore.open(tmp_path, WORKSPACE)
    assert store.lookup([user_key("u0"), user_key("u3")]) == [record_for(0), None]
    store.close()


def test_forgetting_reaches_keys_of_any_identity(tmp_path: Path) -> None:
    """Keys are the identities' bytes (long ones cut and digested): forget_all's range and
    forget_users reach them all."""
    odd = ["", "\x00", "é" * KEY_BYTES, "日本" * 40, "\U0010ffff" * 20, "u" * 500, "z"]
    store = DeltaStore.open(tmp_path, WORKSPACE)
    store.remember([(user_key(u), record_for(n)) for n, u in enumerate(odd)])
    assert store.lookup([user_key(u) for u in odd]) == [record_for(n) for n in range(len(odd))]
    assert store.forget_users(["é" * KEY_BYTES, "u" * 500]) == 2
    assert store.lookup([user_key("u" * 500), user_key("u" * 499)]) == [None, None]
    store.forget_all()
    assert store.lookup([user_key(u) for u in odd]) == [None] * len(odd)
    assert store.records_estimate() == 0
    store.close()


# --- workspace, key format, read-only, another writer ------------------------------------------------------


def test_another_workspace_starts_afresh_with_a_log_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = DeltaStore.open(tmp_path, WORKSPACE)
    store.remember(users(10))
    store.close()
    other = workspace_fingerprint("https://rest.fra-01.braze.eu", "key-one")
    assert other != WORKSPACE != workspace_fingerprint("https://rest.iad-01.braze.com", "key-2")
    assert workspace_fingerprint("https://rest.iad-01.braze.com/", "key-one") == WORKSPACE
    with caplog.at_level(logging.WARNING):
        store = DeltaStore.open(tmp_path, other)
    assert "workspace" in caplog.text
    assert "nothing remembered" in caplog.text
    assert store.lookup([user_key("u1")]) == [None]
    store.close()
    marker = (tmp_path / STORE_DIRECTORY / "WORKSPACE").read_text()
    assert marker.strip() == other
    assert "key-one" not in marker
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        DeltaStore.open(tmp_path, other).close()  # the same again: no line, nothing lost
    assert caplog.text == ""


@pytest.mark.parametrize("earlier", ["db", "users"])
def test_a_store_of_an_earlier_key_format_starts_afresh_with_a_log_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, earlier: str
) -> None:
    """Keys were the XXH3-128 of the identity ("db"), or the identity with ':' between kind
    and values ("users"): those records are never found again (or found for another user),
    so the store is emptied (and its space given back) rather than left to age out."""
    store = DeltaStore.open(tmp_path, WORKSPACE)
    store.remember(users(10))
    store.close()
    directory = tmp_path / STORE_DIRECTORY
    [current] = [path for path in directory.iterdir() if path.is_dir()]
    current.rename(directory / earlier)  # as an earlier version left it
    assert DeltaStore.open_read_only(tmp_path, WORKSPACE) is None  # nothing it can read
    with caplog.at_level(logging.WARNING):
        store = DeltaStore.open(tmp_path, WORKSPACE)
    assert "earlier version" in caplog.text
    assert "nothing remembered" in caplog.text
    assert not (directory / earlier).exists()
    assert store.lookup([user_key("u1")]) == [None]
    store.remember(users(1))
    store.close()
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        store = DeltaStore.open(tmp_path, WORKSPACE)  # the same again: no line, nothing lost
    assert caplog.text == ""
    assert store.lookup([user_key("u0")]) == [record_for(0)]
    store.close()


def test_read_only_open_reads_beside_the_writer_and_cannot_write(tmp_path: Path) -> None:
    assert DeltaStore.open_read_only(tmp_path, WORKSPACE) is None  # nothing yet
    assert not (tmp_path / STORE_DIRECTORY).exists()  # and nothing created
    writer = DeltaStore.open(tmp_path, WORKSPACE)
    writer.remember(users(20))
    reader = DeltaStore.open_read_only(tmp_path, WORKSPACE)
    assert reader is not None
    assert reader.lookup([user_key("u3"), user_key("x")]) == [record_for(3), None]
    with pytest.raises(DeltaStoreError, match="read-only"):
        reader.remember(users(1, start=99))
    reader.close()
    other = workspace_fingerprint("https://rest.fra-01.braze.eu", "key")
    assert DeltaStore.open_read_only(tmp_path, other) is None  # another workspace: not shown
    writer.close()
    still = DeltaStore.open(tmp_path, WORKSPACE)  # and the read-only look reset nothing
    assert still.lookup([user_key("u3")]) == [record_for(3)]
    still.close()


def test_a_second_writer_gets_a_clear_error(store: DeltaStore, tmp_path: Path) -> None:
    with pytest.raises(DeltaStoreError, match="open in another process"):
        DeltaStore.open(tmp_path, WORKSPACE)


def test_an_unusable_state_directory_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(DeltaStoreError, match="cannot open the delta store"):
        DeltaStore.open(tmp_path / "file", WORKSPACE)


def test_kill_9_after_remember_loses_nothing(tmp_path: Path) -> None:
    """The WAL is written before remember returns: a killed daemon keeps what it wrote."""
    code = (
        "import os, signal, sys\n"
        "from pathlib import Path\n"
        "from rpi_braze_sync.deltastore import DeltaStore\n"
        "from tests.integration.test_deltastore import WORKSPACE, users\n"
        "store = DeltaStore.open(Path(sys.argv[1]), WORKSPACE)\n"
        "written = users(2000)\n"
        "for start in range(0, 2000, 75):\n"
        "    store.remember(written[start : start + 75])\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path)], check=False)
    assert result.returncode == -signal.SIGKILL
    store = DeltaStore.open(tmp_path, WORKSPACE)
    written = users(2000)
    assert store.lookup([k for k, _ in written]) == [r for _, r in written]
    store.close()


def test_records_and_keys_are_the_same_in_another_process() -> None:
    """Fingerprints survive restarts: another interpreter, another hash seed, same bytes."""
    fields = {"first_name": b'"Ann"', "rpi_cdp_attributes.since": b'{"$time":"2024-01-02"}'}
    adds = [("rpi_offers", b'"Spring"')]
    decision = compare(fields, adds, None, NOW, MAX_AGE, "upsert")
    assert decision.remember is not None
    long = "u" * (KEY_BYTES + 1)
    here = (build_record(decision.remember, None, NOW) or b"").hex() + user_key(long).hex()
    code = (
        "from rpi_braze_sync.delta import build_record, compare, user_key\n"
        f"f = {fields!r}; a = {adds!r}\n"
        f"d = compare(f, a, None, {NOW}, {MAX_AGE}, 'upsert')\n"
        f"print(build_record(d.remember, None, {NOW}).hex() + user_key({long!r}).hex())\n"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    there = subprocess.run(
        [sys.executable, "-c", code], env=env, check=True, capture_output=True, text=True
    ).stdout.strip()
    assert there == here
    assert len(user_key(long)) == KEY_BYTES + 16  # a long identity's key holds its digest


def test_the_daemon_loads_rocksdb_only_when_a_store_is_opened(tmp_path: Path) -> None:
    """Importing RocksDB's binding costs about 8 MB of resident memory: a daemon with delta off
    (the default), status and check must not pay it; opening a store loads it."""
    probe = (
        "import sys\n"
        "from pathlib import Path\n"
        "import rpi_braze_sync.app, rpi_braze_sync.cli, rpi_braze_sync.status\n"
        "print('rocksdict' in sys.modules)\n"
        "from rpi_braze_sync.deltastore import DeltaStore\n"
        f"DeltaStore.open(Path({str(tmp_path)!r}), 'w').close()\n"
        "print('rocksdict' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    assert result.stdout.split() == ["False", "True"]
