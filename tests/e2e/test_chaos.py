"""A small chaos run in the default suite: SIGKILLs at random moments lose no row."""

from __future__ import annotations

from pathlib import Path

from tests.chaos import run_chaos


async def test_random_kills_lose_no_row(tmp_path: Path) -> None:
    result = await run_chaos(tmp_path, kills=4, files=2, rows=3000, seed=11)
    print(result.table())
    assert result.expected == 6000
    assert result.missing == 0
    assert result.delivered == 6000
