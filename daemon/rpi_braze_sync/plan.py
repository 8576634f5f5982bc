"""Pure: a channel's plan, compiled once at load from its settings: how its files are read
and mapped, as plain data that crosses to the mapping process as it is."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from .mapping import MappingPlan, compile_mapping

if TYPE_CHECKING:
    from .settings import ChannelSettings, FormatSettings


@dataclass(frozen=True, slots=True)
class RecordCount:
    """format.record_count: the line among the skipped ones that states the record count."""

    line: int
    pattern: str


@dataclass(frozen=True, slots=True)
class ReadFormat:
    """What the reader needs of a channel's format (the inspection, in the daemon, has the
    rest: encodings and delimiter)."""

    quote_char: str = '"'
    skip_lines: int = 0
    max_record_bytes: int = 1 << 20
    record_count: RecordCount | None = None

    @classmethod
    def of(cls, fmt: FormatSettings) -> ReadFormat:
        count = fmt.record_count
        return cls(
            fmt.quote_char,
            fmt.skip_lines,
            fmt.max_record_bytes,
            None if count is None else RecordCount(count.line, count.pattern),
        )


@dataclass(frozen=True)
class ChannelPlan:
    read: ReadFormat
    mapping: MappingPlan


def compile_channel_plan(channel: ChannelSettings, path_pattern: str) -> ChannelPlan:
    """MappingError lists every problem of the channel's mapping."""
    mapping = compile_mapping(channel.mapping, channel.mode, path_pattern)
    return ChannelPlan(ReadFormat.of(channel.format), mapping)
