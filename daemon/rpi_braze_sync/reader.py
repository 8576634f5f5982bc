"""Streaming CSV reading of export files: encoding checks, BOMs, gzip, delimiter sniffing.

Blocking I/O: the pipeline runs these functions in a worker thread. Memory stays flat: a file
is read in chunks, never whole. A file that is not valid in its encoding is refused before a
single row is read, so it is never sent in part or with replacement characters.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import hashlib
import io
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from .errors import ExportFileError, FileChangedError, FileVanishedError, ShareUnavailableError
from .recordcount import RecordCounter

if TYPE_CHECKING:  # the mapping process imports this module, never pydantic (plain.py)
    from .settings import FormatSettings, RecordCountSpec

CHUNK_BYTES = 1 << 20
DELIMITERS = (",", "\t", "|", ";")
GZIP_MAGIC = b"\x1f\x8b"
# Codecs whose bytes for CR, LF or '"' can belong to other characters.
_NOT_ASCII_SAFE = ("utf-16", "utf-32", "utf-7", "iso2022", "hz")
csv.field_size_limit(16 << 20)  # a long cell is a value to reject, not a reason to stop reading


@dataclass(frozen=True)
class FileInspection:
    """What a full read of the file established before anything is sent."""

    size: int
    mtime_ns: int
    sha256: str
    encoding: str
    delimiter: str
    used_fallback: bool
    records: int  # data records after the header, counted while the encoding was checked


class _Bounded(io.RawIOBase):
    """Reads a file only up to `limit` bytes: what was hashed is what is sent, even if RPI
    appends meanwhile (the appended part is a new version, sent from where this one ended)."""

    def __init__(self, raw: IO[bytes], limit: int) -> None:
        self._raw = raw
        self._left = limit

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self._left <= 0:
            return 0
        view = memoryview(buffer)[: self._left]
        count = self._raw.readinto(view)  # type: ignore[attr-defined]
        self._left -= count or 0
        return count or 0

    def fileno(self) -> int:
        return self._raw.fileno()

    def close(self) -> None:
        self._raw.close()
        super().close()


def _open_raw(path: Path, limit: int | None = None) -> IO[bytes]:
    raw: IO[bytes] = open(path, "rb")  # noqa: SIM115 - returned to the caller, who closes it
    head = raw.read(2)
    raw.seek(0)
    if limit is not None:
        raw = io.BufferedReader(_Bounded(raw, limit), CHUNK_BYTES)
    if head == GZIP_MAGIC:
        return _OwningGzipFile(raw)  # type: ignore[return-value]
    return raw


class _OwningGzipFile(gzip.GzipFile):
    """gzip.GzipFile leaves the file it was given open; this one closes it too."""

    def __init__(self, raw: IO[bytes]) -> None:
        super().__init__(fileobj=raw, mode="rb")
        self._owned = raw

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._owned.close()


def _bom_encoding(head: bytes, configured: str) -> str:
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) and not head.startswith(
        codecs.BOM_UTF32_LE
    ):
        return "utf-16"
    if codecs.lookup(configured).name == "utf-8":
        return "utf-8-sig"  # strips a UTF-8 BOM when there is one, harmless when not
    return configured


def _decode_and_count(
    path: Path, size: int, encoding: str, fmt: FormatSettings
) -> tuple[int, int] | int:
    """The data records of the file's first `size` bytes, or (line, byte offset) of the first
    byte that is not valid in `encoding`. One pass: the text decoded to check it is counted."""
    decoder = codecs.getincrementaldecoder(encoding)("strict")
    counter = RecordCounter(fmt.quote_char, fmt.skip_lines)
    # Where CR, LF and quote bytes can be parts of other characters, count the text as UTF-8.
    reencode = codecs.lookup(encoding).name.startswith(_NOT_ASCII_SAFE)
    newline = "\n".encode(encoding.replace("-sig", ""))
    if encoding == "utf-16":
        newline = b"\n"  # counted on the raw bytes only roughly; the offset stays exact
    line, offset = 1, 0
    with _open_raw(path, limit=size) as raw:
        while True:
            chunk = raw.read(CHUNK_BYTES)
            held = len(decoder.getstate()[0])  # bytes of a character split across chunks
            try:
                text = decoder.decode(chunk, final=not chunk)
                counter.feed(text.encode("utf-8") if reencode else chunk)
            except UnicodeDecodeError as exc:
                # exc.start counts the held bytes first: they belong to the previous chunk
                # (start < 0: the bad sequence began there, on the line already counted).
                start = exc.start - held
                return line + chunk[: max(start, 0)].count(newline), offset + start
            if not chunk:
                return counter.finish()
            line += chunk.count(newline)
            offset += len(chunk)


def _content_digest(path: Path) -> tuple[int, int, str]:
    """(size, mtime_ns, sha256) of the bytes on disk, read through one open descriptor."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        before = os.fstat(f.fileno())
        while chunk := f.read(CHUNK_BYTES):
            digest.update(chunk)
        after = os.fstat(f.fileno())
    if (before.st_size, before.st_mtime_ns) != (after.st_size, after.st_mtime_ns):
        raise FileChangedError("the file changed while it was being read")
    return after.st_size, after.st_mtime_ns, digest.hexdigest()


def prefix_sha256(path: Path, length: int) -> str:
    """sha256 of the first `length` bytes: is an earlier version a prefix of this one?"""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        left = length
        while left > 0 and (chunk := f.read(min(CHUNK_BYTES, left))):
            digest.update(chunk)
            left -= len(chunk)
    return digest.hexdigest()


def share_available(base: Path) -> bool:
    try:
        os.listdir(base)
    except OSError:
        return False
    return True


def sniff_delimiter(header_line: str) -> str:
    """The candidate that splits the header most; comma when the header has one column."""
    counts = {d: header_line.count(d) for d in DELIMITERS}
    best = max(DELIMITERS, key=lambda d: counts[d])
    return best if counts[best] else ","


def inspect_file(path: Path, fmt: FormatSettings) -> FileInspection:
    """Hash the file, settle its encoding (or fail it whole) and find its delimiter."""
    size, mtime_ns, sha256 = _content_digest(path)
    with _open_raw(path) as raw:
        head = raw.read(4)
    encoding = _bom_encoding(head, fmt.encoding)
    used_fallback = False
    counted = _decode_and_count(path, size, encoding, fmt)
    if isinstance(counted, tuple):
        line, byte = counted
        if fmt.fallback_encoding is None:
            raise ExportFileError(
                f"line {line} (byte {byte}): not valid {fmt.encoding}; nothing was sent "
                "(set format.fallback_encoding, e.g. cp1252, if the file comes from a Windows tool)"
            )
        encoding = fmt.fallback_encoding
        used_fallback = True
        counted = _decode_and_count(path, size, encoding, fmt)
        if isinstance(counted, tuple):
            line, byte = counted
            raise ExportFileError(
                f"line {line} (byte {byte}): valid neither in {fmt.encoding} nor in "
                f"{fmt.fallback_encoding}; nothing was sent"
            )
    delimiter: str = fmt.delimiter
    if delimiter == "auto":
        with _open_raw(path) as raw:
            text = io.TextIOWrapper(raw, encoding=encoding, newline="")
            for _ in range(fmt.skip_lines):
                text.readline()
            delimiter = sniff_delimiter(text.readline())
    return FileInspection(size, mtime_ns, sha256, encoding, delimiter, used_fallback, counted)


@dataclass(frozen=True, slots=True)
class Record:
    index: int  # 0-based position among the data rows; checkpoints count these
    line_no: int  # physical line where the record starts, 1-based, as an editor shows it
    cells: list[str]


@dataclass(frozen=True, slots=True)
class RecordBatch:
    """Consecutive records: indexes first_index, first_index + 1, ..."""

    first_index: int
    line_numbers: list[int]
    rows: list[list[str]]


class ExportReader:
    """Header first, then records from `start_index` on; a context manager that owns the file."""

    def __init__(
        self, path: Path, inspection: FileInspection, fmt: FormatSettings, start_index: int = 0
    ) -> None:
        self._raw = _open_raw(path, limit=inspection.size)
        self._inspection = inspection
        self._text = io.TextIOWrapper(self._raw, encoding=inspection.encoding, newline="")
        # Lines before the header (a template's title or record count), kept for the caller.
        self.preamble = [self._text.readline().rstrip("\r\n") for _ in range(fmt.skip_lines)]
        self._line_offset = fmt.skip_lines
        self.records_read = 0  # data records seen so far, including those skipped on resume
        self._csv = csv.reader(
            self._text, delimiter=inspection.delimiter, quotechar=fmt.quote_char, strict=False
        )
        self._start_index = start_index
        try:
            self.header: list[str] = self._read_header()
        except BaseException:
            self.close()
            raise
        self._next_index = 0
        self._next_line = self._line_offset + self._csv.line_num + 1

    def _read_header(self) -> list[str]:
        try:
            header = next(self._csv)
        except StopIteration:
            raise ExportFileError("the file is empty: no header row") from None
        except (csv.Error, UnicodeDecodeError) as exc:
            raise ExportFileError(
                f"line {self._line_offset + 1}: unreadable header: {exc}"
            ) from None
        if not any(cell.strip() for cell in header):
            raise ExportFileError(f"line {self._line_offset + 1}: the header row is empty")
        return header

    def take(self, limit: int) -> list[Record]:
        """Up to `limit` records from where the last call stopped; [] at the end of the file."""
        batch = self.take_batch(limit)
        first = batch.first_index
        return [
            Record(first + i, line_no, cells)
            for i, (line_no, cells) in enumerate(zip(batch.line_numbers, batch.rows, strict=True))
        ]

    def take_batch(self, limit: int) -> RecordBatch:
        """`take` as columns, for the hot path: one tight loop (no generator, no per-row
        attribute look-ups, no object per record)."""
        rows: list[list[str]] = []
        line_numbers: list[int] = []
        keep_row, keep_line = rows.append, line_numbers.append
        reader = self._csv
        offset = self._line_offset
        index, start, line_no = self._next_index, self._start_index, self._next_line
        try:
            for cells in reader:
                if cells:  # a blank line is no record
                    if index >= start:
                        keep_row(cells)
                        keep_line(line_no)
                    index += 1
                line_no = offset + reader.line_num + 1
                if len(rows) >= limit:
                    break
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
        # Records from `start` on are kept without a gap, the last one just before `index`.
        return RecordBatch(index - len(rows), line_numbers, rows)

    def progress(self) -> float:
        """Share of the file's bytes read so far (read-ahead makes it a little early)."""
        try:
            position = os.lseek(self._raw.fileno(), 0, os.SEEK_CUR)
        except OSError:
            return 0.0
        return min(1.0, position / self._inspection.size) if self._inspection.size else 1.0

    def stated_count(self, spec: RecordCountSpec) -> int:
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
            on_disk = os.stat(path)
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
