"""Delta's savings per file, for `status` (issue 16): one JSON line per finished file in
<state_directory>/delta/files.jsonl, appended by the daemon (on the store's thread), read by
`status` (per file, and totals for the last 30 days). Lines older than KEEP_DAYS are dropped
when the daemon starts. A line cut short by a kill is skipped when read.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import orjson

FILE_NAME = "files.jsonl"
KEEP_DAYS = 90
TOTAL_DAYS = 30  # status's totals


@dataclass(frozen=True)
class FilePoints:
    record_id: int
    rel_path: str
    channel: str
    sent: int
    skipped: int
    finished_at: float


def _path(state_directory: Path) -> Path:
    from .deltastore import STORE_DIRECTORY  # (here: the status page imports this module)

    return Path(state_directory) / STORE_DIRECTORY / FILE_NAME


def append(state_directory: Path, entry: FilePoints) -> None:
    line = orjson.dumps(entry.__dict__) + b"\n"
    fd = os.open(_path(state_directory), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def parse(data: bytes) -> list[FilePoints]:
    entries = []
    for line in data.splitlines():
        try:
            entries.append(FilePoints(**orjson.loads(line)))
        except (orjson.JSONDecodeError, TypeError):
            continue  # cut short by a kill
    return entries


def read(state_directory: Path) -> list[FilePoints]:
    try:
        return parse(_path(state_directory).read_bytes())
    except FileNotFoundError:
        return []


class Follower:
    """files.jsonl read as it grows, for the status page: a call reads only the lines appended
    since the last one (the whole file again when prune replaced it) and keeps the files
    finished in the last `keep_s` seconds, so a page read every second costs an open, a stat
    and the new lines."""

    def __init__(self, state_directory: Path, keep_s: float) -> None:
        self.path = _path(state_directory)
        self.keep_s = keep_s
        self._identity: tuple[int, int] | None = None  # (device, inode) of the file read
        self._offset = 0  # just after the last whole line read
        self._points: dict[tuple[int, str], FilePoints] = {}
        self._pruned_at = 0.0

    def points(self, now_s: float) -> dict[tuple[int, str], FilePoints]:
        """(record id, path) -> the file's data points."""
        cutoff = now_s - self.keep_s
        try:
            with open(self.path, "rb") as file:
                stat = os.fstat(file.fileno())  # of the file read, even if replaced meanwhile
                if (stat.st_dev, stat.st_ino) != self._identity or stat.st_size < self._offset:
                    self._identity, self._offset = (stat.st_dev, stat.st_ino), 0
                    self._points = {}
                file.seek(self._offset)
                data = file.read(stat.st_size - self._offset)
        except FileNotFoundError:
            self._identity, self._offset, self._points = None, 0, {}
            return self._points
        whole = data.rfind(b"\n") + 1  # a line still being written is read next time
        self._offset += whole
        for entry in parse(data[:whole]):
            if entry.finished_at >= cutoff:
                self._points[(entry.record_id, entry.rel_path)] = entry
        if now_s - self._pruned_at > self.keep_s / 24:  # now and then: memory stays bounded
            self._pruned_at = now_s
            self._points = {k: e for k, e in self._points.items() if e.finished_at >= cutoff}
        return self._points


def prune(state_directory: Path, now_s: float | None = None) -> None:
    """Keep the last KEEP_DAYS (the daemon calls it at start, before appending)."""
    path = _path(state_directory)
    if not path.exists():
        return
    cutoff = (time.time() if now_s is None else now_s) - KEEP_DAYS * 86400
    kept = [e for e in read(state_directory) if e.finished_at >= cutoff]
    temporary = path.with_suffix(".tmp")
    temporary.write_bytes(b"".join(orjson.dumps(e.__dict__) + b"\n" for e in kept))
    os.replace(temporary, path)


def by_file(entries: list[FilePoints]) -> dict[tuple[int, str], FilePoints]:
    return {(e.record_id, e.rel_path): e for e in entries}


def recent_totals(
    entries: list[FilePoints], now_s: float, days: int = TOTAL_DAYS
) -> tuple[int, int]:
    """Data points (sent, skipped) of the files finished in the last `days` days."""
    cutoff = now_s - days * 86400
    recent = [e for e in entries if e.finished_at >= cutoff]
    return sum(e.sent for e in recent), sum(e.skipped for e in recent)
