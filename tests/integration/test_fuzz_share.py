"""Fuzzing the reader and the mapping with arbitrary bytes, as a share can hold them: the
inspection and then the mapping process's own loop (ChunkReader, column-wise mapping and
row function) either read the file or refuse it with the project's own error. Every record
read is settled exactly once (sent or rejected), every body is JSON, and time and memory stay
bounded by format.max_record_bytes, whatever the bytes."""

from __future__ import annotations

import gzip
import time
import tracemalloc
from dataclasses import replace
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rpi_braze_sync.chunkreader import ChunkReader
from rpi_braze_sync.chunks import FileRequest
from rpi_braze_sync.config import load_config
from rpi_braze_sync.errors import ExportFileError, HeaderError
from rpi_braze_sync.inspection import inspect_file
from rpi_braze_sync.plan import ReadFormat
from tests.examples import examples

SHIPPED = Path(__file__).resolve().parents[2] / "config" / "rpi-braze-sync.yaml"
CHANNEL = load_config(SHIPPED, dry_run=True, secrets=False).channels["Braze Onboarding and Upsert"]
LIMIT = 1024  # format.max_record_bytes: its smallest value, so that examples go over it
HEADERS = [
    b"external_id,first_name,email,country,dob,gender,phone,Output Name,income\n",
    b"\xef\xbb\xbfexternal_id;first_name;email\r\n",
    b'"external_id"\t"first_name"\t"a""b"\n',
    b"\xff\xfe" + "external_id,first_name\n".encode("utf-16-le"),
    b"",
]
# Pieces that make CSV, and the bytes that break it or the encodings.
TOKENS = st.sampled_from(
    [b",", b";", b"\t", b"|", b'"', b'""', b"\n", b"\r\n", b"\r", b"\x00", b"\xff", b"\xc3",
     b"\xe9", b"u1", b"ann@example.com", b"France", b"1990-02-03", b"F", b"+33123456789",
     b"12.5", b"true", b"x" * 300, b"\xe2\x80\xa8", b"\x1b[31m", b"\xf0\x9f\x98\x80"]
)  # fmt: skip
BODY = st.one_of(
    st.binary(max_size=3000),
    st.lists(TOKENS, max_size=400).map(b"".join),
    st.lists(st.sampled_from([b"u1,Ann\n", b'"u2","multi\nline"\n', b"y" * 1500 + b"\n"]),
             max_size=20).map(b"".join),
)  # fmt: skip


def read_everything(path: Path, share: Path, fallback: str | None = None) -> tuple[int, int]:
    """(records settled, JSON bodies); raises only the project's errors."""
    changes = {"max_record_bytes": LIMIT, "fallback_encoding": fallback}
    fmt = CHANNEL.settings.format.model_copy(update=changes)
    inspection = inspect_file(path, fmt, share)
    plan = replace(CHANNEL.plan, read=ReadFormat.of(fmt))
    spec = FileRequest(path, share, inspection, plan, {"offer": "O"}, 0)
    source = ChunkReader(spec)
    settled: list[int] = []
    bodies = 0
    try:
        while True:
            chunk = source.next_chunk()
            for body in chunk.bodies:
                assert isinstance(orjson.loads(body), dict)
            bodies += len(chunk.bodies)
            settled += chunk.indexes + [index for index, _, _, _ in chunk.rejected]
            if chunk.at_end:
                break
    finally:
        source.close()
    assert sorted(settled) == list(range(len(settled)))  # each record once, none skipped
    assert len(settled) == source.reader.records_read
    return len(settled), bodies


@settings(
    max_examples=examples(150),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                           HealthCheck.function_scoped_fixture],
)  # fmt: skip
@given(
    header=st.sampled_from(HEADERS),
    body=BODY,
    gzipped=st.booleans(),
    fallback=st.sampled_from([None, "cp1252"]),
)
def test_arbitrary_bytes_are_read_or_refused_within_bounds(
    tmp_path: Path, header: bytes, body: bytes, gzipped: bool, fallback: str | None
) -> None:
    share = tmp_path / "share"
    share.mkdir(exist_ok=True)
    data = header + body
    path = share / "export.txt"
    path.write_bytes(gzip.compress(data) if gzipped else data)
    tracemalloc.start()
    started = time.monotonic()
    try:
        read_everything(path, share, fallback)
    except (ExportFileError, HeaderError):
        pass  # refused whole, with a reason: the daemon fails the file and goes on
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert time.monotonic() - started < 5
    # The reader's buffers (1 MiB) and the mapping's tables, not the file's size.
    assert peak < 8 << 20, f"{peak:,} bytes"


def test_a_record_over_the_limit_is_rejected_alone_and_a_long_quoted_one_fails(
    tmp_path: Path,
) -> None:
    share = tmp_path / "share"
    share.mkdir()
    path = share / "export.txt"
    path.write_bytes(b"external_id\nu1\n" + b"z" * 5000 + b"\nu3\n")
    assert read_everything(path, share) == (3, 2)
    path.write_bytes(b'external_id,first_name\nu1,"' + b"q\n" * 1000 + b'"\nu3,A\n')
    with pytest.raises(ExportFileError, match="line 2: a record that goes on over several"):
        read_everything(path, share)
