"""Pure: the messages between the daemon and the mapping process, and how each is framed.

A frame is an 8-byte length, then a one-byte tag naming the message's type, then its fields.
Each type says how it is written, in the table below: a chunk, the bulk of the traffic, is
plain lists, strings and bytes, which marshal writes about four times faster than pickle;
the others are rare and hold richer objects (a FileRequest, an exception), so pickle.
"""

from __future__ import annotations

import marshal
import pickle
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .chunks import ChunkData, FileRequest, KeysData

FRAME_LENGTH = struct.Struct("!Q")


# --- requests, daemon -> mapping process -----------------------------------------------------


@dataclass(frozen=True, slots=True)
class OpenFile:
    """Open this file (closing the one open, if any); answered by Opened or Failed."""

    request: FileRequest


@dataclass(frozen=True, slots=True)
class NextChunk:
    """Read and map the open file's next chunk; answered by Chunk or Failed."""


@dataclass(frozen=True, slots=True)
class NextKeys:
    """Read the open file's next chunk and hold it: phase 1 (deltaprefilter.py), answered by
    Keys or Failed."""


@dataclass(frozen=True, slots=True)
class MapRows:
    """Phase 2 of the oldest chunk held: map the rows `mask` marks (a byte a row, 1: map);
    answered by Chunk (its `skipped`: the others) or Failed."""

    mask: bytes


@dataclass(frozen=True, slots=True)
class CloseFile:
    """Forget the open file. The one request without a reply."""


# --- replies, mapping process -> daemon ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Opened:
    header: list[str]
    warnings: list[str]
    stated: int | None


@dataclass(frozen=True, slots=True)
class Chunk:
    data: ChunkData


@dataclass(frozen=True, slots=True)
class Keys:
    data: KeysData


@dataclass(frozen=True, slots=True)
class Failed:
    """The request failed with this error, raised again on the daemon's side."""

    error: BaseException


Request = OpenFile | NextChunk | NextKeys | MapRows | CloseFile
Reply = Opened | Chunk | Keys | Failed
Message = Request | Reply


def _chunk_fields(message: Chunk) -> bytes:
    c = message.data
    columns = (c.indexes, c.line_numbers, c.users, c.bodies, c.packed)
    rest = (c.rejected, c.drops, c.at_end, c.progress, c.records_read, c.deltas, c.skipped)
    return marshal.dumps((*columns, *rest))


def _chunk_of(fields: memoryview) -> Chunk:
    indexes, line_numbers, users, bodies, packed, rejected, drops, *rest = marshal.loads(fields)
    at_end, progress, records_read, deltas, skipped = rest
    columns = (indexes, line_numbers, users, bodies, packed)
    data = ChunkData(*columns, rejected, drops, at_end, progress, records_read, deltas, skipped)
    return Chunk(data)


def _keys_fields(message: Keys) -> bytes:
    k = message.data
    return marshal.dumps((k.indexes, k.keys, k.raws, k.at_end))


def _keys_of(fields: memoryview) -> Keys:
    return Keys(KeysData(*marshal.loads(fields)))


def _pickled(message: Message) -> bytes:
    return pickle.dumps(message)


def _unpickled(fields: memoryview) -> Any:
    return pickle.loads(fields)


# tag -> (type, how it is written, how it is read back)
_CODECS: dict[bytes, tuple[type[Any], Callable[[Any], bytes], Callable[[memoryview], Any]]] = {
    b"o": (OpenFile, _pickled, _unpickled),
    b"n": (NextChunk, lambda _: b"", lambda _: NextChunk()),
    b"x": (CloseFile, lambda _: b"", lambda _: CloseFile()),
    b"k": (NextKeys, lambda _: b"", lambda _: NextKeys()),
    b"m": (MapRows, lambda m: bytes(m.mask), lambda f: MapRows(bytes(f))),
    b"y": (Keys, _keys_fields, _keys_of),
    b"h": (Opened, _pickled, _unpickled),
    b"c": (Chunk, _chunk_fields, _chunk_of),
    b"f": (Failed, _pickled, _unpickled),
}
_TAGS = {kind: tag for tag, (kind, _, _) in _CODECS.items()}


def frame(message: Message) -> tuple[bytes, bytes, bytes]:
    """One frame in its three parts (length, tag, fields), to be written one after the other:
    a chunk's fields are some 300-400 KB, and joining them into one bytes object copied them
    twice into fresh memory (about 0.5 us a row in the mapping process, whose socket write
    takes the parts as they are). Raises what pickle raises for a Failed whose error it
    cannot carry."""
    tag = _TAGS[type(message)]
    fields = _CODECS[tag][1](message)
    return FRAME_LENGTH.pack(len(fields) + 1), tag, fields


def encode(message: Message) -> bytes:
    """One frame, as one bytes object."""
    return b"".join(frame(message))


def decode(payload: bytes) -> Message:
    """A frame's payload (after its length) back into its message."""
    kind, _, read = _CODECS[payload[:1]]
    message = read(memoryview(payload)[1:])
    if type(message) is not kind:
        raise ValueError(f"a {type(message).__name__} framed as a {kind.__name__}")
    return message  # type: ignore[no-any-return]


def sendable(reply: Reply) -> tuple[bytes, bytes, bytes]:
    """frame(reply), or, for an error pickle cannot carry, a RuntimeError with its type and
    text (the daemon still learns what went wrong)."""
    try:
        return frame(reply)
    except Exception as unsendable:
        what = reply.error if isinstance(reply, Failed) else unsendable
        return frame(Failed(RuntimeError(f"{type(what).__name__}: {what}")))
