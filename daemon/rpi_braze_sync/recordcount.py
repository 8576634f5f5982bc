"""Pure: count an export's data records while the inspection reads it, as csv.reader splits
them (a quoted field may hold line ends; blank lines are no records).

Counted on bytes, a chunk at a time: in UTF-8 and the single-byte encodings, the bytes of
CR, LF and the quote character mean nothing else (reader.py feeds other encodings re-encoded
as UTF-8). A line with an odd number of quote characters opens or closes a quoted field that
goes on across lines: exact for CSV whose quotes start fields (RFC 4180, what RPI writes). A
stray quote inside an unquoted field, which csv.reader takes literally, or a lone CR in a
file of LF or CRLF line ends, can make the count wrong; the file is still read by csv.reader
and only the total shown in progress lines is off.

Memory is bounded whatever the file: of a line without an end (a file of one long line, a
gzip bomb) only its length and what counting needs are kept. A record that spans lines (a
quoted field with line ends) and grows over `max_record_bytes` is noted in `too_long`.
"""

from __future__ import annotations

from itertools import repeat

_BLANK = (b"", b"\r")  # a blank line (LF or CRLF): csv.reader yields no record for it
# An unended line longer than this is kept as a stand-in of the same quote parity.
CARRY_KEEP = 1 << 16


class RecordCounter:
    """Feed the file's bytes in order, then `finish()`: the data records after the header."""

    def __init__(
        self, quote_char: str = '"', skip_lines: int = 0, max_record_bytes: int | None = None
    ) -> None:
        encoded = quote_char.encode("utf-8")
        self._quote = encoded if len(encoded) == 1 else b""  # b"": quotes are not followed
        self._filler = b"y" if self._quote == b"x" else b"x"
        self._skip = skip_lines  # physical lines before the header, not CSV records
        self._carry = b""  # the last line, not yet ended
        self._carry_extra = 0  # bytes of that line no longer kept in _carry
        self._in_quote = False  # inside a quoted field that spans lines
        self._records = 0  # records ended so far, the header included
        self._lone_cr: bool | None = None  # old Mac line ends; decided at the first one
        self._limit = max_record_bytes
        self._lines = 0  # physical lines ended so far
        self._record_line = 0  # where the record spanning lines began
        self._record_bytes = 0  # its length so far
        self.too_long: tuple[int, int] | None = None  # (line, bytes) of the first over the limit

    def feed(self, data: bytes) -> None:
        if self._lone_cr is None:
            self._lone_cr = _lone_cr_line_ends(self._carry + data)
            if self._lone_cr:  # the carry holds CRs not yet taken as line ends
                data, self._carry = self._carry + data, b""
        if self._lone_cr:
            data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        lines = data.split(b"\n")
        if len(lines) == 1:
            self._carry += data
            self._bound_carry()
            return
        extra = self._carry_extra  # bytes of lines[0] no longer held
        lines[0] = self._carry + lines[0]
        self._carry, self._carry_extra = lines.pop(), 0
        self._bound_carry()
        first_line = self._lines + 1  # the physical line number of lines[0]
        self._lines += len(lines)
        if self._skip:
            skipped = min(self._skip, len(lines))
            del lines[:skipped]
            self._skip -= skipped
            if skipped:
                first_line, extra = first_line + skipped, 0
        quote = self._quote
        if quote and (self._in_quote or quote in data or quote in lines[0]):
            counts = list(map(bytes.count, lines, repeat(quote)))
            if self._in_quote or any(count & 1 for count in counts):
                self._count_spanning(lines, counts, first_line, extra)
                return
        # No quoted field spans a line here: every line that is not blank is a record.
        self._records += len(lines) - lines.count(_BLANK[0]) - lines.count(_BLANK[1])

    def _bound_carry(self) -> None:
        """Keep an unended line short: its quote parity, a CR at its end (maybe the first half
        of CRLF) and that it is not blank are all that counting needs, and its length."""
        carry = self._carry
        if len(carry) > CARRY_KEEP:
            odd = bool(self._quote) and carry.count(self._quote) & 1
            tail = b"\r" if carry.endswith(b"\r") else b""
            kept = self._filler + (self._quote if odd else b"") + tail
            self._carry_extra += len(carry) - len(kept)
            self._carry = kept
        if self._in_quote and self._limit is not None and self.too_long is None:
            length = self._record_bytes + len(self._carry) + self._carry_extra
            if length > self._limit:
                self.too_long = (self._record_line, length)

    def _count_spanning(
        self, lines: list[bytes], counts: list[int], first_line: int, extra: int
    ) -> None:
        """Line by line, for text where a quoted field goes on across lines; measures the
        records that do, against the limit."""
        in_quote, records = self._in_quote, 0
        record_line, record_bytes = self._record_line, self._record_bytes
        for i, (line, count) in enumerate(zip(lines, counts, strict=True)):
            if in_quote:
                record_bytes += len(line) + 1
                if count & 1:  # the quoted field closes on this line: the record ends here
                    in_quote = False
                    records += 1
            elif count & 1:
                in_quote = True  # a quoted field opens and goes on to the next line
                record_line, record_bytes = first_line + i, len(line) + 1
            elif line not in _BLANK:
                records += 1
                continue
            else:
                continue
            if i == 0:
                record_bytes += extra
            if self._limit is not None and record_bytes > self._limit and self.too_long is None:
                self.too_long = (record_line, record_bytes)
        self._in_quote, self._records = in_quote, self._records + records
        self._record_line, self._record_bytes = record_line, record_bytes

    def finish(self) -> int:
        """Data records: those after the header (a last line without a line end counts)."""
        if self._skip == 0 and (self._in_quote or self._carry not in _BLANK):
            self._records += 1
        self._carry = b""
        return max(0, self._records - 1)


def _lone_cr_line_ends(data: bytes) -> bool | None:
    """Whether the first line end is a CR alone; None until one is seen."""
    cr, lf = data.find(b"\r"), data.find(b"\n")
    if cr < 0 and lf < 0:
        return None
    if cr < 0 or (0 <= lf < cr):
        return False
    if cr == len(data) - 1:
        return None  # a CR at the end of the chunk: its LF may come next
    return data[cr + 1 : cr + 2] != b"\n"
