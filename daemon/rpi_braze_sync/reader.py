"""Streaming CSV reading of export files, after their inspection (inspection.py): quoted
fields, CRLF, BOMs, gzip, from a given record on, a chunk at a time.

Blocking I/O: the pipeline runs these functions in a worker thread or the mapping process.
Memory stays flat: a file is read in chunks, never whole, and no line nor record longer than
format.max_record_bytes is ever held (a longer line is rejected with its number).
"""

from __future__ import annotations

import csv
import io
import os
import re
from bisect import bisect_right
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING

from .errors import (
    ExportFileError,
    FileChangedError,
    FileVanishedError,
    RecordTooLongError,
    ShareUnavailableError,
)
from .inspection import (
    FileInspection,
    open_stream,
    read_line_bounded,
    share_available,
)
from .shareio import open_regular

if TYPE_CHECKING:
    from .plan import ReadFormat, RecordCount

csv.field_size_limit(16 << 20)  # a long cell is a value to reject, not a reason to stop reading
# A line longer than format.max_record_bytes is not read: the reader hands csv this line in
# its place, and the record that holds it is rejected with the line's number.
TOO_LONG_PLACEHOLDER = "\ue000"
# A chunk of records ends at this many characters read, whatever its number of rows, so that a
# file of long rows does not hold CHUNK_ROWS of them at once.
CHUNK_CHARS = 1 << 20


def _line_end(line: str) -> str:
    if line.endswith("\r\n"):
        return "\r\n"
    return line[-1] if line.endswith(("\n", "\r")) else ""


class _BoundedLines:
    """The lines csv.reader parses, none longer than the limit, and no record either.

    A line over the limit is read in pieces and dropped; csv gets TOO_LONG_PLACEHOLDER in its
    place and `replaced` notes its line number, so the record that holds it is rejected. A
    record that grows over the limit across lines (quoted line ends) stops the file: where it
    ends cannot be known without holding it. `total` counts characters handed to csv; the
    reader sets `record_start` as each record ends. `exhausted`: the end of the file was
    reached; csv asks for a line past it only inside a quoted field left open."""

    __slots__ = ("_text", "exhausted", "first_line", "limit", "record_start", "replaced", "total")

    def __init__(self, text: IO[str], limit: int, first_line: int) -> None:
        self._text = text
        self.limit = limit
        self.first_line = first_line  # the physical line number of the first line handed over
        self.replaced: list[int] = []
        self.record_start = 0
        self.total = 0
        self.exhausted = False

    def __iter__(self) -> Iterator[str]:
        readline, limit = self._text.readline, self.limit
        quarter = limit // 4  # a line of fewer characters cannot have more bytes than `limit`
        line_no = self.first_line - 1
        while line := readline(limit + 1):
            line_no += 1
            size = len(line)
            if size > quarter and (
                size > limit or len(line.encode("utf-8", "surrogatepass")) > limit
            ):
                if size > limit and not line.endswith(("\n", "\r")):
                    while (rest := readline(limit + 1)) and not rest.endswith(("\n", "\r")):
                        pass
                    line = rest
                self.replaced.append(line_no)
                line = TOO_LONG_PLACEHOLDER + _line_end(line)
                size = len(line)
            self.total += size
            if self.total - self.record_start > limit:
                raise RecordTooLongError(
                    f"line {line_no}: a record that goes on over several lines is longer than"
                    f" format.max_record_bytes ({limit:,} bytes)"
                )
            yield line
        self.exhausted = True


@dataclass(frozen=True, slots=True)
class Record:
    index: int  # 0-based position among the data rows; checkpoints count these
    line_no: int  # physical line where the record starts, 1-based, as an editor shows it
    cells: list[str]
    unread: str | None = None  # why the record cannot be read as it is (to reject), if so


@dataclass(frozen=True, slots=True)
class RecordBatch:
    """Consecutive records: indexes first_index, first_index + 1, ..."""

    first_index: int
    line_numbers: list[int]
    rows: list[list[str]]
    at_end: bool = False  # the file has no records after these
    # Records to reject before mapping, (position in `rows`, reason): over the size limit
    # (cells never read) or cut off inside a quoted field at the end of the file.
    unread: tuple[tuple[int, str], ...] = ()


def unclosed_quote_reason(line_no: int) -> str:
    return (
        f"line {line_no}: quoted field not closed before end of file (the file may be cut"
        " short); fix the export (close the quote) and send the row again"
    )


def too_long_reason(line_no: int, limit: int) -> str:
    return (
        f"line {line_no} is longer than format.max_record_bytes ({limit:,} bytes): not read;"
        " fix that line of the export (or raise the limit) and send the row again"
    )


class ExportReader:
    """Header first, then records from `start_index` on; a context manager that owns the file.

    `base`: the share the file is in (opened through shareio, never through a link); None for
    a file named on the command line."""

    def __init__(
        self,
        path: Path,
        inspection: FileInspection,
        fmt: ReadFormat,
        start_index: int = 0,
        base: Path | None = None,
    ) -> None:
        raw = open_regular(path, base)
        try:
            st = os.fstat(raw.fileno())
            if inspection.identity != (0, 0) and (st.st_dev, st.st_ino) != inspection.identity:
                raise FileChangedError("the file was replaced by another one since it was checked")
            self._raw = open_stream(raw, inspection.size)
        except BaseException:
            raw.close()
            raise
        self._inspection = inspection
        self.max_record = fmt.max_record_bytes
        self._text = io.TextIOWrapper(self._raw, encoding=inspection.encoding, newline="")
        # Lines before the header (a template's title or record count), kept for the caller.
        self.preamble = [
            read_line_bounded(self._text, self.max_record)[0].rstrip("\r\n")
            for _ in range(fmt.skip_lines)
        ]
        self._line_offset = fmt.skip_lines
        self.records_read = 0  # data records seen so far, including those skipped on resume
        self._lines = _BoundedLines(self._text, self.max_record, fmt.skip_lines + 1)
        self._csv = csv.reader(
            self._lines, delimiter=inspection.delimiter, quotechar=fmt.quote_char, strict=False
        )
        self._start_index = start_index
        try:
            self.header: list[str] = self._read_header()
        except BaseException:
            self.close()
            raise
        self._lines.record_start = self._lines.total
        self._next_index = 0
        self._next_line = self._line_offset + self._csv.line_num + 1
        self._at_end = False

    def _read_header(self) -> list[str]:
        try:
            header = next(self._csv)
        except StopIteration:
            raise ExportFileError("the file is empty: no header row") from None
        except (csv.Error, UnicodeDecodeError) as exc:
            raise ExportFileError(
                f"line {self._line_offset + 1}: unreadable header: {exc}"
            ) from None
        if self._lines.replaced:
            raise ExportFileError(
                f"line {self._lines.replaced[0]}: the header is longer than"
                f" format.max_record_bytes ({self.max_record:,} bytes); nothing was sent"
            )
        if not any(cell.strip() for cell in header):
            raise ExportFileError(f"line {self._line_offset + 1}: the header row is empty")
        return header

    def take(self, limit: int) -> list[Record]:
        """Up to `limit` records from where the last call stopped; [] at the end of the file."""
        batch = self.take_batch(limit)
        first = batch.first_index
        unread = dict(batch.unread)
        return [
            Record(first + i, line_no, cells, unread.get(i))
            for i, (line_no, cells) in enumerate(zip(batch.line_numbers, batch.rows, strict=True))
        ]

    def take_batch(self, limit: int, max_chars: int = CHUNK_CHARS) -> RecordBatch:
        """`take` as columns, for the hot path: one tight loop (no generator, no per-row
        attribute look-ups beyond the bounds', no object per record). Stops after `limit`
        records or `max_chars` characters read, whichever comes first."""
        rows: list[list[str]] = []
        line_numbers: list[int] = []
        keep_row, keep_line = rows.append, line_numbers.append
        reader, lines = self._csv, self._lines
        offset = self._line_offset
        index, start, line_no = self._next_index, self._start_index, self._next_line
        replaced_before = len(lines.replaced)
        unclosed = -1  # position in `rows` of a record the end of the file cut off
        chars_end = lines.total + max_chars
        at_end = self._at_end
        try:
            if not at_end:
                for cells in reader:
                    if cells:  # a blank line is no record
                        if index >= start:
                            if lines.exhausted:  # csv ran into the end inside quotes
                                unclosed = len(rows)
                            keep_row(cells)
                            keep_line(line_no)
                        index += 1
                    line_no = offset + reader.line_num + 1
                    lines.record_start = total = lines.total
                    if len(rows) >= limit or total >= chars_end:
                        break
                else:
                    at_end = True
        except csv.Error as exc:
            raise ExportFileError(f"line {line_no}: malformed CSV: {exc}") from None
        except UnicodeDecodeError:
            raise FileChangedError(
                f"line {line_no}: bytes that were valid when checked are not any more: "
                "the file changed while being sent"
            ) from None
        except OSError as exc:
            raise ShareUnavailableError(f"line {line_no}: read failed: {exc.strerror}") from None
        finally:
            self._next_index, self._next_line = index, line_no
            self.records_read = index
            self._at_end = at_end
        unread: dict[int, str] = {}
        if len(lines.replaced) > replaced_before:
            # The record that holds a replaced line is the last one starting at or before it.
            found = {bisect_right(line_numbers, n) - 1 for n in lines.replaced[replaced_before:]}
            limit_bytes = self.max_record
            unread = {i: too_long_reason(line_numbers[i], limit_bytes) for i in found if i >= 0}
            for i in unread:  # cells never read: a blank row goes to the rejects file
                rows[i] = [""] * len(self.header)
            del lines.replaced[:]
        if unclosed >= 0:
            unread.setdefault(unclosed, unclosed_quote_reason(line_numbers[unclosed]))
        # Records from `start` on are kept without a gap, the last one just before `index`.
        first = index - len(rows)
        return RecordBatch(first, line_numbers, rows, at_end, tuple(sorted(unread.items())))

    def progress(self) -> float:
        """Share of the file's bytes read so far (read-ahead makes it a little early)."""
        try:
            position = os.lseek(self._raw.fileno(), 0, os.SEEK_CUR)
        except OSError:
            return 0.0
        return min(1.0, position / self._inspection.size) if self._inspection.size else 1.0

    def stated_count(self, spec: RecordCount) -> int:
        """The record count the file's preamble states; ExportFileError if it states none."""
        line = self.preamble[spec.line - 1] if spec.line <= len(self.preamble) else ""
        found = re.search(spec.pattern, line)
        if found is None:
            raise ExportFileError(
                f"line {spec.line}: no record count matching {spec.pattern!r} in {line[:80]!r};"
                " nothing was sent"
            )
        return int(found.group(1))

    def verify_source(self, path: Path, base: Path) -> None:
        """Between chunks: the file must still be the one inspected. Growth is allowed (only the
        inspected bytes are read); shrinking, rewriting, replacing or deleting it is not."""
        size, mtime = self._inspection.size, self._inspection.mtime_ns
        st = os.fstat(self._raw.fileno())
        if st.st_size < size:
            raise FileChangedError(f"the file shrank from {size} to {st.st_size} bytes")
        if st.st_size == size and st.st_mtime_ns != mtime:
            raise FileChangedError("the file was rewritten in place")
        try:
            on_disk = os.stat(path, follow_symlinks=False)  # a link put in its place is not it
        except FileNotFoundError:
            if not share_available(base):
                raise ShareUnavailableError(f"{base} is not available") from None
            raise FileVanishedError("the file was deleted") from None
        except OSError as exc:
            raise ShareUnavailableError(f"cannot stat the file: {exc.strerror}") from None
        if (on_disk.st_dev, on_disk.st_ino) != (st.st_dev, st.st_ino):
            raise FileChangedError("the file was replaced by another one")

    def close(self) -> None:
        self._text.close()

    def __enter__(self) -> ExportReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
