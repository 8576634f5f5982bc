"""The mapping process's entry point: `python -m rpi_braze_sync.mapchild FD` serves the
daemon's requests (codec.py) on the socket FD, one file at a time, with a ChunkReader.

A fresh interpreter that imports only what reading and mapping need (no pydantic, no asyncio):
its memory is what the mapping needs. sources.MappingProcess starts and drives it.
"""

from __future__ import annotations

import gc
import signal
import socket
import sys
from typing import BinaryIO

from .chunkreader import ChunkReader
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
    sendable,
)


def tune_garbage_collector() -> None:
    """Rows make many short-lived dicts and lists and no reference cycles to speak of: the
    default collector ran every 700 allocations and took half the mapping time. Collect
    young objects less often, and never rescan what start-up loaded (modules, config).
    Both the daemon and the mapping process call this."""
    gc.freeze()
    gc.set_threshold(50_000, 20, 50)


def read_request(requests: BinaryIO) -> Request | None:
    """The daemon's next request; None once the daemon is gone (closed, or killed with a reply
    of ours unread: the socket reset, which is no error of this process's to report)."""
    try:
        header = requests.read(FRAME_LENGTH.size)
        size = FRAME_LENGTH.unpack(header)[0] if len(header) == FRAME_LENGTH.size else -1
        payload = requests.read(size) if size >= 0 else b""
    except ConnectionResetError:
        return None
    if len(payload) != size:
        return None
    request = decode(payload)
    assert isinstance(request, OpenFile | NextChunk | NextKeys | MapRows | CloseFile), request
    return request


class Server:
    """One file at a time, each request answered in turn (the daemon asks for several chunks
    ahead)."""

    def __init__(self) -> None:
        self.reader: ChunkReader | None = None

    def answer(self, request: Request) -> Reply | None:
        """The reply to a request (an error is one); None for a request without a reply."""
        try:
            if isinstance(request, OpenFile):
                self._close()  # (if the new file fails to open, no stale one is read)
                self.reader = reader = ChunkReader(request.request)
                return Opened(reader.header, reader.warnings, reader.stated)
            if isinstance(request, NextChunk):
                assert self.reader is not None
                return Chunk(self.reader.next_chunk())
            if isinstance(request, NextKeys):  # (the two phases: deltaprefilter.py)
                assert self.reader is not None
                return Keys(self.reader.keys())
            if isinstance(request, MapRows):
                assert self.reader is not None
                return Chunk(self.reader.mapped(request.mask))
            self._close()
            return None
        except Exception as exc:
            return Failed(exc)

    def _close(self) -> None:
        if self.reader is not None:
            self.reader.close()
            self.reader = None


def serve(channel: socket.socket) -> None:
    server = Server()
    with channel.makefile("rb") as requests:
        while (request := read_request(requests)) is not None:
            reply = server.answer(request)
            if reply is None:
                continue
            try:
                send_parts(channel, sendable(reply))
            except OSError:  # the daemon is gone
                return


def send_parts(channel: socket.socket, parts: tuple[bytes, ...]) -> None:
    """sendall of the parts joined, without joining them (a chunk's are 300-400 KB)."""
    views = [memoryview(part) for part in parts if part]
    while views:
        sent = channel.sendmsg(views)
        while views and sent >= len(views[0]):
            sent -= len(views.pop(0))
        if sent:
            views[0] = views[0][sent:]


def main() -> None:
    # Ctrl-C in a terminal signals the whole process group: the daemon stops this process
    # itself (it closes the socket, then terminates it), without a KeyboardInterrupt here.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    tune_garbage_collector()
    serve(socket.socket(fileno=int(sys.argv[1])))


if __name__ == "__main__":  # (every message class lives in codec.py: pickled by that name)
    main()
