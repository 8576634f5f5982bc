"""Pure: a channel's mapping bound to one file: its FilePlan and the executors generated from
it, and `map_rows`, the one way rows become request bodies, rejections and drops. Sending
(chunkreader.py), `preview` and `check` all call it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import orjson

from .chunks import Drop
from .columnar import ChunkFunction, compile_chunk_function
from .deltabody import summary
from .deltacolumns import Recorded, from_columns
from .deltaprefilter import keepable, with_raw
from .fileplan import FilePlan, plan_file
from .mapping import MappingPlan, Rejection
from .rowcode import RowFunction, compile_row_function


@dataclass
class MappedRows:
    """Rows mapped, one entry a row: its body (None: rejected, see `reasons`) and its user;
    then the fields dropped, by row."""

    bodies: list[bytes | None]
    users: list[str]
    reasons: dict[int, str] = field(default_factory=dict)  # row -> why it is rejected
    dropped: dict[int, list[Drop]] = field(default_factory=dict)  # row -> its fields dropped
    # Delta on: each row's summary (deltarecord.py), None where it is rejected.
    summaries: list[bytes | None] | None = None

    @property
    def drops(self) -> list[Drop]:
        """Every field dropped, in row order."""
        dropped = self.dropped
        return [d for i in sorted(dropped) for d in dropped[i]]


class FileMapper:
    """The executors of one file's plan: `map_row` (the generated row function), `map_chunk`
    (the column-wise encoder, None where the plan has none), and `map_rows`, both together."""

    def __init__(self, plan: FilePlan) -> None:
        self.plan = plan
        self.header = plan.header
        self.warnings = plan.warnings
        self.map_row: RowFunction = compile_row_function(plan)
        self.map_chunk: ChunkFunction | None = compile_chunk_function(plan)

    def map_rows(
        self,
        rows: Sequence[list[str]],
        line_numbers: Sequence[int],
        delta: bool = False,
        raws: Sequence[bytes] | None = None,
    ) -> MappedRows:
        """Column-wise where it can, the row function for the rest; with `delta`, each row's
        summary too: from the columns, or parsed from the body the row function made; with
        `raws` (deltaprefilter.raw_fps), each naming its source row where it may."""
        summaries: list[bytes | None] | None = None
        if self.map_chunk is not None:
            recorded: list[Recorded] | None = [] if delta else None
            bodies, users, dropped = self.map_chunk(rows, line_numbers, recorded)
            if recorded:
                summaries = from_columns(recorded[0], bodies, raws, dropped)
        else:
            bodies, users, dropped = [None] * len(rows), [""] * len(rows), {}
        reasons: dict[int, str] = {}
        if not all(bodies):  # (a None among them: all() is 4 times faster than `None in`)
            dumps, map_row = orjson.dumps, self.map_row
            for i, body in enumerate(bodies):
                if body is not None:
                    continue
                result = map_row(rows[i], line_numbers[i])
                if isinstance(result, Rejection):
                    reasons[i] = result.reason
                    continue
                if result.drops:
                    dropped[i] = result.drops
                # orjson's result keeps its whole working buffer (4 KB or more) alive; a
                # right-sized copy is what waits in memory for Braze.
                bodies[i] = bytes(memoryview(dumps(result.attributes)))
                users[i] = result.user
        if delta and (summaries is None or not all(summaries)):
            summaries = summaries or [None] * len(rows)
            for i, s in enumerate(summaries):
                body = bodies[i]
                if s is None and body is not None:
                    s = summaries[i] = summary(body)
                    if raws is not None and i not in dropped and keepable(s):
                        summaries[i] = with_raw(s, raws[i])
        return MappedRows(bodies, users, reasons, dropped, summaries)


def bind(mapping: MappingPlan, header: Sequence[str], path_values: Mapping[str, str]) -> FileMapper:
    """The mapping fitted to a file's header; HeaderError if it cannot be."""
    return FileMapper(plan_file(mapping, header, path_values))
