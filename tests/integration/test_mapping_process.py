"""The mapping process, for real: a child interpreter reading and mapping files over a socket,
several chunks ahead of the one being sent. What it hands back must be exactly what the
in-process source gives, and a file abandoned, failed or finished must leave nothing behind
for the next one."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from rpi_braze_sync.config import load_config
from rpi_braze_sync.errors import FileChangedError
from rpi_braze_sync.mapping import Drop, HeaderError
from rpi_braze_sync.reader import inspect_file
from rpi_braze_sync.rowsource import (
    CHUNK_ROWS,
    ChunkData,
    InProcessSource,
    MappingProcess,
    RejectData,
    SourceSpec,
    WorkerSource,
)

SHIPPED = Path(__file__).resolve().parents[2] / "config" / "rpi-braze-sync.yaml"
CHANNEL = load_config(SHIPPED, env={}, dry_run=True, secrets=False).channels[
    "Braze Onboarding and Upsert"
]
HEADER = "external_id,first_name,email,dob,income\r\n"


def export(path: Path, rows: int, tag: str, bad_every: int = 0) -> Path:
    lines = [HEADER]
    for i in range(rows):
        dob = "2024-02-30" if bad_every and i % bad_every == 0 else f"19{50 + i % 50}-01-02"
        lines.append(f"{tag}{i},Ada {i},{tag}{i}@example.com,{dob},{i * 3}\r\n")
    path.write_text("".join(lines), encoding="utf-8")
    return path


def spec_for(path: Path, start_index: int = 0) -> SourceSpec:
    fmt = CHANNEL.settings.format
    return SourceSpec(
        path,
        path.parent,
        inspect_file(path, fmt),
        fmt,
        CHANNEL.mapping,
        {"channel": "Braze Onboarding and Upsert", "offer": "Spring", "workflow_id": "7"},
        start_index,
    )


def chunks(source: InProcessSource | WorkerSource) -> list[ChunkData]:
    out = []
    while True:
        chunk = source.next_chunk()
        out.append(chunk)
        if chunk.at_end:
            return out


ItemData = tuple[int, int, str, bytes, str | list[str]]


def flat(chunks: list[ChunkData]) -> tuple[list[ItemData], list[RejectData], list[Drop]]:
    items = [
        item
        for c in chunks
        for item in zip(c.indexes, c.line_numbers, c.users, c.bodies, c.packed, strict=True)
    ]
    rejected = [row for chunk in chunks for row in chunk.rejected]
    drops = [drop for chunk in chunks for drop in chunk.drops]
    return items, rejected, drops


@pytest.fixture
def process() -> Iterator[MappingProcess]:
    worker = MappingProcess()
    yield worker
    worker.stop()


def test_gives_what_the_in_process_source_gives(tmp_path: Path, process: MappingProcess) -> None:
    rows = CHUNK_ROWS * (MappingProcess.PREFETCH_CHUNKS + 2) + 17  # more than it runs ahead
    path = export(tmp_path / "a.txt", rows, "u", bad_every=97)
    local = InProcessSource(spec_for(path))
    expected = flat(chunks(local))
    local.close()
    remote = process.open(spec_for(path))
    got = flat(chunks(remote))
    remote.close()
    assert got == expected
    items, _, drops = got
    assert len(items) == rows
    assert [item[0] for item in items] == list(range(rows))
    assert len(drops) == len(range(0, rows, 97))  # the unreal dates, dropped and recorded


def test_a_finished_or_abandoned_file_leaves_nothing_for_the_next(
    tmp_path: Path, process: MappingProcess
) -> None:
    first = export(tmp_path / "first.txt", CHUNK_ROWS * 8, "a")
    second = export(tmp_path / "second.txt", CHUNK_ROWS * 3, "b")
    small = export(tmp_path / "small.txt", 3, "c")

    abandoned = process.open(spec_for(first))
    abandoned.next_chunk()  # the process is now several chunks ahead
    abandoned.close()
    items, _, _ = flat(chunks(process.open(spec_for(second))))
    assert [item[2] for item in items] == [f"b{i}" for i in range(CHUNK_ROWS * 3)]

    items, _, _ = flat(chunks(process.open(spec_for(small))))  # after one read to its end
    assert [item[2] for item in items] == ["c0", "c1", "c2"]

    items, _, _ = flat(chunks(process.open(spec_for(first, start_index=CHUNK_ROWS * 7 + 1))))
    assert [item[0] for item in items] == list(range(CHUNK_ROWS * 7 + 1, CHUNK_ROWS * 8))


def test_a_file_that_shrinks_fails_and_the_process_goes_on(
    tmp_path: Path, process: MappingProcess
) -> None:
    path = export(tmp_path / "shrinks.txt", CHUNK_ROWS * 10, "s")
    source = process.open(spec_for(path))
    source.next_chunk()
    os.truncate(path, path.stat().st_size // 3)
    with pytest.raises(FileChangedError, match="shrank"):  # after the chunks mapped ahead
        chunks(source)
    source.close()
    other = export(tmp_path / "other.txt", 5, "o")
    items, _, _ = flat(chunks(process.open(spec_for(other))))
    assert [item[2] for item in items] == [f"o{i}" for i in range(5)]


def test_the_process_maps_without_pydantic(tmp_path: Path) -> None:
    # Settings cross as plain objects and compiled rules as their recipe (plain.py): the
    # process never imports pydantic or builds the settings models, 20 MB of its memory.
    path = export(tmp_path / "plain.txt", 3, "p", bad_every=2)
    request = tmp_path / "request.pickle"
    request.write_bytes(pickle.dumps(MappingProcess.open_request(spec_for(path))))
    script = (
        "import pickle, sys\n"
        "from rpi_braze_sync.rowsource import InProcessSource\n"
        f"_, spec = pickle.loads(open({str(request)!r}, 'rb').read())\n"
        "chunk = InProcessSource(spec).next_chunk()\n"
        "print(chunk.users, len(chunk.drops))\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'pydantic'"
        " or m == 'rpi_braze_sync.settings'))\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    assert run.stdout.splitlines() == ["['p0', 'p1', 'p2'] 2", "[]"]


def test_a_file_that_cannot_be_opened_leaves_the_process_serving(
    tmp_path: Path, process: MappingProcess
) -> None:
    first = export(tmp_path / "first.txt", CHUNK_ROWS * 3, "a")
    process.open(spec_for(first)).next_chunk()  # a file in progress, chunks asked ahead
    headless = tmp_path / "no-id.txt"
    headless.write_text("first_name,email\r\nAda,ada@example.com\r\n", encoding="utf-8")
    with pytest.raises(HeaderError, match="external_id"):
        process.open(spec_for(headless))
    items, _, _ = flat(chunks(process.open(spec_for(export(tmp_path / "b.txt", 4, "b")))))
    assert [item[2] for item in items] == ["b0", "b1", "b2", "b3"]
