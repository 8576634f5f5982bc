"""The state directory's edges: the daemon's umask, the lock that lets one daemon use the
directory at a time, and modes that keep its personal data (journal, rejects, outbox) from
other users. Nothing here reads or writes what the files hold.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
from pathlib import Path

from .errors import JournalError, StateLockedError

UMASK = 0o027  # directories 0750, files 0640: the service's group may read, others nothing
LOCK_NAME = "rpi-braze-sync.lock"
_LOOSER_THAN_ALLOWED = 0o027  # group write, and anything for others
_OPEN_FLAGS = os.O_CLOEXEC | os.O_NOFOLLOW


def restrict_umask() -> None:
    """Whatever umask the daemon was started with, what it creates is not world-readable."""
    os.umask(UMASK)


def tighten_modes(directory: Path) -> int:
    """Take group write and every bit for others off the directory and what it holds (left
    by an earlier version, or created under a looser umask); links are not followed.
    Returns how many entries changed."""
    changed = 0
    for root, dirs, files in os.walk(directory, followlinks=False):
        for path in [root, *(os.path.join(root, name) for name in (*dirs, *files))]:
            try:
                mode = os.lstat(path).st_mode
                if stat.S_ISLNK(mode) or not mode & _LOOSER_THAN_ALLOWED:
                    continue
                os.chmod(path, stat.S_IMODE(mode) & ~_LOOSER_THAN_ALLOWED)
            except OSError:
                continue  # gone meanwhile, or not ours: the daemon's own writes still obey UMASK
            changed += 1
    return changed


class StateLock:
    """An exclusive flock on <state directory>/rpi-braze-sync.lock, held while the daemon runs.

    One lock for the live and the dry-run journal: both modes write the same rejects folder.
    The kernel releases it when the process ends, however it ends, so a stale lock file
    never blocks a start. `status` and `retry` do not take it: they only read the journal or
    add a record to it, which SQLite serialises.
    """

    def __init__(self, directory: Path) -> None:
        self.path = directory / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock, or raise StateLockedError naming the daemon that holds it."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | _OPEN_FLAGS, 0o640)
        except OSError:
            # A read-only state directory: a read-only descriptor locks as well (the journal
            # then says what is wrong).
            try:
                fd = os.open(self.path, os.O_RDONLY | _OPEN_FLAGS)
            except OSError as exc:
                raise JournalError(
                    f"cannot use the state directory {self.path.parent}: {exc.strerror}"
                ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
            os.close(fd)
            who = f"another rpi-braze-sync (pid {holder})" if holder.isdigit() else "another one"
            raise StateLockedError(
                f"{who} is running on the state directory {self.path.parent} "
                f"(it holds {self.path}); stop it first, or give this one another "
                "state_directory"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        with contextlib.suppress(OSError):  # only informative: a full disk must not stop us
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)

    def release(self) -> None:
        """The file stays: removing it would let a third daemon lock a new file while the
        second still waits on the old one."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None


PROBE_NAME = ".write-probe"
_PROBE_BYTES = b"\0" * 65536  # a journal checkpoint's size, about: room for one, not for a byte


def probe_writable(directory: Path) -> None:
    """Write, sync and remove a small file: raises OSError while the directory cannot take
    writes (full, read-only, permissions)."""
    path = directory / PROBE_NAME
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | _OPEN_FLAGS, 0o640)
    try:
        os.write(fd, _PROBE_BYTES)
        os.fsync(fd)
    finally:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(path)
