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
from pathlib import Path
from typing import TYPE_CHECKING

from .boundedlines import (
    BoundedLines,
    CsvRecord,
    RecordBatch,
    too_long_reason,
    unclosed_quote_reason,
)
from .errors import (
    ExportFileError,
    FileChangedError,
    FileVanishedError,
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

FIELD_SIZE_LIMIT = 16 << 20
csv.field_size_limit(FIELD_SIZE_LIMIT)  # a long cell is a value to reject, not a reason to stop
# A chunk of records ends at this many characters read, whatever its number of rows, so that a
# file of long rows does not hold CHUNK_ROWS of them at once.
CHUNK_CHARS = 1 << 20
_LINE_ENDS = ("\r\n", "\n", "\r")  # a blank line: csv yields no record for it
# Handing csv one line at a time costs more than letting it read them: when more than this
# share of a batch's lines hold a quote (a file with every field quoted), csv reads the next
# CSV_BATCHES batches itself; then lines are split again, and the share measured again.
SPLIT_UNTIL = 0.6
CSV_BATCHES = 64


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
        self._lines = BoundedLines(self._text, self.max_record, fmt.skip_lines + 1)
        self._line_source = iter(self._lines)
        # Lines handed to csv by take_batch; csv reads on from the file itself while a quoted
        # field goes on across lines.
        self._pending: list[str] = []
        self._csv = csv.reader(
            self._csv_lines(), delimiter=inspection.delimiter, quotechar=fmt.quote_char,
            strict=False,
        )  # fmt: skip
        # A line without the quote character is split at the delimiter, which is what csv
        # makes of it (a property test holds them equal) for less (an export without quotes
        # is read in three quarters of the time); a line with one goes through csv. csv reads
        # every line where a cell could pass its field size limit, or the delimiter is no
        # plain one.
        delimiter = inspection.delimiter
        plain = (
            self.max_record <= FIELD_SIZE_LIMIT
            and len(delimiter) == 1
            and delimiter not in ("\r", "\n", fmt.quote_char)
        )
        self._quote = fmt.quote_char
        self._csv_batches = 0 if plain else -1  # batches csv reads alone; -1: all of them
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

    def _csv_lines(self) -> Iterator[str]:
        """What csv reads: the line take_batch hands it, then, while that record's quoted
        field goes on, the next lines of the file (the header: the file's first line)."""
        pending, source = self._pending, self._line_source
        while True:
            if pending:
                yield pending.pop()
            else:
                line = next(source, None)
                if line is None:
                    return
                yield line

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

    def take(self, limit: int) -> list[CsvRecord]:
        """Up to `limit` records from where the last call stopped; [] at the end of the file."""
        batch = self.take_batch(limit)
        first = batch.first_index
        unread = dict(batch.unread)
        return [
            CsvRecord(first + i, line_no, cells, unread.get(i))
            for i, (line_no, cells) in enumerate(zip(batch.line_numbers, batch.rows, strict=True))
        ]

    def take_batch(self, limit: int, max_chars: int = CHUNK_CHARS) -> RecordBatch:
        """`take` as columns, for the hot path: one tight loop over the file's lines (no
        object per record), csv only for lines with a quote. Stops after `limit` records or
        `max_chars` characters read, whichever comes first."""
        rows: list[list[str]] = []
        line_numbers: list[int] = []
        keep_row, keep_line = rows.append, line_numbers.append
        reader, lines, source, pending = self._csv, self._lines, self._line_source, self._pending
        quote, delimiter = self._quote, self._inspection.delimiter
        index, start, line_no = self._next_index, self._start_index, self._next_line
        first_line, quoted = line_no, 0
        split = self._csv_batches == 0
        replaced_before = len(lines.replaced)
        unclosed = -1  # position in `rows` of a record the end of the file cut off
        chars_end = lines.total + max_chars
        at_end = self._at_end
        try:
            if at_end:
                pass
            elif split:
                for line in source:
                    if quote not in line:
                        next_line = line_no + 1
                        cells = [] if line in _LINE_ENDS else line.rstrip("\r\n").split(delimiter)
                    else:
                        quoted += 1
                        pending.append(line)
                        before = reader.line_num
                        cells = next(reader, [])  # (csv makes a record of the line, at least)
                        next_line = line_no + reader.line_num - before
                    if cells:  # a blank line is no record
                        if index >= start:
                            if lines.exhausted:  # csv ran into the end inside quotes
                                unclosed = len(rows)
                            keep_row(cells)
                            keep_line(line_no)
                        index += 1
                    line_no = next_line
                    lines.record_start = total = lines.total
                    if len(rows) >= limit or total >= chars_end:
                        break
                else:
                    at_end = True
            else:  # csv reads every line (the same loop, csv fetching the lines)
                base = line_no - reader.line_num
                for cells in reader:
                    if cells:
                        if index >= start:
                            if lines.exhausted:
                                unclosed = len(rows)
                            keep_row(cells)
                            keep_line(line_no)
                        index += 1
                    line_no = base + reader.line_num
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
            if self._csv_batches > 0:
                self._csv_batches -= 1
            elif split and quoted > (line_no - first_line) * SPLIT_UNTIL:  # quotes all over
                self._csv_batches = CSV_BATCHES
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
