"""Opening files on the share: only regular files inside it, reached without following a link.

Every read of an export (the watcher's settle stat, the inspection, its hash, the reader in
the mapping process) opens it here. Each folder below the base is opened with O_NOFOLLOW, the
file with O_NOFOLLOW and O_NONBLOCK (a FIFO cannot block the open), and the type is checked
with fstat on the descriptor that is then read: a file swapped for a link or a FIFO after a
check is still refused. Archive and delete (after_done) go through the same folders.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from .errors import NotRegularFileError
from .watchrules import is_ignored_name

DIRECTORY_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
STEP_FLAGS = DIRECTORY_FLAGS | os.O_NOFOLLOW
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
Snapshot = dict[str, tuple[int, int]]  # relative path -> (size, mtime_ns)
Specials = dict[str, str]  # relative path -> what it is instead of a regular file
# What is not a regular file, as a word for logs and the ignored-files metric's reason.
SPECIAL_KINDS = ("symlink", "fifo", "device", "socket", "directory")


def special_kind(mode: int) -> str | None:
    """None for a regular file, else what it is (one of SPECIAL_KINDS)."""
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISLNK(mode):
        return "symlink"
    if stat.S_ISFIFO(mode):
        return "fifo"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device"
    if stat.S_ISSOCK(mode):
        return "socket"
    return "directory"


def share_parts(rel: str) -> list[str]:
    parts = rel.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise NotRegularFileError("outside", f"{rel!r} is not a path inside the share")
    return parts


def open_folder(base: Path, parts: Sequence[str], create: bool = False) -> int:
    """A descriptor of base/part/part/..., no folder below `base` reached through a link,
    missing folders made (0750) when `create`. `base` itself is the operator's (it may be a
    link, e.g. to a mount point)."""
    fd = os.open(base, DIRECTORY_FLAGS)
    try:
        for part in parts:
            if create:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(part, 0o750, dir_fd=fd)
            try:
                inner = os.open(part, STEP_FLAGS, dir_fd=fd)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    kind = kind_at(fd, part) or "directory"
                    raise NotRegularFileError(kind, f"{part!r} on the way is a {kind}") from None
                raise
            os.close(fd)
            fd = inner
    except BaseException:
        os.close(fd)
        raise
    return fd


def kind_at(dir_fd: int, name: str) -> str | None:
    try:
        return special_kind(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except OSError:
        return None


def open_regular_at(dir_fd: int, name: str) -> int:
    """The regular file `name` in the folder `dir_fd`, opened for reading, never through a
    link; NotRegularFileError for anything else (checked before and after opening)."""
    kind = kind_at(dir_fd, name)
    if kind is not None:  # a FIFO or a device is not even opened
        raise NotRegularFileError(kind, f"a {kind}, not a regular file")
    try:
        fd = os.open(name, _FILE_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise NotRegularFileError("symlink", "a symlink, not a regular file") from None
        raise
    try:
        kind = special_kind(os.fstat(fd).st_mode)
        if kind is not None:  # swapped between the check and the open
            raise NotRegularFileError(kind, f"a {kind}, not a regular file")
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_share_fd(base: Path, rel: str) -> int:
    """A read-only descriptor of the regular file `rel` below `base`.

    Raises NotRegularFileError (a link anywhere below `base`, a FIFO, a device, a socket, a
    folder), or the OSError of the open (FileNotFoundError, PermissionError...)."""
    parts = share_parts(rel)
    folder = open_folder(base, parts[:-1])
    try:
        return open_regular_at(folder, parts[-1])
    finally:
        os.close(folder)


def open_regular(path: Path, base: Path | None = None) -> BinaryIO:
    """`path` opened for reading as a binary file: through open_share_fd when it lies in the
    share `base`; else (a file named on the command line) following links, but still only a
    regular file, and never blocking on a FIFO."""
    if base is not None:
        fd = open_share_fd(base, path.relative_to(base).as_posix())
    else:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
        try:
            kind = special_kind(os.fstat(fd).st_mode)
            if kind is not None:
                raise NotRegularFileError(kind, f"{path} is a {kind}, not a regular file")
            os.set_blocking(fd, True)
        except BaseException:
            os.close(fd)
            raise
    return os.fdopen(fd, "rb")


def stat_share_file(base: Path, rel: str) -> os.stat_result:
    """fstat of the file through open_share_fd (which also refreshes NFS's attributes)."""
    fd = open_share_fd(base, rel)
    try:
        return os.fstat(fd)
    finally:
        os.close(fd)


# --- the watcher's scans and settle checks ---------------------------------------------------


@dataclass(frozen=True)
class Unreadable:
    reason: str  # the error's text: "Permission denied"


def scan_tree(base: Path, max_depth: int) -> tuple[Snapshot, Specials] | None:
    """Every visible regular file down to `max_depth` folders below `base`, and what is not a
    regular file where one could be (links anywhere; FIFOs, devices, sockets and folders at a
    file's depth); None if the share is gone. Links are never followed."""
    found: Snapshot = {}
    specials: Specials = {}
    try:
        os.stat(base)
    except OSError:
        return None
    stack: list[tuple[Path, str, int]] = [(base, "", 0)]
    while stack:
        folder, prefix, depth = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError:
            if depth == 0:
                return None
            continue  # a folder that vanished mid-scan; the next scan will tell
        for entry in entries:
            if is_ignored_name(entry.name):
                continue
            rel = f"{prefix}{entry.name}"
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            kind = special_kind(st.st_mode)
            if kind is None:
                found[rel] = (st.st_size, st.st_mtime_ns)  # (at another depth: the layout's)
            elif kind == "directory" and depth < max_depth:
                stack.append((Path(entry.path), rel + "/", depth + 1))
            elif kind == "symlink" or depth == max_depth:
                specials[rel] = kind
    return found, specials


def stat_file(base: Path, rel: str) -> tuple[int, int] | str | Unreadable | None:
    """(size, mtime_ns) through open + fstat (fresh attributes on NFS); what the path is when
    it is not a regular file; Unreadable when it cannot be opened; None if it is gone."""
    try:
        st = stat_share_file(base, rel)
    except NotRegularFileError as exc:
        return exc.kind
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            return None
        return Unreadable(exc.strerror or str(exc))
    return st.st_size, st.st_mtime_ns
