"""Rejects and dropped-field files, beside each other under <state>/rejects/<relative path>.

`<rel>.rejects.csv` holds the original columns plus `_line` and `_reason`, so an operator can
fix the rows and drop the file back (columns starting with `_` are never mapped).
`<rel>.dropped.csv` lists the fields left out of rows that were sent, with line and reason.
"""

from __future__ import annotations

import csv
import os
import time
from pathlib import Path
from typing import IO, Any

from .mapping import Drop


class RejectsWriter:
    def __init__(self, root: Path, rel_path: str, header: list[str], fresh: bool) -> None:
        self.rejects_path = root / f"{rel_path}.rejects.csv"
        self.dropped_path = root / f"{rel_path}.dropped.csv"
        self._header = header
        self._handles: dict[Path, tuple[IO[str], Any]] = {}
        if fresh:  # a new send of this path: keep what an earlier send wrote, under another name
            stamp = time.strftime("%Y%m%dT%H%M%S")
            for path in (self.rejects_path, self.dropped_path):
                if path.exists():
                    path.rename(path.with_name(f"{path.name}.{stamp}"))

    def _writer(self, path: Path, header: list[str]) -> Any:
        entry = self._handles.get(path)
        if entry is None:
            path.parent.mkdir(parents=True, exist_ok=True)
            handle = open(path, "a", encoding="utf-8", newline="")  # noqa: SIM115 - kept open
            writer = csv.writer(handle)
            if handle.tell() == 0:
                writer.writerow(header)
            entry = self._handles[path] = (handle, writer)
        return entry[1]

    def reject(self, line_no: int, cells: list[str], reason: str) -> None:
        writer = self._writer(self.rejects_path, [*self._header, "_line", "_reason"])
        writer.writerow([*cells, line_no, reason])

    def drop(self, drop: Drop) -> None:
        writer = self._writer(self.dropped_path, ["_line", "field", "value", "reason"])
        writer.writerow([drop.line_no, drop.field, drop.value, drop.reason])

    def flush(self, durable: bool = True) -> None:
        """Written before a checkpoint covers these rows; fsynced too when `durable`."""
        for handle, _ in self._handles.values():
            handle.flush()
            if durable:
                os.fsync(handle.fileno())

    def close(self) -> None:
        self.flush()
        for handle, _ in self._handles.values():
            handle.close()
        self._handles.clear()
