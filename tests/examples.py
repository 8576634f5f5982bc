"""How many examples each property-based test draws. The default suite (`make test`, CI) draws
half of each test's count, so that it stays within its 10 minutes on a slow 2-core machine
(these tests took 227 of a 606 s suite there); `make test-thorough` sets
RPI_BRAZE_SYNC_THOROUGH=1 and draws them all. Each run draws new examples either way."""

from __future__ import annotations

import os

THOROUGH = os.environ.get("RPI_BRAZE_SYNC_THOROUGH") == "1"


def examples(thorough: int) -> int:
    """The count a test draws: `thorough` in a thorough run, half of it otherwise."""
    return thorough if THOROUGH else max(10, thorough // 2)
