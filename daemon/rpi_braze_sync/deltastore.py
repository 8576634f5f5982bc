"""Delta's remembered values on disk (issue 16): one RocksDB under <state_directory>/delta, one
record per user (packed by delta.py; only a record's age is read here), in bounded memory.
The daemon writes from its loop and reads, syncs and sweeps from one thread of its own (RocksDB
takes both at once); one process writes, others may open it read-only.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, cast

from .delta import refreshed_at, user_key
from .errors import RpiBrazeSyncError, StateLockedError

if TYPE_CHECKING:  # loaded by _rocks() when a store is opened
    import rocksdict as rocks

log = logging.getLogger(__name__)

STORE_DIRECTORY = "delta"  # under the state directory
_DB = "db"
_WORKSPACE = "WORKSPACE"
_FILE_MODE, _DIR_MODE = 0o640, 0o750
_KEY_END = b"\xff" * 17  # after every 16-byte user key
SWEEP_STEP = 50_000  # records read per sweep step: a few tenths of a second

# Memory, whatever the number of users: the block cache and the memtables are fixed; each
# table's index and bloom filter live in the cache too, partitioned, with only their small
# top level pinned. Measured (600,000 users of 500-byte records): 29 MB of resident memory
# with these sizes, 41 MB with 16 and 8; the daemon's whole budget is 150 MB at 5M users.
CACHE_BYTES = 8 << 20
MEMTABLE_BYTES = 4 << 20


class DeltaStoreError(RpiBrazeSyncError):
    """The store of remembered values cannot be opened or written."""


class DeltaStoreInUseError(DeltaStoreError, StateLockedError):
    """Another process (a running daemon) has the store open for writing: exit 75."""


def workspace_fingerprint(api_url: str, api_key: str) -> str:
    """Names the Braze workspace without keeping the key: a different one starts afresh."""
    digest = hashlib.blake2b(digest_size=16, person=b"rpi-braze-delta")
    digest.update(api_url.strip().rstrip("/").encode("utf-8") + b"\0" + api_key.encode("utf-8"))
    return digest.hexdigest()


@functools.cache
def _rocks() -> ModuleType:
    """RocksDB's binding, imported when a store is first opened: the import alone costs about
    8 MB of resident memory, which a daemon with delta off (the default) should not pay."""
    import rocksdict

    return rocksdict


def _options(create: bool) -> rocks.Options:
    rdb = _rocks()
    options: rocks.Options = rdb.Options(raw_mode=True)
    options.create_if_missing(create)
    table = rdb.BlockBasedOptions()
    table.set_block_cache(rdb.Cache(CACHE_BYTES))
    table.set_bloom_filter(10, False)  # a user never seen costs no block read
    table.set_cache_index_and_filter_blocks(True)
    table.set_index_type(rdb.BlockBasedIndexType.two_level_index_search())
    table.set_partition_filters(True)
    table.set_pin_top_level_index_and_filter(True)
    table.set_pin_l0_filter_and_index_blocks_in_cache(True)
    options.set_block_based_table_factory(table)
    # The path fingerprints repeat from record to record: LZ4 halves the size on disk.
    options.set_compression_type(rdb.DBCompressionType.lz4())
    options.set_bottommost_compression_type(rdb.DBCompressionType.lz4())
    options.set_write_buffer_size(MEMTABLE_BYTES)
    # A bloom filter of each memtable's keys (a tenth of its size): a user never seen skips
    # its skip list (a first run's lookups, 200,000 users: 1.15 -> 0.77 us a key).
    options.set_memtable_prefix_bloom_ratio(0.1)
    options.set_memtable_whole_key_filtering(True)
    options.set_max_write_buffer_number(2)
    options.set_target_file_size_base(32 << 20)
    options.set_level_compaction_dynamic_level_bytes(True)
    options.set_max_background_jobs(2)
    options.set_max_open_files(512)
    options.set_keep_log_file_num(2)
    options.set_max_log_file_size(1 << 20)
    return options


def _restrict_modes(directory: Path) -> None:
    """0750 folders, 0640 files; and a umask that keeps it so for the files RocksDB creates
    later from its own threads (the systemd unit sets UMask=0027 too)."""
    os.umask(os.umask(0) | 0o027)
    for path in (directory, *directory.rglob("*")):
        mode = _DIR_MODE if path.is_dir() else _FILE_MODE
        if path.stat().st_mode & 0o777 & ~mode:
            path.chmod(mode)


class DeltaStore:
    """Records by user key; `lookup` and `remember` take a chunk's or a batch's worth."""

    def __init__(self, directory: Path, db: rocks.Rdict, read_only: bool) -> None:
        self.directory = directory
        self._db = db
        self._read_only = read_only
        self._synced = _rocks().WriteOptions()
        self._synced.sync = True

    # --- opening -----------------------------------------------------------------------

    @classmethod
    def open(cls, state_directory: Path, workspace: str) -> DeltaStore:
        """Open for writing, creating the store if need be. A store of another workspace (or
        of unknown origin) is emptied first, with a log line."""
        directory = Path(state_directory) / STORE_DIRECTORY
        try:
            directory.mkdir(mode=_DIR_MODE, parents=True, exist_ok=True)
            marker = directory / _WORKSPACE
            found = marker.read_text().strip() if marker.exists() else None
            if found != workspace:
                if found is not None or (directory / _DB).exists():
                    log.warning(
                        "delta: the Braze workspace (api_url or API key) changed since values "
                        "were remembered in %s: starting with nothing remembered",
                        directory,
                    )
                shutil.rmtree(directory / _DB, ignore_errors=True)
                _write_marker(marker, workspace)
            db = _rocks().Rdict(str(directory / _DB), _options(create=True))
            _restrict_modes(directory)
        except OSError as exc:
            raise DeltaStoreError(f"cannot open the delta store in {directory}: {exc}") from exc
        except Exception as exc:  # rocksdict raises bare Exception for RocksDB's errors
            raise _converted(exc, directory) from exc
        return cls(directory, db, read_only=False)

    @classmethod
    def open_existing(cls, state_directory: Path) -> DeltaStore | None:
        """For `forget`: open the store for writing whatever its workspace (forgetting is
        always safe), None when there is none. The daemon must be stopped: RocksDB takes one
        writer, and a running daemon with delta on holds it (DeltaStoreError says so)."""
        directory = Path(state_directory) / STORE_DIRECTORY
        if not (directory / _DB / "CURRENT").exists():
            return None
        try:
            db = _rocks().Rdict(str(directory / _DB), _options(create=False))
        except Exception as exc:
            raise _converted(exc, directory) from exc
        return cls(directory, db, read_only=False)

    @classmethod
    def open_read_only(cls, state_directory: Path, workspace: str | None) -> DeltaStore | None:
        """For preview --explain, beside a running daemon. None when nothing is remembered for
        this workspace (no store yet, or one of another workspace, left untouched); `workspace`
        None: not checked."""
        directory = Path(state_directory) / STORE_DIRECTORY
        marker = directory / _WORKSPACE
        try:
            if not marker.exists():
                return None
            if workspace is not None and marker.read_text().strip() != workspace:
                return None
            if not (directory / _DB / "CURRENT").exists():
                return None
            db = _rocks().Rdict(
                str(directory / _DB),
                _options(create=False),
                access_type=_rocks().AccessType.read_only(),
            )
        except OSError as exc:
            raise DeltaStoreError(f"cannot read the delta store in {directory}: {exc}") from exc
        except Exception as exc:
            raise _converted(exc, directory) from exc
        return cls(directory, db, read_only=True)

    def close(self) -> None:
        self._db.close()

    def change_workspace(self, workspace: str) -> None:
        """A reload named another Braze workspace: nothing remembered holds there."""
        self.forget_all()
        try:
            _write_marker(self.directory / _WORKSPACE, workspace)
        except OSError as exc:  # the next start finds the old marker: it empties the store
            raise DeltaStoreError(f"cannot write {self.directory / _WORKSPACE}: {exc}") from exc

    # --- the pipeline's calls -----------------------------------------------------------

    def lookup(self, keys: Sequence[bytes]) -> list[bytes | None]:
        """The records of a chunk's users (delta.user_key), None where nothing is remembered."""
        if not keys:
            return []
        return cast("list[bytes | None]", self._db[list(keys)])

    # The write order the pipeline must follow (kill -9 may strike between any two steps):
    # 1. compare a chunk with its looked-up records: nothing is written for it;
    # 2. once Braze acknowledged a request: `remember` the records of its acknowledged objects
    #    (written at once, on the loop: deltawrites.py)
    #    (never a rejected object, never a request that failed or is still being retried);
    #    if that write fails, `forget_keys` those users instead (sent whole next time);
    # 3. `sync`: the WAL, with every write of step 2 before it, on disk (one fsync for all
    #    the writes of an interval: deltawrites.SYNC_EVERY_S, group commit);
    # 4. once that sync is DONE (not merely queued), the file checkpoint covering those rows.
    # Killed between 2 and 4: the rows after the checkpoint are read again; their values are
    # remembered, so they are skipped, and Braze holds them (it acknowledged them). Killed
    # before 2: nothing is remembered and the values are sent again. The other order (4 then
    # 2) is NOT safe: killed between them, the checkpoint covers rows whose new values Braze
    # holds while the store still holds the old ones, and a later row going back to an old
    # value is skipped (tests/e2e/test_delta_kill.py caught it). Never write at step 1 or when
    # a request leaves. The WAL is written before remember returns, not synced: a kill -9
    # loses nothing, but a power cut loses what the OS had not written back, in any order
    # with the journal's pages; hence step 3 before 4 (a checkpoint, even an unsynced one,
    # may reach the disk before the store's WAL). Forgetting is synced, so a forgotten value
    # cannot come back.

    def remember(self, records: Iterable[tuple[bytes, bytes]]) -> None:
        """Write acknowledged records (user key, delta.build_record's bytes) as one batch, in
        order: the last record of a key wins."""
        batch = _rocks().WriteBatch(raw_mode=True)
        for key, record in records:
            batch.put(key, record)
        if batch.len():
            self._write(batch)

    def forget_keys(self, keys: Iterable[bytes]) -> None:
        """Step 2 when `remember` failed: those users' old records must not stay (their rows'
        checkpoint would cover values the store does not hold). Not synced: `sync` follows."""
        batch = _rocks().WriteBatch(raw_mode=True)
        for key in keys:
            batch.delete(key)
        if batch.len():
            self._write(batch)

    def sync(self) -> None:
        """Step 3: every write so far on disk (the WAL fsynced), whatever the OS does next."""
        if self._read_only:
            raise DeltaStoreError("the delta store was opened read-only")
        try:
            self._db.flush_wal(True)
        except Exception as exc:
            raise _converted(exc, self.directory) from exc

    # --- retention and forgetting -------------------------------------------------------

    def sweep_step(
        self, now_s: int, max_age_s: int, after: bytes | None = None, limit: int = SWEEP_STEP
    ) -> tuple[int, bytes | None]:
        """Delete up to `limit` records read from `after` on whose values were last all sent
        more than `max_age_s` ago (they can only cause sending again) or that this version
        cannot read. Returns (deleted, where the next step starts or None when done)."""
        cutoff = now_s - max_age_s
        batch = _rocks().WriteBatch(raw_mode=True)
        iterator = self._db.iter()
        if after is None:
            iterator.seek_to_first()
        else:
            iterator.seek(after)
        read = 0
        while iterator.valid() and read < limit:
            key, record = iterator.key(), iterator.value()
            sent_at = refreshed_at(record)
            if sent_at is None or sent_at < cutoff:
                batch.delete(key)
            read += 1
            iterator.next()
        resume = iterator.key() if iterator.valid() else None
        deleted = batch.len()
        if deleted:
            self._write(batch)
        return deleted, resume

    def sweep(self, now_s: int, max_age_s: int) -> int:
        """Retention in one go (the pipeline calls sweep_step between chunks instead)."""
        total, after = 0, None
        while True:
            deleted, after = self.sweep_step(now_s, max_age_s, after)
            total += deleted
            if after is None:
                return total

    def forget_older_than(self, now_s: int, days: float) -> int:
        """`forget --older-than DAYS`: users whose values were last all sent before then."""
        total, after = 0, None
        while True:
            deleted, after = self.sweep_step(now_s, int(days * 86400), after)
            total += deleted
            if after is None:
                self._db.flush_wal(True)
                return total

    def forget_users(self, users: Iterable[str]) -> int:
        """`forget --user ID ...` (the mapping's user identity, e.g. an external_id): how many
        of them had values remembered."""
        keys = [user_key(user) for user in users]
        known = [k for k, record in zip(keys, self.lookup(keys), strict=True) if record is not None]
        batch = _rocks().WriteBatch(raw_mode=True)
        for key in known:
            batch.delete(key)
        if known:
            self._write(batch, self._synced)
        return len(known)

    def forget_all(self) -> None:
        """`forget --all`: every remembered value, at once (a range deletion, synced)."""
        batch = _rocks().WriteBatch(raw_mode=True)
        batch.delete_range(b"", _KEY_END)
        self._write(batch, self._synced)
        self._db.compact_range(None, None)

    # --- sizes --------------------------------------------------------------------------

    def records_estimate(self) -> int:
        value = self._db.property_int_value("rocksdb.estimate-num-keys")
        return int(value or 0)

    def disk_bytes(self) -> int:
        return sum(f.stat().st_size for f in (self.directory / _DB).iterdir() if f.is_file())

    def _write(self, batch: rocks.WriteBatch, options: rocks.WriteOptions | None = None) -> None:
        if self._read_only:
            raise DeltaStoreError("the delta store was opened read-only")
        try:
            if options is None:
                self._db.write(batch)
            else:
                self._db.write(batch, options)
        except Exception as exc:
            raise _converted(exc, self.directory) from exc


def _write_marker(marker: Path, workspace: str) -> None:
    temporary = marker.with_suffix(".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, _FILE_MODE)
    with os.fdopen(fd, "w") as handle:
        handle.write(workspace + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, marker)


def _converted(exc: Exception, directory: Path) -> DeltaStoreError:
    text = str(exc)
    if "lock" in text.lower():
        return DeltaStoreInUseError(
            f"the delta store in {directory} is open in another process (a running daemon): "
            "stop it first"
        )
    return DeltaStoreError(f"delta store in {directory}: {text}")
