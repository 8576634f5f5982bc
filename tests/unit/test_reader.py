"""Reading export files from disk: delimiters, quoting, encodings, gzip, line numbers."""

from __future__ import annotations

import codecs
import gc
import gzip
import hashlib
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest

from rpi_braze_sync.errors import ExportFileError
from rpi_braze_sync.inspection import CHUNK_BYTES, FileInspection, inspect_file
from rpi_braze_sync.plan import ReadFormat
from rpi_braze_sync.reader import ExportReader
from rpi_braze_sync.settings import FormatSettings

Rows = list[tuple[int, int, list[str]]]  # (index, line_no, cells)


def write(tmp_path: Path, data: bytes, name: str = "export.txt") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def read_all(
    path: Path, fmt: FormatSettings | None = None, start_index: int = 0
) -> tuple[FileInspection, list[str], Rows]:
    fmt = fmt or FormatSettings()
    inspection = inspect_file(path, fmt)
    with ExportReader(path, inspection, ReadFormat.of(fmt), start_index) as reader:
        rows = [(r.index, r.line_no, r.cells) for r in reader.take(1000)]
        assert reader.take(1000) == []
        reader.verify_source(path, path.parent)
        # The inspection counted the records the reader yields (the total in progress lines).
        assert inspection.records == reader.records_read
        return inspection, reader.header, rows


def resource_warnings(action: Callable[[], object]) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        action()
        gc.collect()
    return [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]


@pytest.mark.parametrize("delimiter", [",", "\t", "|", ";"])
def test_delimiter_is_sniffed(tmp_path: Path, delimiter: str) -> None:
    text = delimiter.join(["id", "name", "city"]) + "\n" + delimiter.join(["1", "Ann", "Lyon"])
    inspection, header, rows = read_all(write(tmp_path, text.encode() + b"\n"))
    assert inspection.delimiter == delimiter
    assert header == ["id", "name", "city"]
    assert rows == [(0, 2, ["1", "Ann", "Lyon"])]


@pytest.mark.parametrize(
    ("header_line", "delimiter"),
    [
        ("id", ","),  # one column: comma
        ("a;b;c,d", ";"),  # the candidate that splits the header most
        ("a|b,c|d", "|"),
        ("a,b;c", ","),  # a tie goes to the earlier candidate
    ],
)
def test_delimiter_choice(tmp_path: Path, header_line: str, delimiter: str) -> None:
    inspection = inspect_file(write(tmp_path, header_line.encode() + b"\n"), FormatSettings())
    assert inspection.delimiter == delimiter


def test_configured_delimiter_is_not_sniffed(tmp_path: Path) -> None:
    fmt = FormatSettings(delimiter=";")
    _, header, rows = read_all(write(tmp_path, b"a,b;c\n1,2;3\n"), fmt)
    assert (header, rows) == (["a,b", "c"], [(0, 2, ["1,2", "3"])])


QUOTED = 'id,comment,city\n1,"a, b",Lyon\n2,"multi\nline\ntext",Paris\n3,"say ""hi""",Nice\n4,,\n'


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_quoted_fields_and_line_numbers(tmp_path: Path, newline: str) -> None:
    data = QUOTED.replace("\n", newline).encode()
    _, header, rows = read_all(write(tmp_path, data))
    assert header == ["id", "comment", "city"]
    assert rows == [
        (0, 2, ["1", "a, b", "Lyon"]),
        (1, 3, ["2", f"multi{newline}line{newline}text", "Paris"]),
        (2, 6, ["3", 'say "hi"', "Nice"]),
        (3, 7, ["4", "", ""]),
    ]


def test_last_line_without_newline(tmp_path: Path) -> None:
    _, _, rows = read_all(write(tmp_path, b"id,name\r\n1,Ann\r\n2,Bo"))
    assert rows == [(0, 2, ["1", "Ann"]), (1, 3, ["2", "Bo"])]


def test_blank_lines_are_skipped(tmp_path: Path) -> None:
    _, header, rows = read_all(write(tmp_path, b"id\n\n1\n\n\n2\n\n"))
    assert header == ["id"]
    assert rows == [(0, 3, ["1"]), (1, 6, ["2"])]


@pytest.mark.parametrize("bom", [b"", codecs.BOM_UTF8], ids=["no-bom", "bom"])
def test_utf8(tmp_path: Path, bom: bytes) -> None:
    data = bom + "external_id;name\nu1;Élodie Ñúñez\n".encode()
    inspection, header, rows = read_all(write(tmp_path, data))
    assert (inspection.encoding, inspection.delimiter, inspection.used_fallback) == (
        "utf-8-sig",
        ";",
        False,
    )
    assert header == ["external_id", "name"]
    assert rows == [(0, 2, ["u1", "Élodie Ñúñez"])]


@pytest.mark.parametrize(
    "data",
    [
        "external_id\tname\nu1\tÉlodie\nu2\t日本\n".encode("utf-16"),
        codecs.BOM_UTF16_LE + "external_id\tname\nu1\tÉlodie\nu2\t日本\n".encode("utf-16-le"),
        codecs.BOM_UTF16_BE + "external_id\tname\nu1\tÉlodie\nu2\t日本\n".encode("utf-16-be"),
    ],
    ids=["native", "le", "be"],
)
def test_utf16_with_bom(tmp_path: Path, data: bytes) -> None:
    inspection, header, rows = read_all(write(tmp_path, data))
    assert (inspection.encoding, inspection.delimiter) == ("utf-16", "\t")
    assert header == ["external_id", "name"]
    assert rows == [(0, 2, ["u1", "Élodie"]), (1, 3, ["u2", "日本"])]


# Runs under filterwarnings = error: a leaked file (ResourceWarning) would fail it too.
@pytest.mark.parametrize("bom", [b"", codecs.BOM_UTF8], ids=["no-bom", "bom"])
def test_gzip_is_read_transparently(tmp_path: Path, bom: bytes) -> None:
    compressed = gzip.compress(bom + "id|name\n1|Zoé\n2|Bo\n".encode())
    path = write(tmp_path, compressed, "export.csv.gz")
    inspection, header, rows = read_all(path)
    assert (inspection.size, inspection.sha256) == (
        len(compressed),
        hashlib.sha256(compressed).hexdigest(),
    )
    assert (inspection.encoding, inspection.delimiter) == ("utf-8-sig", "|")
    assert header == ["id", "name"]
    assert rows == [(0, 2, ["1", "Zoé"]), (1, 3, ["2", "Bo"])]


def test_gzip_closes_its_file(tmp_path: Path) -> None:
    path = write(tmp_path, gzip.compress(b"id\n1\n"), "export.csv.gz")
    assert resource_warnings(lambda: read_all(path)) == []


def test_gzip_reader_closes_its_file_when_the_header_fails(tmp_path: Path) -> None:
    path = write(tmp_path, gzip.compress(b""), "export.csv.gz")

    def open_empty() -> None:
        with pytest.raises(ExportFileError, match=r"^the file is empty: no header row$"):
            ExportReader(
                path, inspect_file(path, FormatSettings()), ReadFormat.of(FormatSettings())
            )

    assert resource_warnings(open_empty) == []


def test_sha256_and_size_are_of_the_bytes_on_disk(tmp_path: Path) -> None:
    data = codecs.BOM_UTF8 + b"id,name\r\n1,Ann\r\n"
    inspection = inspect_file(write(tmp_path, data), FormatSettings())
    assert inspection.sha256 == hashlib.sha256(data).hexdigest()
    assert inspection.size == len(data)


BAD_UTF8 = b"id,name\n1,Ann\n2,Z\xe9\n3,Bo\n"


def not_utf8(line: int, byte: int) -> str:
    """What inspect_file says of a UTF-8 file with a bad byte."""
    return (
        f"line {line} (byte {byte}): not valid utf-8; nothing was sent "
        "(set format.fallback_encoding, e.g. cp1252, if the file comes from a Windows tool)"
    )


def test_invalid_utf8_fails_the_whole_file(tmp_path: Path) -> None:
    with pytest.raises(ExportFileError) as info:
        inspect_file(write(tmp_path, BAD_UTF8), FormatSettings())
    assert str(info.value) == not_utf8(3, BAD_UTF8.index(0xE9))


def test_fallback_encoding_reads_the_whole_file(tmp_path: Path) -> None:
    fmt = FormatSettings(fallback_encoding="cp1252")
    inspection, header, rows = read_all(write(tmp_path, BAD_UTF8), fmt)
    assert (inspection.encoding, inspection.used_fallback) == ("cp1252", True)
    assert header == ["id", "name"]
    assert rows == [(0, 2, ["1", "Ann"]), (1, 3, ["2", "Zé"]), (2, 4, ["3", "Bo"])]


def test_fallback_is_unused_for_a_valid_file(tmp_path: Path) -> None:
    fmt = FormatSettings(fallback_encoding="cp1252")
    inspection, _, rows = read_all(write(tmp_path, "id\nZoé\n".encode()), fmt)
    assert (inspection.encoding, inspection.used_fallback) == ("utf-8-sig", False)
    assert rows == [(0, 2, ["Zoé"])]


def test_invalid_in_both_encodings(tmp_path: Path) -> None:
    data = b"id\n1\n\x81\n"  # 0x81 is undefined in cp1252
    with pytest.raises(ExportFileError) as info:
        inspect_file(write(tmp_path, data), FormatSettings(fallback_encoding="cp1252"))
    assert str(info.value) == (
        "line 3 (byte 5): valid neither in utf-8 nor in cp1252; nothing was sent"
    )


def test_invalid_byte_after_the_first_chunk(tmp_path: Path) -> None:
    data = b"id\n" + b"x" * 99 + b"\n"
    data = data * (CHUNK_BYTES // len(data) + 2) + b"\xff\n"
    with pytest.raises(ExportFileError) as info:
        inspect_file(write(tmp_path, data), FormatSettings())
    line, offset = data.count(b"\n"), data.index(0xFF)  # the last line holds the bad byte
    assert offset > CHUNK_BYTES
    assert str(info.value).startswith(f"line {line} (byte {offset}): not valid utf-8;")


def test_invalid_byte_offset_after_a_split_character(tmp_path: Path) -> None:
    head = b"id\n" + b"y" * (CHUNK_BYTES - 4)
    data = head + "é".encode() + b"\n\xff\n"  # é straddles the first chunk boundary
    assert len(head) == CHUNK_BYTES - 1
    with pytest.raises(ExportFileError) as info:
        inspect_file(write(tmp_path, data), FormatSettings())
    assert str(info.value) == not_utf8(3, data.index(0xFF))


@pytest.mark.parametrize(
    ("lead", "broken"),
    [(1, b"\xc3A"), (1, b"\xe2\x82A"), (2, b"\xe2\x82A")],
    ids=["2-byte-lead-held", "3-byte-lead-held", "3-byte-two-held"],
)
def test_invalid_byte_offset_of_a_broken_sequence_split_across_chunks(
    tmp_path: Path, lead: int, broken: bytes
) -> None:
    head = b"id\n" + b"y" * (CHUNK_BYTES - 3 - lead)  # `lead` bytes of `broken` end chunk one
    data = head + broken + b"\n"
    assert len(head) == CHUNK_BYTES - lead
    with pytest.raises(ExportFileError) as info:
        inspect_file(write(tmp_path, data), FormatSettings())
    assert str(info.value) == not_utf8(2, len(head))


@pytest.mark.parametrize(
    ("data", "skip_lines", "line"),
    [
        (b"\nid\n1\n", 0, 1),  # a blank first line is the header row, not skipped
        (b"\r\nid\r\n1\r\n", 0, 1),
        (b",,\n1,2,3\n", 0, 1),
        (b'""\n1\n', 0, 1),
        (b"title\ncount: 2\n\nid\n1\n", 2, 3),
    ],
    ids=["blank", "blank-crlf", "only-delimiters", "one-empty-quoted-cell", "after-skip-lines"],
)
def test_blank_header_row_is_an_error(
    tmp_path: Path, data: bytes, skip_lines: int, line: int
) -> None:
    path = write(tmp_path, data)
    fmt = FormatSettings(skip_lines=skip_lines)
    inspection = inspect_file(path, fmt)

    def open_blank_header() -> None:
        with pytest.raises(ExportFileError) as info:
            ExportReader(path, inspection, ReadFormat.of(fmt))
        assert str(info.value) == f"line {line}: the header row is empty"

    assert resource_warnings(open_blank_header) == []  # the reader closed its file


@pytest.mark.parametrize(
    ("start_index", "expected"),
    [
        (0, [(0, 2, ["a"]), (1, 4, ["b"]), (2, 5, ["c"])]),
        (1, [(1, 4, ["b"]), (2, 5, ["c"])]),
        (2, [(2, 5, ["c"])]),
        (3, []),
        (9, []),
    ],
)
def test_start_index_skips_records(tmp_path: Path, start_index: int, expected: Rows) -> None:
    path = write(tmp_path, b"v\na\n\nb\nc\n")
    _, _, rows = read_all(path, start_index=start_index)
    assert rows == expected


def test_batches_are_consecutive_records_across_blank_lines(tmp_path: Path) -> None:
    path = write(tmp_path, b"v\na\n\nb\nc\n\n\nd\ne\n")
    inspection = inspect_file(path, FormatSettings())
    with ExportReader(path, inspection, ReadFormat.of(FormatSettings()), start_index=1) as reader:
        batches = [reader.take_batch(2) for _ in range(4)]
    seen = [(b.first_index, b.line_numbers, b.rows) for b in batches]
    assert seen == [
        (1, [4, 5], [["b"], ["c"]]),
        (3, [8, 9], [["d"], ["e"]]),
        (5, [], []),
        (5, [], []),
    ]


def test_empty_file(tmp_path: Path) -> None:
    path = write(tmp_path, b"")
    inspection = inspect_file(path, FormatSettings())
    assert (inspection.size, inspection.sha256) == (0, hashlib.sha256(b"").hexdigest())
    with pytest.raises(ExportFileError, match=r"^the file is empty: no header row$"):
        ExportReader(path, inspection, ReadFormat.of(FormatSettings()))


def test_large_file_in_chunks(tmp_path: Path) -> None:
    total = 200_000
    data = b"external_id,n\n" + b"".join(b"u%d,%d\n" % (i, i * 7) for i in range(total))
    path = write(tmp_path, data)
    fmt = FormatSettings()
    inspection = inspect_file(path, fmt)
    assert inspection.sha256 == hashlib.sha256(data).hexdigest()
    count = 0
    with ExportReader(path, inspection, ReadFormat.of(fmt)) as reader:
        while chunk := reader.take(5000):
            assert len(chunk) == 5000
            for record in chunk:
                assert record.index == count
                assert record.line_no == count + 2
                assert record.cells == [f"u{count}", str(count * 7)]
                count += 1
        reader.verify_source(path, tmp_path)
    assert count == total


@pytest.mark.parametrize(
    "encode",
    [
        lambda text: text.encode(),
        lambda text: codecs.BOM_UTF16_LE + text.encode("utf-16-le"),
        lambda text: gzip.compress(text.encode("utf-8-sig")),
    ],
    ids=["utf-8", "utf-16", "gzip"],
)
def test_records_are_counted_during_the_inspection(
    tmp_path: Path, encode: Callable[[str], bytes]
) -> None:
    text = (
        'Title, "with quotes\nRecords: 3\nid,note\r\n1,"two\r\nlines"\r\n\r\n2,plain\r\n'
        '3,"""quoted"" and\nmore"'
    )
    fmt = FormatSettings(skip_lines=2)
    inspection, _, rows = read_all(write(tmp_path, encode(text)), fmt)
    assert inspection.records == len(rows) == 3


@pytest.mark.parametrize("end", ["", "\n", "\r\nmore\r\n"])
def test_a_quote_left_open_at_the_end_of_the_file_is_unread(tmp_path: Path, end: str) -> None:
    # A writer that died mid-record leaves a quote open; csv would end the field at the end
    # of the file and hand the rest over as a value.
    path = write(tmp_path, f'id,name\n1,Ann\n2,"Bo{end}'.encode())
    fmt = FormatSettings()
    with ExportReader(path, inspect_file(path, fmt), ReadFormat.of(fmt)) as reader:
        records = reader.take(1000)
    assert [(r.line_no, r.unread) for r in records] == [
        (2, None),
        (3, "line 3: quoted field not closed before end of file (the file may be cut short);"
         " fix the export (close the quote) and send the row again"),
    ]  # fmt: skip


def test_a_closed_quote_on_the_last_line_is_read(tmp_path: Path) -> None:
    path = write(tmp_path, b'id,name\n1,"Ann\nB"')
    fmt = FormatSettings()
    with ExportReader(path, inspect_file(path, fmt), ReadFormat.of(fmt)) as reader:
        records = reader.take(1000)
    assert [(r.cells, r.unread) for r in records] == [(["1", "Ann\nB"], None)]
