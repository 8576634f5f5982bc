"""Rejects and dropped-field files, beside each other under <state>/rejects/<relative path>.

`<rel>.rejects.csv` holds the original columns plus `_line` and `_reason`, so an operator can
fix the rows and drop the file back (columns starting with `_` are never mapped).
`<rel>.dropped.csv` lists the fields left out of rows that were sent, with line and reason.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .chunks import DropData


class RejectsWriter:
    """Rows are kept in memory as CSV text until they are written. A write that fails (a
    full disk, a read-only state directory) raises, and keeps every byte not written for the
    next write: the checkpoint that covers these rows waits for them (settlement.py).

    Two sides: `reject`, `drops` and `take` run on the event loop, which reads the file;
    `write`, `rewrite` and `close` in the state writer's thread (statewriter.py), one at a
    time, so that the loop never waits on the disk. `flush` is both, for one thread.
    """

    def __init__(self, root: Path, rel_path: str, header: list[str], fresh: bool) -> None:
        self.rejects_path = root / f"{rel_path}.rejects.csv"
        self.dropped_path = root / f"{rel_path}.dropped.csv"
        self._header = header
        # A new send of this path: what an earlier send wrote is kept under another name, at
        # the first flush (the first write to the state directory).
        self._set_aside = fresh
        self._texts: dict[Path, tuple[io.StringIO, Any]] = {}  # rows since the last flush
        self._unwritten: dict[Path, bytes] = {}  # encoded, not yet accepted by the OS
        self._fds: dict[Path, int] = {}

    def _writer(self, path: Path) -> Any:
        entry = self._texts.get(path)
        if entry is None:
            text = io.StringIO(newline="")
            entry = self._texts[path] = (text, csv.writer(text))
        return entry[1]

    def reject(self, line_no: int, cells: list[str], reason: str) -> None:
        self._writer(self.rejects_path).writerow(self._row(line_no, cells, reason))

    def _row(self, line_no: int, cells: list[str], reason: str) -> list[object]:
        """`_line` and `_reason` under their names whatever the row's width (a wrong width is
        a reason to reject): a short row padded with empty cells, a long row's surplus after
        them, kept, so that no line number is read as a value."""
        width = len(self._header)
        padding = [""] * (width - len(cells))
        return [*cells[:width], *padding, line_no, reason, *cells[width:]]

    def drops(self, rows: Iterable[DropData]) -> None:
        """Dropped fields, (line, field, value, reason) each, in one csv call."""
        self._writer(self.dropped_path).writerows(rows)

    def _header_of(self, path: Path) -> list[str]:
        if path == self.rejects_path:
            return [*self._header, "_line", "_reason"]
        return ["_line", "field", "value", "reason"]

    def _open(self, path: Path) -> int:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        if os.fstat(fd).st_size == 0:
            header = io.StringIO(newline="")
            csv.writer(header).writerow(self._header_of(path))
            self._unwritten[path] = header.getvalue().encode() + self._unwritten.get(path, b"")
        self._fds[path] = fd
        return fd

    @property
    def unwritten(self) -> bool:
        """Rows an earlier write could not write (read only while no write runs)."""
        return bool(self._unwritten)

    @property
    def opened(self) -> bool:
        """Whether a file was written, so a durable write has one to fsync (read only while
        no write runs)."""
        return bool(self._fds)

    def take(self) -> dict[Path, bytes]:
        """The rows since the last take, encoded, for `write` (the loop's side)."""
        taken = {}
        for path, (text, _) in self._texts.items():
            if text.tell():
                taken[path] = text.getvalue().encode()
                text.seek(0)
                text.truncate()
        return taken

    def write(self, taken: dict[Path, bytes], durable: bool = True) -> None:
        """Write rows taken (and any an earlier write could not), before a checkpoint covers
        them; fsynced too when `durable`. Raises OSError when the state directory cannot take
        them (they are kept for the next write)."""
        if self._set_aside:
            stamp = time.strftime("%Y%m%dT%H%M%S")
            for path in (self.rejects_path, self.dropped_path):
                if path.exists():
                    path.rename(path.with_name(f"{path.name}.{stamp}"))
            self._set_aside = False
        for path, data in taken.items():
            self._unwritten[path] = self._unwritten.get(path, b"") + data
        for path in list(self._unwritten):
            fd = self._fds.get(path)
            if fd is None:
                fd = self._open(path)
            data = self._unwritten[path]
            while data:
                data = data[os.write(fd, data) :]  # a short write, then the error: kept
                self._unwritten[path] = data
            del self._unwritten[path]
        if durable:
            for fd in self._fds.values():
                os.fsync(fd)

    def flush(self, durable: bool = True) -> None:
        """take, then write, on one thread."""
        self.write(self.take(), durable)

    def rewrite(self, rows: list[tuple[int, list[str], str]]) -> None:
        """Replace the rejects file with these (line, cells, reason) rows, in line order: a
        pair's shared journal holds the rows both daemons rejected. Raises OSError (kept as
        it was)."""
        text = io.StringIO(newline="")
        writer = csv.writer(text)
        writer.writerow(self._header_of(self.rejects_path))
        for line_no, cells, reason in sorted(rows, key=lambda row: row[0]):
            writer.writerow(self._row(line_no, cells, reason))
        self.rejects_path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.rejects_path.with_name(self.rejects_path.name + ".tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o640)
        try:
            data = text.getvalue().encode()
            while data:
                data = data[os.write(fd, data) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, self.rejects_path)
        old = self._fds.pop(self.rejects_path, None)
        if old is not None:
            os.close(old)

    def close(self, taken: dict[Path, bytes] | None = None) -> None:
        """Write what can be (`taken`, or else what `take` gives: one thread); rows that
        cannot be written are not covered by a checkpoint, so the next send of the file
        rejects them again."""
        with contextlib.suppress(OSError):
            self.write(self.take() if taken is None else taken)
        for fd in self._fds.values():
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fds.clear()
