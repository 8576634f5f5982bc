"""What every file job of a running daemon shares: the configuration in use and the
collaborators the composition root injects (journal, sender, how chunks are opened, the state
directory's health, delta). One value, replaced on reload, instead of a job's long list of
constructor parameters.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .chunks import OpenChunks
from .config import LoadedConfig
from .delivery import Sender
from .journal import Journal
from .metrics import Metrics
from .statewriter import StateWriter
from .statewrites import StateWrites

if TYPE_CHECKING:
    from .deltarun import DeltaRun  # (imported only when a channel uses delta: lead.py)


@dataclass(frozen=True)
class FileJobContext:
    config: LoadedConfig  # the one in use when a job starts: the job keeps it to its end
    journal: Journal
    sender: Sender
    metrics: Metrics
    open_chunks: OpenChunks  # a worker thread, or the mapping process (sources.chunk_opener)
    state_writes: StateWrites = field(default_factory=StateWrites)
    delta: DeltaRun | None = None  # when a channel uses delta (deltarun.open_delta)
    # The one thread that writes rejects, checkpoints and the outbox, in order (statewriter.py).
    writer: StateWriter = field(default_factory=StateWriter)
    checkpoint_interval_s: float = 1.0  # durable checkpoints (fsync) this often
