"""PURE: count an export's data records from its text, a chunk at a time, as csv.reader splits
them (quoted newlines inside a record, blank lines skipped), while the inspection reads it.

Counted by line and quote parity rather than by parsing: a line with an odd number of quote
characters opens or closes a quoted field across lines. That is exact for CSV whose quotes
start fields (RFC 4180, what RPI writes). A stray quote inside an unquoted field (csv.reader
takes it literally) can make the count wrong; the file is still read by csv.reader, and only
the total in progress lines is off.
"""

from __future__ import annotations

from itertools import repeat

_BLANK = ("", "\r")  # a blank line (LF or CRLF): csv.reader yields no record for it


class RecordCounter:
    """Feed decoded text in order, then `finish()`: the data records after the header."""

    def __init__(self, quote_char: str = '"', skip_lines: int = 0) -> None:
        self._quote = quote_char
        self._skip = skip_lines  # physical lines before the header, not CSV records
        self._carry = ""  # the last line, not yet ended
        self._in_quote = False  # inside a quoted field that spans lines
        self._records = 0  # records ended so far, the header included

    def feed(self, text: str) -> None:
        if "\r" in text and text.count("\r") != text.count("\r\n"):
            # Lone CRs end lines too, for csv.reader as for readline (old Mac files). A CRLF
            # cut between two chunks lands here as well and becomes a blank line: harmless.
            text = text.replace("\r\n", "\n").replace("\r", "\n")
        text = self._carry + text
        cut = text.rfind("\n")
        if cut < 0:
            self._carry = text
            return
        self._carry = text[cut + 1 :]
        complete = text[:cut]
        lines = complete.split("\n")
        if self._skip:
            skipped = min(self._skip, len(lines))
            del lines[:skipped]
            self._skip -= skipped
        quote = self._quote
        if self._in_quote or quote in complete:
            counts = list(map(str.count, lines, repeat(quote)))
            if self._in_quote or any(count & 1 for count in counts):
                self._count_spanning(lines, counts)
                return
        # No quoted field spans a line here: every line that is not blank is a record.
        self._records += len(lines) - lines.count(_BLANK[0]) - lines.count(_BLANK[1])

    def _count_spanning(self, lines: list[str], counts: list[int]) -> None:
        """Line by line, for text where a quoted field goes on across lines."""
        in_quote, records = self._in_quote, 0
        for line, count in zip(lines, counts, strict=True):
            if in_quote:
                if count & 1:  # the quoted field closes on this line: the record may end here
                    in_quote = False
                    records += 1
            elif count & 1:
                in_quote = True  # a quoted field opens and goes on to the next line
            elif line not in _BLANK:
                records += 1
        self._in_quote, self._records = in_quote, self._records + records

    def finish(self) -> int:
        """Data records: those after the header (a last line without a line end counts)."""
        last = self._carry
        if self._skip == 0 and (self._in_quote or last not in _BLANK):
            self._records += 1
        self._carry = ""
        return max(0, self._records - 1)
