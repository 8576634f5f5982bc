"""The lines of an export as the reader hands them to csv, none longer than
format.max_record_bytes and no record either; the records they make, and why a record is
rejected unread (reader.py reads the file through these).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO

from .errors import RecordTooLongError

# A line longer than format.max_record_bytes is not read: the reader hands csv this line in
# its place, and the record that holds it is rejected with the line's number.
TOO_LONG_PLACEHOLDER = "\ue000"


def _line_end(line: str) -> str:
    if line.endswith("\r\n"):
        return "\r\n"
    return line[-1] if line.endswith(("\n", "\r")) else ""


class BoundedLines:
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
class CsvRecord:
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
