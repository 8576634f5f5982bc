"""Pure: the bytes a file job holds for rows it has taken and not yet checkpointed (their
bodies and source rows, and delta's copies), chunk by chunk. The job reads no further while
they are over its bound (backlog.py): the sender's own bounds count rows, and a row can be
1 MiB."""

from __future__ import annotations

from collections import deque


class HeldChunks:
    def __init__(self) -> None:
        # (index after the chunk's last row, its bytes). A chunk is released once the
        # checkpoint passes it: rows settled ahead of the checkpoint still count (a bound).
        self._chunks: deque[tuple[int, int]] = deque()
        self.bytes = 0

    def take(self, end: int, size: int) -> None:
        self._chunks.append((end, size))
        self.bytes += size

    def release_to(self, checkpoint: int) -> int:
        """Let go of the chunks the checkpoint passed; the bytes still held."""
        chunks = self._chunks
        while chunks and chunks[0][0] <= checkpoint:
            self.bytes -= chunks.popleft()[1]
        return self.bytes
