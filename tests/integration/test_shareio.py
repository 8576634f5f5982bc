"""Opening, deleting and archiving files on the share, on real files: only regular files
inside the share are opened, nothing is reached through a link, and no export is ever moved
or deleted into or out of the state directory."""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path

import pytest

from rpi_braze_sync.afterdone import archive_share_file, delete_share_file
from rpi_braze_sync.errors import NotRegularFileError
from rpi_braze_sync.shareio import open_regular, open_share_fd, stat_share_file

REL = "Channel/Offer/wf-1/export.txt"


@pytest.fixture
def share(tmp_path: Path) -> Path:
    base = tmp_path / "share"
    (base / "Channel" / "Offer" / "wf-1").mkdir(parents=True)
    (base / REL).write_text("external_id\nu1\n")
    return base


@pytest.fixture
def state(tmp_path: Path) -> Path:
    folder = tmp_path / "state"
    folder.mkdir()
    (folder / "journal.sqlite").write_bytes(b"the journal")
    return folder


def identity(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_dev, st.st_ino


def test_a_regular_file_is_opened_and_stated(share: Path) -> None:
    fd = open_share_fd(share, REL)
    try:
        assert os.read(fd, 11) == b"external_id"
    finally:
        os.close(fd)
    assert stat_share_file(share, REL).st_size == len("external_id\nu1\n")
    with open_regular(share / REL, share) as f:
        assert f.read() == b"external_id\nu1\n"


def make_socket(path: Path) -> None:
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(path))


@pytest.mark.parametrize(
    ("make", "kind"),
    [
        (lambda p, outside: p.symlink_to(outside), "symlink"),
        (lambda p, outside: p.symlink_to("/dev/zero"), "symlink"),
        (lambda p, outside: os.mkfifo(p), "fifo"),
        (lambda p, outside: p.mkdir(), "directory"),
        (lambda p, outside: make_socket(p), "socket"),
    ],
    ids=["link-out", "link-dev-zero", "fifo", "directory", "socket"],
)
def test_anything_but_a_regular_file_is_refused_without_blocking(
    share: Path, tmp_path: Path, make: object, kind: str
) -> None:
    outside = tmp_path / "secret.txt"
    outside.write_text("SECRET")
    outside.chmod(0o600)
    name = "Channel/Offer/wf-1/odd.txt"
    make(share / name, outside)  # type: ignore[operator]
    outcome: list[BaseException] = []

    def attempt() -> None:  # in a thread: a FIFO opened for reading would block forever
        try:
            open_share_fd(share, name)
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=attempt, daemon=True)
    thread.start()
    thread.join(5)
    assert not thread.is_alive(), "the open blocked"
    assert isinstance(outcome[0], NotRegularFileError)
    assert outcome[0].kind == kind


@pytest.mark.skipif(os.geteuid() != 0, reason="creating a device node needs root")
def test_a_device_node_is_refused(share: Path) -> None:
    node = share / "Channel/Offer/wf-1/null.txt"
    os.mknod(node, 0o600 | 0o020000, os.makedev(1, 3))  # a character device: /dev/null's
    with pytest.raises(NotRegularFileError) as caught:
        open_share_fd(share, "Channel/Offer/wf-1/null.txt")
    assert caught.value.kind == "device"


def test_a_link_on_the_way_is_refused(share: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "wf-2").mkdir(parents=True)
    (elsewhere / "wf-2" / "export.txt").write_text("SECRET")
    (share / "Channel" / "Linked").symlink_to(elsewhere)
    with pytest.raises(NotRegularFileError, match="'Linked' on the way is a symlink"):
        open_share_fd(share, "Channel/Linked/wf-2/export.txt")
    with pytest.raises(NotRegularFileError):
        open_share_fd(share, "Channel/../../elsewhere/wf-2/export.txt")


def test_a_swap_to_a_fifo_after_the_check_is_still_refused(share: Path) -> None:
    """The type is checked on the opened descriptor: a FIFO put in place does not block."""
    fifo = share / "Channel/Offer/wf-1/swapped.txt"
    os.mkfifo(fifo)
    fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # (what open_share_fd does, in effect)
    os.close(fd)
    with pytest.raises(NotRegularFileError, match="a fifo"):
        open_regular(fifo)  # a path named on the command line: followed, but still checked


def test_delete_removes_the_file_that_was_sent_only(share: Path, state: Path) -> None:
    sent = identity(share / REL)
    (share / REL).rename(share / "Channel/Offer/wf-1/moved.txt")  # (its inode stays taken)
    (share / REL).write_text("a new file under the same name")
    with pytest.raises(NotRegularFileError, match="replaced"):
        delete_share_file(share, REL, sent, state)
    assert (share / REL).exists()
    delete_share_file(share, REL, identity(share / REL), state)
    assert not (share / REL).exists()


def test_delete_never_goes_through_a_link(share: Path, state: Path, tmp_path: Path) -> None:
    victim = tmp_path / "victim" / "wf-1"
    victim.mkdir(parents=True)
    (victim / "export.txt").write_text("not on the share")
    sent = identity(victim / "export.txt")
    (share / "Channel" / "Other").symlink_to(victim.parent)
    with pytest.raises(NotRegularFileError, match="symlink"):
        delete_share_file(share, "Channel/Other/wf-1/export.txt", sent, state)
    assert (victim / "export.txt").exists()


def test_archive_moves_the_file_below_the_archive(share: Path, state: Path) -> None:
    sent = identity(share / REL)
    archive = share / ".archive"
    archive_share_file(share, REL, sent, archive, state)
    assert not (share / REL).exists()
    assert (archive / REL).read_text() == "external_id\nu1\n"
    assert identity(archive / REL) == sent


def test_a_planted_link_in_the_archive_never_reaches_the_journal(share: Path, state: Path) -> None:
    """Issue 13: '.archive/Channel' -> the state directory moved an export onto the journal."""
    sent = identity(share / REL)
    archive = share / ".archive"
    archive.mkdir()
    (archive / "Channel").symlink_to(state)
    (state / "Offer").mkdir()
    (state / "Offer" / "wf-1").symlink_to(state)
    with pytest.raises(NotRegularFileError, match="symlink"):
        archive_share_file(share, REL, sent, archive, state)
    assert (state / "journal.sqlite").read_bytes() == b"the journal"
    assert (share / REL).exists()
    # '.archive' itself planted as a link: refused too (the default archive is in the share).
    (archive / "Channel").unlink()
    archive.rmdir()
    archive.symlink_to(state)
    with pytest.raises(NotRegularFileError, match="symlink"):
        archive_share_file(share, REL, sent, archive, state)
    assert (share / REL).exists()


def test_an_archive_inside_the_state_directory_is_refused(share: Path, state: Path) -> None:
    sent = identity(share / REL)
    with pytest.raises(NotRegularFileError, match="inside the state directory"):
        archive_share_file(share, REL, sent, state / "archive", state)
    assert (share / REL).exists()


def test_a_link_already_at_the_archive_target_is_replaced_not_followed(
    share: Path, state: Path, tmp_path: Path
) -> None:
    target = tmp_path / "precious.txt"
    target.write_text("keep me")
    archive = tmp_path / "archive"
    (archive / "Channel/Offer/wf-1").mkdir(parents=True)
    (archive / REL).symlink_to(target)
    archive_share_file(share, REL, identity(share / REL), archive, state)
    assert target.read_text() == "keep me"
    assert not (archive / REL).is_symlink()
    assert (archive / REL).read_text() == "external_id\nu1\n"
