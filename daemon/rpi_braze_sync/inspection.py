"""The full read of an export before anything of it is sent: its hash, its encoding checked
(the file fails whole, naming the line, when a byte is not valid), its records counted and
measured against format.max_record_bytes, its delimiter. Also the byte streams both this and
the reader use: bounded to the bytes inspected, gunzipped in bounded pieces.

Blocking I/O, run in a worker thread; every file is opened through shareio.
"""

from __future__ import annotations

import codecs
import gzip
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from .errors import ExportFileError, FileChangedError, RecordTooLongError
from .recordcount import RecordCounter
from .shareio import open_regular

if TYPE_CHECKING:  # the mapping process imports this module, never pydantic
    import hashlib

    from .settings import FormatSettings

CHUNK_BYTES = 1 << 20
DELIMITERS = (",", "\t", "|", ";")
GZIP_MAGIC = b"\x1f\x8b"
# Codecs whose bytes for CR, LF or '"' can belong to other characters.
_NOT_ASCII_SAFE = ("utf-16", "utf-32", "utf-7", "iso2022", "hz")
DEFAULT_MAX_RECORD_BYTES = 1 << 20


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
    identity: tuple[int, int] = (0, 0)  # (st_dev, st_ino): the reader opens this very file


class _Bounded(io.RawIOBase):
    """Reads a file only up to `limit` bytes: what was hashed is what is sent, even if RPI
    appends meanwhile (the appended part is a new version, sent from where this one ended)."""

    def __init__(self, raw: IO[bytes], limit: int | None, owns: bool = True) -> None:
        self._raw = raw
        self._left = limit if limit is not None else 1 << 62
        self._owns = owns  # False: the inspection reads one descriptor several times

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
        if self._owns:
            self._raw.close()
        super().close()


def open_stream(raw: IO[bytes], limit: int | None = None, owns: bool = True) -> IO[bytes]:
    """`raw` from its start, at most `limit` bytes of it, decompressed when it is gzip (read
    in bounded pieces: a small .gz that holds gigabytes is never held whole)."""
    raw.seek(0)
    head = raw.read(2)
    raw.seek(0)
    stream: IO[bytes] = io.BufferedReader(_Bounded(raw, limit, owns), CHUNK_BYTES)
    if head == GZIP_MAGIC:
        return _OwningGzipFile(stream)  # type: ignore[return-value]
    return stream


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


def max_record_of(fmt: FormatSettings) -> int:
    """format.max_record_bytes (plain settings sent to the mapping process carry it too)."""
    return int(getattr(fmt, "max_record_bytes", DEFAULT_MAX_RECORD_BYTES))


def _decode_and_count(
    raw: IO[bytes], size: int, encoding: str, fmt: FormatSettings
) -> tuple[int, int] | int:
    """The data records of the file's first `size` bytes, or (line, byte offset) of the first
    byte that is not valid in `encoding`. One pass: the text decoded to check it is counted.
    RecordTooLongError for a record over format.max_record_bytes that spans lines (one line
    alone is rejected by the reader; a quoted record cannot be cut out of the file)."""
    decoder = codecs.getincrementaldecoder(encoding)("strict")
    limit = max_record_of(fmt)
    counter = RecordCounter(fmt.quote_char, fmt.skip_lines, limit)
    # Where CR, LF and quote bytes can be parts of other characters, count the text as UTF-8.
    reencode = codecs.lookup(encoding).name.startswith(_NOT_ASCII_SAFE)
    newline = "\n".encode(encoding.replace("-sig", ""))
    if encoding == "utf-16":
        newline = b"\n"  # counted on the raw bytes only roughly; the offset stays exact
    line, offset = 1, 0
    with open_stream(raw, size, owns=False) as stream:
        while True:
            chunk = stream.read(CHUNK_BYTES)
            held = len(decoder.getstate()[0])  # bytes of a character split across chunks
            try:
                text = decoder.decode(chunk, final=not chunk)
                counter.feed(text.encode("utf-8") if reencode else chunk)
            except UnicodeDecodeError as exc:
                # exc.start counts the held bytes first: they belong to the previous chunk
                # (start < 0: the bad sequence began there, on the line already counted).
                start = exc.start - held
                return line + chunk[: max(start, 0)].count(newline), offset + start
            if counter.too_long is not None:
                first_line, _ = counter.too_long
                raise RecordTooLongError(
                    f"line {first_line}: a record that goes on over several lines (a quoted"
                    f" field with line ends) is longer than format.max_record_bytes"
                    f" ({limit:,} bytes); nothing was sent (raise the limit, or fix the file)"
                )
            if not chunk:
                return counter.finish()
            line += chunk.count(newline)
            offset += len(chunk)


def _sha256() -> hashlib._Hash:
    """A new sha256. hashlib is imported here, in the daemon's calls: importing it loads
    OpenSSL's libcrypto, about 3.5 MB of resident memory in the mapping process, which
    imports this module for its reading helpers alone (issue 16's memory budget)."""
    import hashlib

    return hashlib.sha256()


def _content_digest(raw: IO[bytes]) -> tuple[int, int, str]:
    """(size, mtime_ns, sha256) of the bytes on disk, read through the one open descriptor."""
    digest = _sha256()
    raw.seek(0)
    before = os.fstat(raw.fileno())
    while chunk := raw.read(CHUNK_BYTES):
        digest.update(chunk)
    after = os.fstat(raw.fileno())
    if (before.st_size, before.st_mtime_ns) != (after.st_size, after.st_mtime_ns):
        raise FileChangedError("the file changed while it was being read")
    return after.st_size, after.st_mtime_ns, digest.hexdigest()


def prefix_sha256(path: Path, length: int, base: Path | None = None) -> str:
    """sha256 of the first `length` bytes: is an earlier version a prefix of this one?"""
    digest = _sha256()
    with open_regular(path, base) as f:
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


def read_line_bounded(text: IO[str], limit: int) -> tuple[str, bool]:
    """The next line, or its first `limit` characters and True when it is longer (the rest of
    it is read and dropped, never held)."""
    line = text.readline(limit + 1)
    if len(line) <= limit or line.endswith(("\n", "\r")):
        return line, False
    while (rest := text.readline(limit + 1)) and not rest.endswith(("\n", "\r")):
        pass
    return line[:limit], True


def inspect_file(path: Path, fmt: FormatSettings, base: Path | None = None) -> FileInspection:
    """Hash the file, settle its encoding (or fail it whole) and find its delimiter, through
    one descriptor opened by shareio (only a regular file, within the share `base`)."""
    with open_regular(path, base) as raw:
        return _inspect(raw, fmt)


def _inspect(raw: IO[bytes], fmt: FormatSettings) -> FileInspection:
    size, mtime_ns, sha256 = _content_digest(raw)
    st = os.fstat(raw.fileno())
    with open_stream(raw, size, owns=False) as stream:
        head = stream.read(4)
    encoding = _bom_encoding(head, fmt.encoding)
    used_fallback = False
    counted = _decode_and_count(raw, size, encoding, fmt)
    if isinstance(counted, tuple):
        line, byte = counted
        if fmt.fallback_encoding is None:
            raise ExportFileError(
                f"line {line} (byte {byte}): not valid {fmt.encoding}; nothing was sent "
                "(set format.fallback_encoding, e.g. cp1252, if the file comes from a Windows tool)"
            )
        encoding = fmt.fallback_encoding
        used_fallback = True
        counted = _decode_and_count(raw, size, encoding, fmt)
        if isinstance(counted, tuple):
            line, byte = counted
            raise ExportFileError(
                f"line {line} (byte {byte}): valid neither in {fmt.encoding} nor in "
                f"{fmt.fallback_encoding}; nothing was sent"
            )
    delimiter: str = fmt.delimiter
    if delimiter == "auto":
        limit = max_record_of(fmt)
        stream = open_stream(raw, size, owns=False)
        with io.TextIOWrapper(stream, encoding=encoding, newline="") as text:
            for _ in range(fmt.skip_lines):
                read_line_bounded(text, limit)
            delimiter = sniff_delimiter(read_line_bounded(text, limit)[0])
    return FileInspection(
        size, mtime_ns, sha256, encoding, delimiter, used_fallback, counted,
        (st.st_dev, st.st_ino),
    )  # fmt: skip
