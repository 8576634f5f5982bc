"""deltacolumns: a chunk's summaries made column by column are the bytes deltabody.summary makes
row by row, for chunks of one shape, of several, and of what falls back to the rows."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from rpi_braze_sync.deltabody import summary
from rpi_braze_sync.deltacolumns import summaries


def obj(i: int, **extra: Any) -> dict[str, Any]:
    return {
        "external_id": f"u{i}",
        "first_name": f"First{i % 7}",
        "income": i % 3 or None,
        "dob": {"$time": f"1980-01-0{1 + i % 9}"},
        "rpi_offers": {"add": ["Spring"]},
        "rpi_channel_exec_ids": {"add": [str(5500 + i % 2)]},
        "rpi_cdp_attributes": {"education": "Master", "income": i},
        **extra,
        "_merge_objects": True,
        "_update_existing_only": False,
    }


CHUNKS = {
    "one shape": [obj(i) for i in range(20)],
    "several shapes": [obj(i) if i % 3 else {**obj(i), "home_city": "Paris"} for i in range(20)],
    "not merged": [{**obj(i), "_merge_objects": False} for i in range(5)],
    "merge mixed": [{**obj(i), "_merge_objects": i % 2 == 0} for i in range(6)],
    "several values added": [
        {**obj(i), "rpi_offers": {"add": ["A", "B"][: 1 + i % 2]}} for i in range(6)
    ],
    "added and removed": [
        {**obj(i), "rpi_offers": {"add": ["A"], "remove": ["B"]}} for i in range(4)
    ],
    "an empty add": [{**obj(i), "rpi_offers": {"add": []}} for i in range(3)],
    "a field that is an object in some rows": [
        {**obj(i), "first_name": {"$time": "2024-01-01"} if i % 2 else "Ann"} for i in range(4)
    ],
    "nested keys that differ": [
        {**obj(i), "rpi_cdp_attributes": {"a": 1} if i % 2 else {"b": 2}} for i in range(4)
    ],
    "a nested time": [
        {**obj(i), "rpi_cdp_attributes": {"since": {"$time": "2024-01-01"}}} for i in range(3)
    ],
    "an empty nested object": [{"external_id": "u1", "a": 1, "rpi_cdp_attributes": {}}],
    "one row": [obj(1)],
}


@pytest.mark.parametrize("name", list(CHUNKS))
def test_columns_give_the_rows_summaries(name: str) -> None:
    bodies = [orjson.dumps(o) for o in CHUNKS[name]]
    assert summaries(bodies) == [summary(b) for b in bodies]


def test_no_rows() -> None:
    assert summaries([]) == []
