"""Delta's remembered values on disk (issue 16): one RocksDB under <state_directory>/delta, one
record per user (packed by delta.py; only a record's age is read here), in bounded memory.
The daemon writes from its loop and reads, syncs and sweeps from one thread of its own (RocksDB
takes both at once; a first run's few users are read on the loop: deltarun.DeltaRun.lookup);
one process writes, others may open it read-only.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
from collections import deque
from collections.abc import Iterable, Sequence
from itertools import starmap
from pathlib import Path
from typing import TYPE_CHECKING, cast

from . import deltarocks
from .delta import refreshed_at, user_key
from .deltarocks import DIR_MODE, FILE_MODE, rocks
from .deltaunwritten import Unwritten
from .errors import RpiBrazeSyncError, StateLockedError

if TYPE_CHECKING:
    import rocksdict

log = logging.getLogger(__name__)

STORE_DIRECTORY = "delta"  # under the state directory
# RocksDB's directory, named for its key format (deltarecord.user_key): a store of an older
# one is removed when the store is opened for writing, with a log line. "db": keys were the
# XXH3-128 of the identity; "users": an identity other than an external_id was its kind and
# values joined by ':', which an external_id (or an alias's value) may hold.
_DB = "identities"
_OLDER_DBS = ("db", "users")
_WORKSPACE = "WORKSPACE"
_KEY_END = b"\xff"  # after every user key: none starts with 0xFF
SWEEP_STEP = 50_000  # records read per sweep step: a few tenths of a second


class DeltaStoreError(RpiBrazeSyncError):
    """The store of remembered values cannot be opened or written."""


class DeltaStoreInUseError(DeltaStoreError, StateLockedError):
    """Another process (a running daemon) has the store open for writing: exit 75."""


def workspace_fingerprint(api_url: str, api_key: str) -> str:
    """Names the Braze workspace without keeping the key: a different one starts afresh."""
    digest = hashlib.blake2b(digest_size=16, person=b"rpi-braze-delta")
    digest.update(api_url.strip().rstrip("/").encode("utf-8") + b"\0" + api_key.encode("utf-8"))
    return digest.hexdigest()


class DeltaStore:
    """Records by user key; `lookup` and `remember` take a chunk's or a batch's worth."""

    def __init__(self, directory: Path, db: rocksdict.Rdict, read_only: bool) -> None:
        self.directory = directory
        self._db = db
        self._read_only = read_only
        self._synced = rocks().WriteOptions()
        self._synced.sync = True
        # The users written since the store was found empty (None: it was not, when opened).
        self.unwritten: Unwritten | None = None

    # --- opening -----------------------------------------------------------------------

    @classmethod
    def open(cls, state_directory: Path, workspace: str) -> DeltaStore:
        """Open for writing, creating the store if need be. A store of another workspace (or
        of unknown origin), or of an older key format, is emptied first, with a log line."""
        directory = Path(state_directory) / STORE_DIRECTORY
        try:
            directory.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
            marker = directory / _WORKSPACE
            found = marker.read_text().strip() if marker.exists() else None
            older = [directory / name for name in _OLDER_DBS if (directory / name).exists()]
            if found != workspace:
                if found is not None or (directory / _DB).exists() or older:
                    log.warning(
                        "delta: the Braze workspace (api_url or API key) changed since values "
                        "were remembered in %s: starting with nothing remembered",
                        directory,
                    )
                shutil.rmtree(directory / _DB, ignore_errors=True)
                _write_marker(marker, workspace)
            elif older:
                log.warning(
                    "delta: the values remembered in %s are kept under keys of an earlier "
                    "version: starting with nothing remembered",
                    directory,
                )
            for path in older:
                shutil.rmtree(path, ignore_errors=True)
            db = rocks().Rdict(str(directory / _DB), deltarocks.options(create=True))
            deltarocks.restrict_modes(directory)
        except OSError as exc:
            raise DeltaStoreError(f"cannot open the delta store in {directory}: {exc}") from exc
        except Exception as exc:  # rocksdict raises bare Exception for RocksDB's errors
            raise _converted(exc, directory) from exc
        store = cls(directory, db, read_only=False)
        if store._empty():  # a first run: it asks the store only of users written since
            store.unwritten = Unwritten()
        return store

    def _empty(self) -> bool:
        iterator = self._db.iter()
        iterator.seek_to_first()
        return not iterator.valid()

    @classmethod
    def open_existing(cls, state_directory: Path) -> DeltaStore | None:
        """For `forget`: open the store for writing whatever its workspace (forgetting is
        always safe), None when there is none. The daemon must be stopped: RocksDB takes one
        writer, and a running daemon with delta on holds it (DeltaStoreError says so)."""
        directory = Path(state_directory) / STORE_DIRECTORY
        if not (directory / _DB / "CURRENT").exists():
            return None
        try:
            db = rocks().Rdict(str(directory / _DB), deltarocks.options(create=False))
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
            db = rocks().Rdict(
                str(directory / _DB),
                deltarocks.options(create=False),
                access_type=rocks().AccessType.read_only(),
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

    def maybe_held(self, keys: Sequence[bytes]) -> list[int] | None:
        """The positions of the users lookup may find a record for (deltaunwritten.py); None:
        any of them. Marks them as written (a write of theirs may say so: remember's marked)."""
        unwritten = self.unwritten
        if unwritten is None:
            return None
        held = unwritten.held_marking(keys)
        if unwritten.spent:  # (every user asked for of late was written since: dropped)
            self.unwritten = None
        return held

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

    def remember(self, records: Sequence[tuple[bytes, bytes]], marked: bool = False) -> None:
        """Write acknowledged records (user key, delta.build_record's bytes) as one batch, in
        order: the last record of a key wins. `marked`: each user was asked of maybe_held."""
        # Marked before writing: a write that fails may have written some of them.
        if self.unwritten is not None and not marked:
            self.unwritten.mark([key for key, _ in records])
        batch = rocks().WriteBatch(raw_mode=True)
        # No bytecode per record (a first run writes every row): 200,000 records of 200 B
        # in batches of 75, put loop 0.38-0.55 -> 0.26-0.32 us a record
        deque(starmap(batch.put, records), 0)
        if batch.len():
            self._write(batch)

    def forget_keys(self, keys: Iterable[bytes]) -> None:
        """Step 2 when `remember` failed: those users' old records must not stay (their rows'
        checkpoint would cover values the store does not hold). Not synced: `sync` follows."""
        batch = rocks().WriteBatch(raw_mode=True)
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
        batch = rocks().WriteBatch(raw_mode=True)
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
        known = [k for k, record in zip(keys, self.lookup(keys), strict=True) if record]
        batch = rocks().WriteBatch(raw_mode=True)
        for key in known:
            batch.delete(key)
        if known:
            self._write(batch, self._synced)
        return len(known)

    def forget_all(self) -> None:
        """`forget --all`: every remembered value, at once (a range deletion, synced)."""
        batch = rocks().WriteBatch(raw_mode=True)
        batch.delete_range(b"", _KEY_END)
        self._write(batch, self._synced)
        self._db.compact_range(None, None)

    # --- sizes --------------------------------------------------------------------------

    def records_estimate(self) -> int:
        value = self._db.property_int_value("rocksdb.estimate-num-keys")
        return int(value or 0)

    def disk_bytes(self) -> int:
        return sum(f.stat().st_size for f in (self.directory / _DB).iterdir() if f.is_file())

    def _write(
        self, batch: rocksdict.WriteBatch, options: rocksdict.WriteOptions | None = None
    ) -> None:
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
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
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
