"""after_done: delete or archive an export once it is sent, never through a link.

Only the file that was sent (same device and inode) is touched. The folders on the way are
entered with O_NOFOLLOW (shareio.py), the archive's created the same way, and a folder that
is in the state directory is refused: a planted link or a misconfigured archive would move
exports onto the journal.
"""

from __future__ import annotations

import asyncio
import errno
import os
import shutil
from pathlib import Path

from .errors import NotRegularFileError
from .logs import ExportLogger
from .shareio import DIRECTORY_FLAGS, open_folder, open_regular_at, share_parts, special_kind


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _inside(fd: int, folder: tuple[int, int] | None) -> bool:
    """Whether the folder open as `fd` is `folder` or below it, walking up with '..'."""
    if folder is None:
        return False
    current = os.dup(fd)
    try:
        for _ in range(4096):  # deeper than any path
            st = os.fstat(current)
            if (st.st_dev, st.st_ino) == folder:
                return True
            parent = os.open("..", DIRECTORY_FLAGS, dir_fd=current)
            up = os.fstat(parent)
            os.close(current)
            current = parent
            if (up.st_dev, up.st_ino) == (st.st_dev, st.st_ino):
                return False  # the root
        return False
    finally:
        os.close(current)


def _folder_chain(root: Path, parts: list[str] | tuple[str, ...], state: Path, create: bool) -> int:
    """Open root/part/..., creating missing folders when `create`, without following a link
    below `root`; refused when the folder reached is in the state directory (a planted link or
    a misconfigured archive would move exports onto the journal)."""
    fd = open_folder(root, parts, create)
    try:
        if _inside(fd, _identity(state)):
            raise NotRegularFileError("outside", "that folder is inside the state directory")
    except BaseException:
        os.close(fd)
        raise
    return fd


def _same_file(dir_fd: int, name: str, identity: tuple[int, int]) -> None:
    st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    kind = special_kind(st.st_mode)
    if kind is not None:
        raise NotRegularFileError(kind, f"it is now a {kind}; left alone")
    if (st.st_dev, st.st_ino) != identity:
        raise NotRegularFileError("replaced", "it was replaced since it was sent; left alone")


def delete_share_file(base: Path, rel: str, identity: tuple[int, int], state: Path) -> None:
    """Delete the file that was sent (same device and inode), never through a link."""
    parts = share_parts(rel)
    folder = _folder_chain(base, parts[:-1], state, create=False)
    try:
        _same_file(folder, parts[-1], identity)
        os.unlink(parts[-1], dir_fd=folder)
    finally:
        os.close(folder)


def archive_share_file(
    base: Path, rel: str, identity: tuple[int, int], archive_root: Path, state: Path
) -> None:
    """Move the file that was sent to archive_root/rel. The folders are created or entered
    without following a link (from the base when the archive is in the share, as by default:
    a planted '.archive' link is refused too), and an entry already there is replaced, never
    written through."""
    parts = share_parts(rel)
    source = _folder_chain(base, parts[:-1], state, create=False)
    try:
        _same_file(source, parts[-1], identity)
        try:
            below_base: tuple[str, ...] | None = archive_root.relative_to(base).parts
        except ValueError:
            below_base = None
        if below_base is not None:
            target = _folder_chain(base, (*below_base, *parts[:-1]), state, create=True)
        else:  # the operator's own folder: trusted as named, not what is below it
            archive_root.mkdir(parents=True, exist_ok=True, mode=0o750)
            target = _folder_chain(archive_root, parts[:-1], state, create=True)
        try:
            try:
                os.rename(parts[-1], parts[-1], src_dir_fd=source, dst_dir_fd=target)
            except OSError as exc:
                if exc.errno != errno.EXDEV:
                    raise
                _copy_then_unlink(source, target, parts[-1])
        finally:
            os.close(target)
    finally:
        os.close(source)


def _copy_then_unlink(source: int, target: int, name: str) -> None:
    """Across file systems: copy into a new file (never through a link), then delete."""
    temporary = f".{name}.archiving"
    with os.fdopen(open_regular_at(source, name), "rb") as reader:
        fd = os.open(
            temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o640, dir_fd=target
        )
        with os.fdopen(fd, "wb") as writer:
            shutil.copyfileobj(reader, writer, 1 << 20)
            writer.flush()
            os.fsync(writer.fileno())
    os.rename(temporary, name, src_dir_fd=target, dst_dir_fd=target)
    os.unlink(name, dir_fd=source)


def apply_after_done(
    action: str, base: Path, rel: str, identity: tuple[int, int], archive: Path, state: Path
) -> str:
    """`archive` or `delete` the export `rel` that was sent; what was done, for the log.
    Raises NotRegularFileError (refused: a link, another file, the state directory) or the
    OSError of the move or the deletion."""
    if action == "delete":
        delete_share_file(base, rel, identity, state)
        return "deleted"
    archive_share_file(base, rel, identity, archive, state)
    return "archived"


async def after_done(
    action: str,
    base: Path,
    rel: str,
    identity: tuple[int, int],
    archive_root: Path,
    state: Path,
    log: ExportLogger,
) -> None:
    """keep, archive or delete a file, as its channel says, once it is done: in a worker
    thread (a copy to another file system takes long); a failure is logged, never raised (the
    file was sent: it stays done)."""
    if action == "keep":
        return
    try:
        where = (base, rel, identity, archive_root, state)
        done = await asyncio.to_thread(apply_after_done, action, *where)
    except (NotRegularFileError, OSError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        log.error("did not %s the file after it was sent: %s", action, why)
        return
    log.info("%s after it was sent", done)
