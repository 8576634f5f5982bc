"""Shared fixtures: a real fake-Braze server on loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.fakebraze import FakeBraze


@pytest.fixture
async def fake_braze() -> AsyncIterator[FakeBraze]:
    fake = FakeBraze()
    await fake.start()
    try:
        yield fake
    finally:
        await fake.stop()
