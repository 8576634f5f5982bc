"""Shared fixtures: a real fake-Braze server on loopback; a PostgreSQL database per test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from tests.fakebraze import FakeBraze
from tests.pg import Database


@pytest.fixture
async def fake_braze() -> AsyncIterator[FakeBraze]:
    fake = FakeBraze()
    await fake.start()
    try:
        yield fake
    finally:
        await fake.stop()


@pytest.fixture
def pg_url() -> Iterator[str]:
    """The URL of a PostgreSQL database of this test's own, dropped afterwards."""
    database = Database()
    try:
        yield database.url
    finally:
        database.drop()
