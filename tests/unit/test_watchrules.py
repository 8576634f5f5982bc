"""Which observer suits a mount, which names and paths are exports, when a file has settled."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from rpi_braze_sync.watchrules import (
    ExportPath,
    Ignored,
    SettleTracker,
    choose_observer,
    classify_path,
    filesystem_of,
    is_ignored_name,
)

HOST_MOUNTS = r"""sysfs /sys sysfs rw,nosuid,nodev,noexec,relatime 0 0
proc /proc proc rw,nosuid,nodev,noexec,relatime 0 0
udev /dev devtmpfs rw,nosuid,relatime,size=8113652k,nr_inodes=2028413,mode=755,inode64 0 0
tmpfs /run tmpfs rw,nosuid,nodev,noexec,relatime,size=1628060k,mode=755,inode64 0 0
/dev/sda1 / ext4 rw,relatime,errors=remount-ro 0 0
tmpfs /tmp tmpfs rw,nosuid,nodev,size=4096000k,inode64 0 0
10.0.0.5:/exports/rpi /mnt/rpi nfs4 rw,relatime,vers=4.2,rsize=1048576,wsize=1048576,namlen=255,hard,proto=tcp,timeo=600,retrans=2,sec=sys,clientaddr=10.0.0.9,local_lock=none,addr=10.0.0.5 0 0
/dev/sdc1 /mnt/rpi/local xfs rw,relatime,attr2,inode64,logbufs=8,logbsize=32k,noquota 0 0
//fileserver/RPI\040Exports /mnt/rpi\040share cifs rw,relatime,vers=3.1.1,cache=strict,username=svc_rpi,uid=0,noforceuid,gid=0,noforcegid,addr=10.0.0.6,file_mode=0755,dir_mode=0755,soft,nounix,serverino,mapposix,rsize=4194304,wsize=4194304,bsize=1048576,echo_interval=60,actimeo=1 0 0
svc@sftp.example.com:/exports /mnt/sftp fuse.sshfs rw,nosuid,nodev,relatime,user_id=0,group_id=0 0 0
"""

CONTAINER_MOUNTS = r"""overlay / overlay rw,relatime,lowerdir=/var/lib/docker/overlay2/l/Q3ZP:/var/lib/docker/overlay2/l/7KCD,upperdir=/var/lib/docker/overlay2/4f1e/diff,workdir=/var/lib/docker/overlay2/4f1e/work 0 0
proc /proc proc rw,nosuid,nodev,noexec,relatime 0 0
tmpfs /dev tmpfs rw,nosuid,size=65536k,mode=755,inode64 0 0
shm /dev/shm tmpfs rw,nosuid,nodev,noexec,relatime,size=65536k,inode64 0 0
/dev/sda1 /etc/hosts ext4 rw,relatime,errors=remount-ro 0 0
10.0.0.5:/exports/rpi /data/rpi nfs rw,relatime,vers=3,rsize=1048576,wsize=1048576,namlen=255,hard,proto=tcp,timeo=600,retrans=2,sec=sys,mountaddr=10.0.0.5,mountvers=3,mountport=20048,mountproto=udp,local_lock=none,addr=10.0.0.5 0 0
"""

HOST_CASES = [
    ("/", "ext4", "native"),
    ("/var/exports/email", "ext4", "native"),
    ("/mnt/rpi", "nfs4", "polling"),
    ("/mnt/rpi/", "nfs4", "polling"),
    ("/mnt/rpi/email/Offer1/WF-7/RPI_Export_1.txt", "nfs4", "polling"),
    ("/mnt/rpi2/email", "ext4", "native"),  # /mnt/rpi2 is not inside /mnt/rpi
    ("/mnt/rpi/local/email", "xfs", "native"),  # the longest mount point wins
    ("/mnt/rpi/localx", "nfs4", "polling"),
    ("/mnt/rpi share/email", "cifs", "polling"),  # \040 in the table is a space
    ("/mnt/rpi\\040share/email", "ext4", "native"),  # an escaped path is not the share
    ("/mnt/sftp/in", "fuse.sshfs", "polling"),
    ("/tmp/rpi-test", "tmpfs", "native"),
    ("/run", "tmpfs", "native"),
]
CONTAINER_CASES = [
    ("/srv/exports", "overlay", "native"),
    ("/data/rpi/email", "nfs", "polling"),
    ("/data/rpix", "overlay", "native"),
    ("/etc/hosts.d/x", "overlay", "native"),
    ("/dev/shm/exports", "tmpfs", "native"),
]


def reversed_lines(table: str) -> str:
    return "\n".join(reversed(table.splitlines()))


@pytest.mark.parametrize("order", [lambda t: t, reversed_lines], ids=["listed", "reversed"])
@pytest.mark.parametrize(
    ("mounts", "path", "fs_type", "observer"),
    [(HOST_MOUNTS, *case) for case in HOST_CASES]
    + [(CONTAINER_MOUNTS, *case) for case in CONTAINER_CASES],
)
def test_filesystem_and_observer(
    order: Callable[[str], str], mounts: str, path: str, fs_type: str, observer: str
) -> None:
    table = order(mounts)
    assert filesystem_of(table, path) == fs_type
    assert choose_observer("auto", table, path) == observer


def test_a_later_mount_on_the_same_point_hides_the_earlier() -> None:
    stacked = HOST_MOUNTS + "10.0.0.7:/rpi /mnt/rpi/local nfs4 rw,relatime 0 0\n"
    assert filesystem_of(stacked, "/mnt/rpi/local/email") == "nfs4"


@pytest.mark.parametrize("mounts", ["", "\n\n", "garbage\nnone none\n"])
def test_no_usable_mount_table(mounts: str) -> None:
    assert filesystem_of(mounts, "/mnt/rpi") is None
    assert choose_observer("auto", mounts, "/mnt/rpi") == "native"


@pytest.mark.parametrize(
    ("setting", "path"),
    [("native", "/mnt/rpi/email"), ("polling", "/var/exports"), ("polling", "/mnt/rpi")],
)
def test_forced_observer_passes_through(setting: str, path: str) -> None:
    assert choose_observer(setting, HOST_MOUNTS, path) == setting


@pytest.mark.parametrize(
    ("name", "ignored"),
    [
        (".hidden", True),
        (".RPI_Export_1.txt.swp", True),
        ("x.tmp", True),
        ("x.part", True),
        ("~lock", True),
        ("RPI_Export_1.txt~", True),
        ("RPI_Export_1.txt_summary.xml", True),
        ("RPI_Export_1.txt_summary.json", True),
        ("RPI_Export_1.txt_sample", True),
        ("RPI_Export_1.TXT_SUMMARY.XML", True),
        ("RPI_Export_1.txt", False),
        ("data.csv.gz", False),
        ("data.csv", False),
        ("summary.csv", False),
        ("weekly_summary.csv", False),
        ("RPI_Export_1.txt_summary.txt", True),
        ("RPI_Export_1.txt.tmpl", False),
    ],
)
def test_is_ignored_name(name: str, ignored: bool) -> None:
    assert is_ignored_name(name) is ignored


PATTERN: list[str | None] = ["channel", "offer", "workflow_id"]
CHANNELS = {"email", "sms"}


@pytest.mark.parametrize(
    ("rel_path", "expected"),
    [
        (
            "email/Offer42/WF-1001/RPI_Export_1.txt",
            ExportPath(
                "email",
                {
                    "channel": "email",
                    "offer": "Offer42",
                    "workflow_id": "WF-1001",
                    "file_name": "RPI_Export_1.txt",
                },
            ),
        ),
        (
            "sms/Spring Sale/77/export.csv",
            ExportPath(
                "sms",
                {
                    "channel": "sms",
                    "offer": "Spring Sale",
                    "workflow_id": "77",
                    "file_name": "export.csv",
                },
            ),
        ),
        ("email/Offer42/RPI_Export_1.txt", Ignored("layout")),
        ("email/Offer42/WF-1001/extra/RPI_Export_1.txt", Ignored("layout")),
        ("RPI_Export_1.txt", Ignored("layout")),
        ("push/Offer42/WF-1001/RPI_Export_1.txt", Ignored("channel")),
        ("Email/Offer42/WF-1001/RPI_Export_1.txt", Ignored("channel")),
    ],
)
def test_classify_path(rel_path: str, expected: ExportPath | Ignored) -> None:
    assert classify_path(rel_path, PATTERN, CHANNELS) == expected


def test_classify_path_skips_unnamed_parts() -> None:
    result = classify_path("2026/email/WF-9/x.txt", [None, "channel", "workflow_id"], CHANNELS)
    assert result == ExportPath(
        "email", {"channel": "email", "workflow_id": "WF-9", "file_name": "x.txt"}
    )


def test_settle_only_after_settle_s_without_change() -> None:
    tracker = SettleTracker(5.0)
    tracker.observe("a", 10, 100, now=0.0)
    assert "a" in tracker
    assert tracker.due(4.9) == []
    tracker.observe("a", 10, 100, now=3.0)  # unchanged: the clock keeps running
    assert tracker.due(5.0) == [("a", 10, 100)]
    assert "a" not in tracker  # due() hands it out once
    assert tracker.due(100.0) == []


@pytest.mark.parametrize(("size", "mtime"), [(20, 100), (10, 101), (20, 101)])
def test_a_change_restarts_the_clock(size: int, mtime: int) -> None:
    tracker = SettleTracker(5.0)
    tracker.observe("a", 10, 100, now=0.0)
    tracker.observe("a", size, mtime, now=3.0)
    assert tracker.due(7.5) == []
    assert tracker.due(8.0) == [("a", size, mtime)]


def test_shorten_settles_sooner_but_never_later() -> None:
    tracker = SettleTracker(5.0)
    tracker.observe("a", 10, 100, now=0.0)
    tracker.observe("b", 10, 100, now=0.0)
    tracker.shorten("a", 1.0, now=2.0)  # due at 3.0 instead of 5.0
    tracker.shorten("b", 30.0, now=2.0)  # a longer hint changes nothing
    tracker.shorten("unknown", 1.0, now=2.0)
    assert tracker.paths() == ["a", "b"]
    assert tracker.due(2.9) == []
    assert tracker.due(3.0) == [("a", 10, 100)]
    assert tracker.due(4.9) == []
    assert tracker.due(5.0) == [("b", 10, 100)]


def test_a_change_after_shorten_needs_the_full_settle_time() -> None:
    tracker = SettleTracker(5.0)
    tracker.observe("a", 10, 100, now=0.0)
    tracker.shorten("a", 0.0, now=1.0)
    tracker.observe("a", 11, 100, now=1.0)
    assert tracker.due(5.5) == []
    assert tracker.due(6.0) == [("a", 11, 100)]


def test_forget_and_len() -> None:
    tracker = SettleTracker(1.0)
    for n, path in enumerate(["a", "b", "c"]):
        tracker.observe(path, n, n, now=0.0)
    assert len(tracker) == 3
    tracker.forget("b")
    tracker.forget("never-seen")
    assert len(tracker) == 2
    assert "b" not in tracker
    assert tracker.due(1.0) == [("a", 0, 0), ("c", 2, 2)]
    assert len(tracker) == 0


LATIN1_NAME = b"caf\xe9".decode("utf-8", "surrogateescape")  # as os.fsdecode gives it


@pytest.mark.parametrize(
    ("values", "used", "execution_id", "sent", "warnings"),
    [
        # UTF-8 parts go as they are; no call: no execution id.
        ({"brand": "café"}, frozenset({"brand"}), None, {"brand": "café"}, []),
        # A part that is not UTF-8, sent by the mapping: decoded with the fallback, said so.
        (
            {"brand": LATIN1_NAME},
            frozenset({"brand"}),
            None,
            {"brand": "café"},
            ["{brand} is not valid UTF-8: sent as 'café'"],
        ),
        # ... not sent by the mapping: decoded all the same, not worth a word.
        ({"brand": LATIN1_NAME}, frozenset(), None, {"brand": "café"}, []),
        # RPI's call for the file names its execution.
        (
            {"brand": "x"},
            frozenset(),
            "4711",
            {"brand": "x", "rpi_channel_execution_id": "4711"},
            [],
        ),
    ],
)
def test_sendable_values(
    values: dict[str, str],
    used: frozenset[str],
    execution_id: str | None,
    sent: dict[str, str],
    warnings: list[str],
) -> None:
    export = ExportPath("ch", values)
    assert export.sendable_values("latin-1", used, execution_id) == (sent, warnings)
    assert export.values == values  # (the watcher's copy is not changed)
