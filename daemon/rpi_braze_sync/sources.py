"""Where a file job gets its chunks, awaited from the event loop: a worker thread of the
daemon (ThreadSource), or the mapping process (MappingProcess), which takes the per-row work
off the interpreter that sends so that reading and sending use both cores. chunkreader.py does
the reading and mapping itself, in both; codec.py frames what crosses to the process, and
mapchild.py is the process's entry point. `chunk_opener` is what the composition root injects
into file jobs."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import subprocess
import sys
from collections import deque
from collections.abc import Iterable
from typing import NoReturn

from .chunkreader import ChunkReader
from .chunks import ChunkData, FileRequest, OpenChunks, Prefilter
from .codec import (
    FRAME_LENGTH,
    Chunk,
    CloseFile,
    Failed,
    Keys,
    MapRows,
    NextChunk,
    NextKeys,
    Opened,
    OpenFile,
    Reply,
    Request,
    decode,
    encode,
)
from .errors import ShareUnavailableError

log = logging.getLogger(__name__)


class ThreadSource:
    """Everything in the daemon's process: each chunk is read and mapped in a worker thread,
    so the loop that sends never waits on it."""

    def __init__(self, source: ChunkReader) -> None:
        self._source = source
        self.header, self.warnings, self.stated = source.header, source.warnings, source.stated

    @classmethod
    async def open(cls, request: FileRequest) -> ThreadSource:
        return cls(await asyncio.to_thread(ChunkReader, request))

    async def next_chunk(self, prefilter: Prefilter | None = None) -> ChunkData:
        if prefilter is None or not prefilter.wanted:
            return await asyncio.to_thread(self._source.next_chunk)
        keys = await asyncio.to_thread(self._source.keys)  # (the two phases: deltaprefilter.py)
        mask = await prefilter.decide(keys)
        return await asyncio.to_thread(self._source.mapped, mask)

    async def close(self) -> None:
        await asyncio.to_thread(self._source.close)


class MappingProcess:
    """The daemon's one mapping process, started with the first file, and again with the next
    file if it died or was stopped.

    It maps up to PREFETCH_CHUNKS chunks ahead of the one being sent: with one, each process
    waited for the other in turn. Its replies are read from the socket as soon as they
    arrive, whatever the file job is doing: a chunk is larger than the socket's buffer, so
    when replies were read only on demand, the process waited on every send and the chunks
    asked for ahead were not mapped ahead at all.
    """

    PREFETCH_CHUNKS = 8
    # As many ahead when the reply was already there, waiting: the daemon is the slower of
    # the two (clean data), and 8 ahead were 8 frames of some 300 KB waiting in its memory
    # beside the sender's queue. The first wait for a reply goes back to PREFETCH_CHUNKS.
    AHEAD_WHEN_WAITING = 3
    # When a file is closed (done, failed, or at shutdown), its replies still owed are awaited
    # this long; a process that does not answer by then (a stalled share) is stopped, so that
    # neither the next file nor a shutdown waits on it.
    CLOSE_WAIT_S = 10.0
    # From SIGTERM to SIGKILL; then how long to wait before going on without it (a process
    # stuck in the kernel is reaped when it comes back).
    EXIT_WAIT_S = 5.0
    # The reply reader's buffer: past twice this, it stops reading the socket for a while.
    # Above a chunk (about 300 KB), so a chunk never has to wait for that.
    READ_LIMIT = 1 << 20
    # The process's send buffer on the socket: room for a whole chunk (about 300-400 KB), so
    # that it hands a chunk over in one write instead of waiting for the daemon to read the
    # default 208 KB's worth several times a chunk (the kernel caps it at net.core.wmem_max).
    SEND_BUFFER = 1 << 20

    def __init__(self, secret_env: Iterable[str] = ()) -> None:
        # Environment variables the process must not inherit (the API key, the hook's token):
        # it reads export files, and needs no credential.
        self._secret_env = frozenset(secret_env)
        self._process: asyncio.subprocess.Process | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._reading: asyncio.Task[None] | None = None
        self._replies: asyncio.Queue[bytes | None] = asyncio.Queue()
        # Replies the process owes: requests sent whose reply was not taken yet. Counted from
        # what was sent, so a caller cancelled while waiting cannot leave a stale reply to be
        # mistaken for the next file's.
        self._owed = 0
        # Per reply owed, in order: the request it answers. While a phase 1's (NextKeys) is
        # owed, no chunk is asked in one phase: its reply would come before the phase 2 asked
        # for that one.
        self._kinds: deque[type[Request]] = deque()
        # A phase 1's error, raised once the chunks before it were returned (next_chunk).
        self._failed: BaseException | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.returncode is None

    @property
    def received_ahead(self) -> int:
        """Replies received and not yet taken (chunks mapped ahead, waiting in the daemon)."""
        return self._replies.qsize()

    @property
    def asked_ahead(self) -> int:
        """Chunks asked for and not taken yet: received, or being mapped."""
        return self._owed

    async def _ensure(self) -> None:
        if self._writer is None or not self.running:
            await self.stop()
            # A fresh interpreter that imports only the reading and mapping modules (not a
            # fork of a process with threads, nor multiprocessing's spawn, which would import
            # the whole daemon again): its memory is what the mapping needs.
            ours, theirs = socket.socketpair()
            try:
                theirs.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.SEND_BUFFER)
                self._process = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "rpi_braze_sync.mapchild", str(theirs.fileno()),
                    pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL,
                    env={k: v for k, v in os.environ.items() if k not in self._secret_env},
                )  # fmt: skip
                reader, self._writer = await asyncio.open_unix_connection(
                    sock=ours, limit=self.READ_LIMIT
                )
            except BaseException:
                ours.close()
                raise
            finally:
                theirs.close()
            self._replies = asyncio.Queue()
            self._reading = asyncio.create_task(
                self._read_replies(reader, self._replies), name="mapping-process-replies"
            )

    @staticmethod
    async def _read_replies(
        reader: asyncio.StreamReader, replies: asyncio.Queue[bytes | None]
    ) -> None:
        """Every reply, as it arrives; then None, once the process is gone."""
        try:
            while True:
                (size,) = FRAME_LENGTH.unpack(await reader.readexactly(FRAME_LENGTH.size))
                replies.put_nowait(await reader.readexactly(size))
        except (EOFError, OSError):  # (asyncio.IncompleteReadError is an EOFError)
            replies.put_nowait(None)

    async def _send(self, request: Request) -> None:
        """Only opening a file starts the process: one started since the file was opened
        would not know the file the other requests are about."""
        if isinstance(request, OpenFile):
            await self._ensure()
        if self._writer is None or not self.running:
            await self._gone()
        self._writer.write(encode(request))
        if not isinstance(request, CloseFile):  # the only request without a reply
            self._owed += 1  # from now: even if cancelled below, the reply will come
            self._kinds.append(type(request))
        try:
            await self._writer.drain()
        except OSError:
            await self._gone()

    async def _take(self) -> Reply:
        """The next reply owed; the exception it carries is raised."""
        reply, _ = await self._reply()
        if isinstance(reply, Failed):
            raise reply.error
        return reply

    async def _reply(self) -> tuple[Reply, type[Request] | None]:
        """The next reply owed, and the request it answers."""
        payload = await self._replies.get()
        self._owed -= 1
        kind = self._kinds.popleft() if self._kinds else None  # (emptied by stop() meanwhile)
        if payload is None:
            await self._gone()
        reply = decode(payload)
        assert isinstance(reply, Opened | Chunk | Keys | Failed), reply
        return reply, kind

    async def _gone(self) -> NoReturn:
        await self.stop()
        raise ShareUnavailableError("the mapping process stopped; the file will be retried")

    async def open(self, request: FileRequest) -> WorkerSource:
        await self.close_file()  # an abandoned file's chunks asked for ahead, if any
        await self._send(OpenFile(request))
        opened = await self._take()
        assert isinstance(opened, Opened), opened
        return WorkerSource(self, opened.header, opened.warnings, opened.stated)

    async def next_chunk(self, prefilter: Prefilter | None = None) -> ChunkData:
        """The next chunk. With a `prefilter` that wants it, chunks are asked in two phases
        (deltaprefilter.py): each phase 1 answered (Keys) is decided here and its phase 2
        (MapRows) asked at once, so the process reads the chunks after it meanwhile. Each
        chunk asked is one reply owed until its phase 1 is taken, then one until its Chunk.

        A phase 1 that failed (a read error) comes before the Chunks of the phases 2 asked
        ahead of it: its error is raised once those chunks were returned, as in one phase;
        the chunks after it are not asked further (close_file drops their replies)."""
        failed = self._failed
        if failed is not None and MapRows not in self._kinds:
            self._failed = None
            raise failed
        if not self._owed:
            await self._ask(prefilter)
        ahead = self.AHEAD_WHEN_WAITING if self.received_ahead else self.PREFETCH_CHUNKS
        while True:
            reply, kind = await self._reply()
            if isinstance(reply, Failed):
                if kind is not NextKeys:  # a chunk's own (or an earlier one's) error
                    self._failed = None
                    raise reply.error
                if self._failed is None:
                    if MapRows not in self._kinds:
                        raise reply.error
                    self._failed = reply.error
                continue
            if isinstance(reply, Keys):
                if self._failed is not None:  # a chunk after the one that failed
                    continue
                assert prefilter is not None  # (only asked with one)
                mask = await prefilter.decide(reply.data)
                await self._send(MapRows(mask))
                continue
            assert isinstance(reply, Chunk), reply
            if self._failed is None and not reply.data.at_end:
                while self._owed < ahead:  # ask for the next ones now: read while it is sent
                    await self._ask(prefilter)
            return reply.data

    async def _ask(self, prefilter: Prefilter | None) -> None:
        two_phases = prefilter is not None and (prefilter.wanted or NextKeys in self._kinds)
        await self._send(NextKeys() if two_phases else NextChunk())

    async def close_file(self) -> None:
        """Forget the current file: the replies still owed are read and dropped."""
        self._failed = None
        try:
            async with asyncio.timeout(self.CLOSE_WAIT_S):
                await self._discard_owed()
        except TimeoutError:
            log.warning(
                "the mapping process did not answer for %.0f s (a stalled share?): stopped;"
                " a new one starts with the next file",
                self.CLOSE_WAIT_S,
            )
            await self.stop()
            return
        if self.running:
            with contextlib.suppress(ShareUnavailableError):  # (stopped meanwhile)
                await self._send(CloseFile())

    async def _discard_owed(self) -> None:
        while self._owed:
            try:
                await self._take()
            except ShareUnavailableError:
                return  # stopped: nothing left to forget
            except Exception:
                log.debug("discarded a chunk asked for ahead: its error", exc_info=True)

    async def stop(self) -> None:
        reading, self._reading = self._reading, None
        if reading is not None:
            reading.cancel()
            await asyncio.wait([reading])
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()  # the process reads the end of its requests, and exits
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        process, self._process = self._process, None
        if process is not None and process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
            if not await self._exited(process):
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                if not await self._exited(process):
                    log.warning(
                        "the mapping process (pid %d) did not exit, even killed; going on",
                        process.pid,
                    )
        self._owed = 0
        self._kinds.clear()
        self._failed = None

    async def _exited(self, process: asyncio.subprocess.Process) -> bool:
        try:
            await asyncio.wait_for(process.wait(), self.EXIT_WAIT_S)
        except TimeoutError:
            return False
        return True


class WorkerSource:
    """A file open in the mapping process."""

    def __init__(
        self, worker: MappingProcess, header: list[str], warnings: list[str], stated: int | None
    ) -> None:
        self.worker = worker
        self.header = header
        self.warnings = warnings
        self.stated = stated

    async def next_chunk(self, prefilter: Prefilter | None = None) -> ChunkData:
        return await self.worker.next_chunk(prefilter)

    async def close(self) -> None:
        await self.worker.close_file()


def chunk_opener(mapping_process: MappingProcess | None) -> OpenChunks:
    """How file jobs open their files: in the mapping process when there is one, else in a
    worker thread of the daemon (performance.mapping_process: false)."""
    return ThreadSource.open if mapping_process is None else mapping_process.open
