"""The mapping process, for real: a child interpreter reading and mapping files over a socket,
several chunks ahead of the one being sent. What it hands back must be exactly what the
in-process source gives; a file abandoned, failed or finished, a caller cancelled, or the
process killed must leave nothing behind for the next file."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path

import pytest

from rpi_braze_sync import mapchild
from rpi_braze_sync.chunkreader import CHUNK_ROWS
from rpi_braze_sync.chunks import (
    ChunkData,
    ChunkSource,
    DropData,
    FileRequest,
    KeysData,
    RejectData,
)
from rpi_braze_sync.codec import FRAME_LENGTH, Failed, OpenFile, decode, encode
from rpi_braze_sync.config import load_config
from rpi_braze_sync.deltarecord import NO_RAW, RAW_AT, WHOLE_AT, user_key
from rpi_braze_sync.errors import (
    FileChangedError,
    HeaderError,
    RecordTooLongError,
    ShareUnavailableError,
)
from rpi_braze_sync.inspection import inspect_file
from rpi_braze_sync.sources import MappingProcess, ThreadSource

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


def spec_for(path: Path, start_index: int = 0) -> FileRequest:
    fmt = CHANNEL.settings.format
    return FileRequest(
        path,
        path.parent,
        inspect_file(path, fmt),
        CHANNEL.plan,
        {"channel": "Braze Onboarding and Upsert", "offer": "Spring", "workflow_id": "7"},
        start_index,
    )


async def chunks(source: ChunkSource) -> list[ChunkData]:
    out = []
    while True:
        chunk = await source.next_chunk()
        out.append(chunk)
        if chunk.at_end:
            return out


ItemData = tuple[int, int, str, bytes, str | list[str]]


def flat(
    chunks: list[ChunkData],
) -> tuple[list[ItemData], list[RejectData], list[tuple[int, DropData]]]:
    items = [
        item
        for c in chunks
        for item in zip(c.indexes, c.line_numbers, c.users, c.bodies, c.packed, strict=True)
    ]
    rejected = [row for chunk in chunks for row in chunk.rejected]
    drops = [(i, drop) for chunk in chunks for i, row in chunk.drops.items() for drop in row]
    return items, rejected, drops


@pytest.fixture
async def process() -> AsyncIterator[MappingProcess]:
    worker = MappingProcess()
    yield worker
    await worker.stop()


async def test_gives_what_the_in_process_source_gives(
    tmp_path: Path, process: MappingProcess
) -> None:
    rows = CHUNK_ROWS * (MappingProcess.PREFETCH_CHUNKS + 2) + 17  # more than it runs ahead
    path = export(tmp_path / "a.txt", rows, "u", bad_every=97)
    local = await ThreadSource.open(spec_for(path))
    expected = flat(await chunks(local))
    await local.close()
    remote = await process.open(spec_for(path))
    got = flat(await chunks(remote))
    await remote.close()
    assert got == expected
    items, _, drops = got
    assert len(items) == rows
    assert [item[0] for item in items] == list(range(rows))
    # The unreal dates, dropped and recorded, each under its row's record index (line 2 is
    # record 0) as the daemon settles it.
    assert drops == [
        (i, (i + 2, "dob", "2024-02-30", "not a real date")) for i in range(0, rows, 97)
    ]


async def users_of(process: MappingProcess, path: Path, start_index: int = 0) -> list[str]:
    source = await process.open(spec_for(path, start_index))
    items, _, _ = flat(await chunks(source))
    await source.close()
    return [item[2] for item in items]


async def started(process: MappingProcess, path: Path) -> ChunkSource:
    """A file opened and its first chunk taken: the process is now mapping ahead."""
    source = await process.open(spec_for(path))
    await source.next_chunk()
    return source


async def cancel_while_waiting(source: ChunkSource, after_s: float = 0.0) -> None:
    """Ask for a chunk and give up before its reply comes, as a cancelled file job does."""
    waiting = asyncio.create_task(source.next_chunk())
    await asyncio.sleep(after_s)  # the request is sent; its reply has not come
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting


async def until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(30):
        while not condition():
            await asyncio.sleep(0.01)


async def test_a_finished_or_abandoned_file_leaves_nothing_for_the_next(
    tmp_path: Path, process: MappingProcess
) -> None:
    first = export(tmp_path / "first.txt", CHUNK_ROWS * 8, "a")
    second = export(tmp_path / "second.txt", CHUNK_ROWS * 3, "b")
    small = export(tmp_path / "small.txt", 3, "c")

    abandoned = await started(process, first)
    await abandoned.close()
    assert await users_of(process, second) == [f"b{i}" for i in range(CHUNK_ROWS * 3)]
    assert await users_of(process, small) == ["c0", "c1", "c2"]  # after one read to its end
    resumed = await users_of(process, first, start_index=CHUNK_ROWS * 7 + 1)
    assert resumed == [f"a{i}" for i in range(CHUNK_ROWS * 7 + 1, CHUNK_ROWS * 8)]


async def test_chunks_asked_for_ahead_are_received_while_nobody_takes_them(
    tmp_path: Path, process: MappingProcess
) -> None:
    # A chunk is larger than the socket's buffer: unless the daemon reads replies as they
    # come, the process blocks on its first send and maps nothing ahead.
    path = export(tmp_path / "ahead.txt", CHUNK_ROWS * (MappingProcess.PREFETCH_CHUNKS + 3), "w")
    source = await started(process, path)
    await until(lambda: process.received_ahead >= MappingProcess.PREFETCH_CHUNKS)
    users = [u for chunk in await chunks(source) for u in chunk.users]
    assert users == [f"w{i}" for i in range(CHUNK_ROWS, CHUNK_ROWS * 11)]
    await source.close()


async def test_asks_fewer_ahead_while_its_replies_wait_to_be_taken(
    tmp_path: Path, process: MappingProcess
) -> None:
    # The daemon slower than the process (clean data): each reply it takes had waited, so it
    # keeps AHEAD_WHEN_WAITING asked for, not PREFETCH_CHUNKS frames waiting in its memory.
    path = export(tmp_path / "slower.txt", CHUNK_ROWS * 20, "s")
    source = await started(process, path)  # it waited for the first: PREFETCH_CHUNKS asked
    await until(lambda: process.received_ahead == MappingProcess.PREFETCH_CHUNKS)
    few = MappingProcess.AHEAD_WHEN_WAITING
    for taken in range(1, MappingProcess.PREFETCH_CHUNKS + 3):
        await until(lambda: process.received_ahead > 0)  # the reply waits to be taken
        await source.next_chunk()
        assert process.asked_ahead == max(few, MappingProcess.PREFETCH_CHUNKS - taken)
    users = [u for chunk in await chunks(source) for u in chunk.users]
    taken_rows = CHUNK_ROWS * (MappingProcess.PREFETCH_CHUNKS + 3)
    assert users == [f"s{i}" for i in range(taken_rows, CHUNK_ROWS * 20)]
    await source.close()


async def test_a_caller_cancelled_while_waiting_leaves_no_stale_reply(
    tmp_path: Path, process: MappingProcess
) -> None:
    first = export(tmp_path / "first.txt", CHUNK_ROWS * 4, "a")
    source = await process.open(spec_for(first))
    await cancel_while_waiting(source)
    await source.close()  # as a cancelled file job does
    other = export(tmp_path / "other.txt", 3, "o")
    assert await users_of(process, other) == ["o0", "o1", "o2"]


async def test_a_killed_process_fails_the_file_for_a_retry_and_is_started_again(
    tmp_path: Path, process: MappingProcess
) -> None:
    path = export(tmp_path / "long.txt", CHUNK_ROWS * 20, "k")
    source = await started(process, path)
    killed = process.pid
    assert killed is not None
    os.kill(killed, signal.SIGKILL)
    with pytest.raises(ShareUnavailableError, match="mapping process stopped"):
        await chunks(source)  # whatever was mapped ahead, then the end of the process
    await source.close()
    other = export(tmp_path / "other.txt", 2, "o")
    assert await users_of(process, other) == ["o0", "o1"]
    assert process.pid not in (None, killed)

    # Killed before its first chunk was asked for: a new process must not be asked for a
    # chunk of a file it never opened.
    source = await process.open(spec_for(path))
    os.kill(process.pid, signal.SIGKILL)
    await until(lambda: not process.running)
    with pytest.raises(ShareUnavailableError, match="mapping process stopped"):
        await source.next_chunk()
    await source.close()
    assert await users_of(process, other) == ["o0", "o1"]


async def test_a_process_that_stops_answering_is_replaced_when_its_file_is_closed(
    tmp_path: Path, process: MappingProcess
) -> None:
    # SIGSTOP stands in for a process stuck on a stalled share: closing its file (as a
    # shutdown or a failed file does) must not wait on it for ever.
    process.CLOSE_WAIT_S = process.EXIT_WAIT_S = 0.2
    path = export(tmp_path / "stalls.txt", CHUNK_ROWS * 3, "s")
    source = await process.open(spec_for(path))
    stalled = process.pid
    assert stalled is not None
    os.kill(stalled, signal.SIGSTOP)
    await cancel_while_waiting(source, after_s=0.05)  # (no reply would ever come)
    async with asyncio.timeout(30):
        await source.close()
    assert not process.running  # (SIGTERM stays pending on a stopped process; SIGKILL does not)
    other = export(tmp_path / "other.txt", 2, "o")
    assert await users_of(process, other) == ["o0", "o1"]
    assert process.pid != stalled


async def test_a_file_that_shrinks_fails_and_the_process_goes_on(
    tmp_path: Path, process: MappingProcess
) -> None:
    path = export(tmp_path / "shrinks.txt", CHUNK_ROWS * 10, "s")
    source = await started(process, path)
    os.truncate(path, path.stat().st_size // 3)
    with pytest.raises(FileChangedError, match="shrank"):  # after the chunks mapped ahead
        await chunks(source)
    await source.close()
    other = export(tmp_path / "other.txt", 5, "o")
    assert await users_of(process, other) == [f"o{i}" for i in range(5)]


def test_the_process_maps_without_pydantic_or_asyncio(tmp_path: Path) -> None:
    # The plan crosses as plain data (plan.py): the process never imports pydantic or builds
    # the settings models, 20 MB of its memory. Nor asyncio, which only the daemon's side
    # needs (sources.py).
    path = export(tmp_path / "plain.txt", 3, "p", bad_every=2)
    request = tmp_path / "request.frame"
    request.write_bytes(encode(OpenFile(spec_for(path)))[FRAME_LENGTH.size :])
    script = (
        "import sys\n"
        "from rpi_braze_sync.chunkreader import ChunkReader\n"
        "from rpi_braze_sync.codec import decode\n"
        f"spec = decode(open({str(request)!r}, 'rb').read()).request\n"
        "chunk = ChunkReader(spec).next_chunk()\n"
        "print(chunk.users, len(chunk.drops))\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('pydantic', 'asyncio')"
        " or m == 'rpi_braze_sync.settings'))\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    assert run.stdout.splitlines() == ["['p0', 'p1', 'p2'] 2", "[]"]


async def test_a_file_that_cannot_be_opened_leaves_the_process_serving(
    tmp_path: Path, process: MappingProcess
) -> None:
    first = export(tmp_path / "first.txt", CHUNK_ROWS * 3, "a")
    await started(process, first)  # a file in progress, chunks asked for ahead
    headless = tmp_path / "no-id.txt"
    headless.write_text("first_name,email\r\nAda,ada@example.com\r\n", encoding="utf-8")
    with pytest.raises(HeaderError, match="external_id"):
        await process.open(spec_for(headless))
    assert await users_of(process, export(tmp_path / "b.txt", 4, "b")) == ["b0", "b1", "b2", "b3"]


def test_an_error_pickle_cannot_carry_still_reaches_the_daemon(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Real input never raises such an error (that is the point): the source is replaced so
    # that opening raises one, and the process's loop runs in a thread of this one.
    class Unpicklable(Exception):
        def __init__(self) -> None:
            super().__init__("a lambda inside")
            self.callback = lambda: None

    def failing_source(spec: FileRequest) -> None:
        raise Unpicklable()

    monkeypatch.setattr(mapchild, "ChunkReader", failing_source)
    ours, theirs = socket.socketpair()
    ours.settimeout(30)
    serving = threading.Thread(target=mapchild.serve, args=(theirs,))
    serving.start()
    with ours, ours.makefile("rb") as replies:
        spec = spec_for(export(tmp_path / "a.txt", 2, "a"))
        ours.sendall(encode(OpenFile(spec)))
        (size,) = FRAME_LENGTH.unpack(replies.read(FRAME_LENGTH.size))
        reply = decode(replies.read(size))
        assert isinstance(reply, Failed)
        assert isinstance(reply.error, RuntimeError)
        assert str(reply.error) == "Unpicklable: a lambda inside"
        ours.shutdown(socket.SHUT_WR)  # the daemon is gone: the loop ends
        serving.join(timeout=30)
    theirs.close()
    assert not serving.is_alive()


@pytest.mark.parametrize("in_process", [True, False], ids=["thread", "mapping-process"])
async def test_a_quote_left_open_at_the_end_is_rejected(
    tmp_path: Path, process: MappingProcess, in_process: bool
) -> None:
    path = tmp_path / "cut.txt"
    path.write_text(HEADER + 'u0,Ada,u0@example.com,1970-01-02,3\r\nu1,"Bo,b@x', encoding="utf-8")
    source = await (
        ThreadSource.open(spec_for(path)) if in_process else process.open(spec_for(path))
    )
    items, rejected, _ = flat(await chunks(source))
    await source.close()
    assert [item[2] for item in items] == ["u0"]
    assert [(index, line, reason.split(":")[1]) for index, line, _, reason in rejected] == [
        (1, 3, " quoted field not closed before end of file (the file may be cut short);"
         " fix the export (close the quote) and send the row again"),
    ]  # fmt: skip
    assert rejected[0][2][0] == "u1"  # its cells kept in the rejects file, to fix it


def test_a_frame_written_in_parts_arrives_whole_through_a_small_send_buffer() -> None:
    # The process writes a chunk's frame as its parts (mapchild.send_parts). A blocking
    # socket's sendmsg takes only some of them when a signal interrupts it; a socket with a
    # timeout (non-blocking underneath) and a send buffer far smaller than the frame does so
    # every time, often ending inside a part: what the daemon reads must still be the joined
    # frame, byte for byte.
    fields = os.urandom(300_000)
    parts = (FRAME_LENGTH.pack(len(fields) + 1), b"c", b"", fields)
    ours, theirs = socket.socketpair()
    theirs.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    theirs.settimeout(30)
    ours.settimeout(30)
    received = bytearray()
    writing = threading.Thread(target=mapchild.send_parts, args=(theirs, parts))
    writing.start()
    with ours, theirs:
        while len(received) < FRAME_LENGTH.size + len(fields) + 1:
            piece = ours.recv(1000)
            assert piece
            received += piece
        writing.join(timeout=30)
        assert not writing.is_alive()
        assert bytes(received) == b"".join(parts)


class EveryThird:
    """A prefilter that skips every third row read, and asks every other chunk in two
    phases (as deltaskip.ChunkSkip switches)."""

    def __init__(self) -> None:
        self.asked = 0
        self.phase_ones: list[KeysData] = []

    @property
    def wanted(self) -> bool:
        self.asked += 1
        return self.asked % 2 == 1

    async def decide(self, keys: KeysData) -> bytes:
        await asyncio.sleep(0)
        self.phase_ones.append(keys)
        return bytes(0 if index % 3 == 0 else 1 for index in keys.indexes)


async def two_phase_chunks(source: ChunkSource, prefilter: EveryThird) -> list[ChunkData]:
    out = []
    while True:
        chunk = await source.next_chunk(prefilter)
        out.append(chunk)
        if chunk.at_end:
            return out


@pytest.mark.parametrize("in_process", [True, False], ids=["thread", "process"])
async def test_two_phases_map_only_the_rows_kept_and_hand_back_the_others(
    tmp_path: Path, process: MappingProcess, in_process: bool
) -> None:
    rows = CHUNK_ROWS * 5 + 17
    path = export(tmp_path / "a.txt", rows, "u", bad_every=97)
    spec = replace(spec_for(path), delta=True)
    whole = await ThreadSource.open(spec)
    items, _, drops = flat(await chunks(whole))
    await whole.close()
    prefilter = EveryThird()
    source = await (ThreadSource.open(spec) if in_process else process.open(spec))
    got = await two_phase_chunks(source, prefilter)
    await source.close()
    phased, _, phased_drops = flat(got)
    skipped = [index for c in got for index in c.skipped or ()]
    asked = {index for keys in prefilter.phase_ones for index in keys.indexes}
    assert sorted(skipped) == [i for i in range(rows) if i % 3 == 0 and i in asked]
    assert skipped  # both kinds of chunk were asked
    assert len(asked) < rows
    assert phased == [item for item in items if item[0] not in set(skipped)]
    assert phased_drops == [(i, d) for i, d in drops if i not in set(skipped)]
    # phase 1: each row's user as the mapping names it, its raw fingerprint set
    users = {item[0]: item[2] for item in items}
    for keys in prefilter.phase_ones:
        assert keys.keys == [user_key(users[i]) for i in keys.indexes]
        assert NO_RAW not in keys.raws
    # a summary names its source row, but where the row dropped a field
    summaries = [s for c in got for s in c.deltas or ()]
    indexes = [i for c in got for i in c.indexes]
    for index, summary in zip(indexes, summaries, strict=True):
        assert (summary[RAW_AT:WHOLE_AT] == NO_RAW) == (index % 97 == 0)


class MapAll:
    """A prefilter that asks every chunk in two phases and maps every row."""

    wanted = True

    async def decide(self, keys: KeysData) -> bytes:
        return b"\1" * len(keys.indexes)


async def take_all(source: ChunkSource, prefilter: MapAll | None, taken: list[ChunkData]) -> None:
    while not (chunk := await source.next_chunk(prefilter)).at_end:
        taken.append(chunk)


@pytest.mark.parametrize("two_phases", [False, True], ids=["one-phase", "two-phases"])
async def test_a_read_error_comes_after_the_chunks_read_before_it(
    tmp_path: Path, process: MappingProcess, two_phases: bool
) -> None:
    """A chunk that cannot be read fails the file once the chunks before it were taken, in
    two phases as in one: their phase 1 answers come before its error, their chunks after."""
    path = export(tmp_path / "a.txt", CHUNK_ROWS * 10, "u")
    bad = CHUNK_ROWS * 5 + 10  # in the sixth chunk: a record over max_record_bytes
    lines = path.read_bytes().split(b"\r\n")
    long_cell = ("x" * 100 + "\r\n") * 30  # over several lines: cannot be rejected alone
    lines[1 + bad] = f'u{bad},"{long_cell}",a@example.com,1950-01-02,1'.encode()
    path.write_bytes(b"\r\n".join(lines))
    spec = spec_for(path)
    plan = replace(spec.plan, read=replace(spec.plan.read, max_record_bytes=2048))
    source = await process.open(replace(spec, plan=plan, delta=True))
    taken: list[ChunkData] = []
    with pytest.raises(RecordTooLongError):
        await take_all(source, MapAll() if two_phases else None, taken)
    await source.close()
    assert [i for chunk in taken for i in chunk.indexes] == list(range(CHUNK_ROWS * 5))


def test_a_process_whose_daemon_was_killed_with_a_reply_unread_ends_quietly(
    tmp_path: Path,
) -> None:
    # kill -9 of the daemon with the process's reply unread resets the socket: the process
    # ends as when the daemon closes it, with no traceback in the daemon's journal.
    path = export(tmp_path / "plain.txt", 3, "p")
    ours, theirs = socket.socketpair()
    child = subprocess.Popen(
        [sys.executable, "-m", "rpi_braze_sync.mapchild", str(theirs.fileno())],
        pass_fds=[theirs.fileno()],
        stderr=subprocess.PIPE,
    )
    theirs.close()
    with ours:
        ours.sendall(encode(OpenFile(spec_for(path))))
        ours.recv(1)  # the reply has come: the rest of it is left unread
    _, stderr = child.communicate(timeout=60)
    assert child.returncode == 0
    assert stderr == b""
