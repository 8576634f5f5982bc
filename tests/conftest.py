"""Shared fixtures: a real fake-Braze server on loopback; a PostgreSQL database per test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from tests.fakebraze import FakeBraze
from tests.pg import Database

# Started first: `make test` runs two workers (pytest-xdist, --dist worksteal), and the
# longest test begun last would leave one worker idle while it runs alone.
LONGEST = ("tests/integration/test_benchmark_smoke.py",)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: not item.nodeid.startswith(LONGEST))  # stable: order kept


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
