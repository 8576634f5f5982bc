"""Pure decisions of the watcher: which paths are exports, which observer suits a mount, and
when a file has settled. The watcher (watch.py) feeds these with what it reads from disk.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Filesystems whose writes by another host inotify cannot see: poll them.
NETWORK_FILESYSTEMS = frozenset(
    {
        "nfs", "nfs4", "cifs", "smb3", "smbfs", "fuse.sshfs", "sshfs", "9p", "afs", "ceph",
        "glusterfs", "fuse.glusterfs", "fuse.s3fs", "fuse.rclone", "davfs", "fuse.davfs2",
        "lustre", "gpfs", "beegfs", "fuse.ceph", "ocfs2", "gfs2", "virtiofs", "vboxsf",
        "fuse.vmhgfs-fuse",
    }
)  # fmt: skip
# RPI writes RPI_Export_1.txt_summary.xml and RPI_Export_1.txt_sample beside an export: the
# export's own extension comes before the suffix (weekly_summary.csv is an export).
_SIDECAR = re.compile(r"\.[A-Za-z0-9]+_(summary|sample)(\.[A-Za-z0-9]+)?$", re.IGNORECASE)
_OCTAL_ESCAPE = re.compile(r"\\([0-7]{3})")


def _unescape_mount_path(text: str) -> str:
    return _OCTAL_ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), text)


def filesystem_of(mounts: str, path: str) -> str | None:
    """The filesystem type of the longest mount point that holds `path` (/proc/self/mounts)."""
    best, best_type = "", None
    for line in mounts.splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        point = _unescape_mount_path(fields[1]).rstrip("/") or "/"
        inside = point == "/" or path == point or path.startswith(point + "/")
        if inside and len(point) >= len(best):
            best, best_type = point, fields[2]
    return best_type


def choose_observer(setting: str, mounts: str, path: str) -> str:
    """'native' or 'polling'. In 'auto', poll network filesystems: inotify misses their writes."""
    if setting != "auto":
        return setting
    fs_type = filesystem_of(mounts, path)
    return "polling" if fs_type in NETWORK_FILESYSTEMS else "native"


def is_ignored_name(name: str) -> bool:
    """Hidden, temporary and RPI sidecar files are never exports."""
    return (
        name.startswith((".", "~"))
        or name.endswith((".tmp", ".part", "~"))
        or bool(_SIDECAR.search(name))
    )


def sendable_text(name: str, fallback: str | None) -> str | None:
    """A folder or file name that is not UTF-8 (os.fsdecode keeps its bytes as surrogates, which
    no JSON can carry) as text a mapping can send: decoded with the format's fallback
    encoding when that works, else its odd bytes written as \\xNN. None: `name` is fine."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raw = name.encode("utf-8", "surrogateescape")
        try:
            return raw.decode(fallback or "utf-8")
        except (UnicodeDecodeError, LookupError):
            return raw.decode("utf-8", "backslashreplace")
    return None


@dataclass(frozen=True)
class ExportPath:
    channel: str
    values: dict[str, str]  # every named part of the path pattern, plus file_name

    def sendable_values(
        self, fallback: str | None, used: frozenset[str], execution_id: str | None
    ) -> tuple[dict[str, str], list[str]]:
        """The values a mapping gets from the path (`execution_id`: RPI's post-execution
        call for this file said so), and warnings: a part that is not UTF-8 is sent as
        sendable_text, said only when the mapping sends it (`used`)."""
        values, warnings = dict(self.values), []
        for key, value in self.values.items():
            text = sendable_text(value, fallback)
            if text is not None:
                if key in used:
                    warnings.append(f"{{{key}}} is not valid UTF-8: sent as '{text}'")
                values[key] = text
        if execution_id is not None:
            values["rpi_channel_execution_id"] = execution_id
        return values, warnings


@dataclass(frozen=True)
class Ignored:
    reason: str  # bounded set, used as a metric label: "layout", "channel"


def classify_path(
    rel_path: str, pattern: list[str | None], channels: set[str]
) -> ExportPath | Ignored:
    """'<channel>/<offer>/<workflow id>/<file>' -> its parts; anything else is ignored."""
    parts = rel_path.split("/")
    if len(parts) != len(pattern) + 1:
        return Ignored("layout")
    values = {name: part for name, part in zip(pattern, parts, strict=False) if name}
    values["file_name"] = parts[-1]
    channel = values.get("channel", "")
    if channel not in channels:
        return Ignored("channel")
    return ExportPath(channel, values)


class SettleTracker:
    """A file is complete once its size and mtime have not changed for `settle_s`."""

    def __init__(self, settle_s: float) -> None:
        self.settle_s = settle_s
        self._seen: dict[str, tuple[int, int, float]] = {}  # path -> size, mtime, stable since

    def __contains__(self, path: str) -> bool:
        return path in self._seen

    def __len__(self) -> int:
        return len(self._seen)

    def paths(self) -> list[str]:
        return list(self._seen)

    def observe(self, path: str, size: int, mtime_ns: int, now: float) -> None:
        previous = self._seen.get(path)
        if previous is None or previous[:2] != (size, mtime_ns):
            self._seen[path] = (size, mtime_ns, now)

    def forget(self, path: str) -> None:
        self._seen.pop(path, None)

    def shorten(self, path: str, settle_s: float, now: float) -> None:
        """A hint (the RPI post-execution call) that the file is finished: settle sooner."""
        entry = self._seen.get(path)
        if entry is not None:
            size, mtime, since = entry
            self._seen[path] = (size, mtime, min(since, now - self.settle_s + settle_s))

    def next_due_in(self, now: float) -> float | None:
        """Seconds until the next file could be complete, if nothing changes; None if none."""
        if not self._seen:
            return None
        return max(0.0, min(since for _, _, since in self._seen.values()) + self.settle_s - now)

    def due(self, now: float) -> list[tuple[str, int, int]]:
        """Files stable for long enough, removed from tracking: (path, size, mtime_ns)."""
        ready = [
            (p, s, m) for p, (s, m, since) in self._seen.items() if now - since >= self.settle_s
        ]
        for path, _, _ in ready:
            del self._seen[path]
        return ready
