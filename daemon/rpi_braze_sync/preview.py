"""`preview` and the export part of `check`: an export file mapped as the daemon would, with
nothing sent and no state written.

Errors say which kind they are, for the exit status: a file outside the channel layout is a
usage error (64), a file that cannot be used is a data error (65), a missing one 66.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

import orjson

from .boundedlines import CsvRecord
from .chunks import Drop
from .config import Channel, LoadedConfig, load_config
from .errors import ExportFileError, HeaderError, InputMissingError, UsageError
from .inspection import inspect_file
from .mapper import FileMapper, MappedRows, bind
from .mapping import parse_path_pattern
from .reader import ExportReader
from .shareio import special_kind
from .watchrules import ExportPath, classify_path

if TYPE_CHECKING:
    from .deltaview import DeltaView  # (imported by --explain only: the daemon loads this module)


def channel_for(
    config: LoadedConfig, export_file: Path, name: str | None
) -> tuple[Channel, dict[str, str]]:
    """The channel of an export, from --channel or from the folders the file sits in."""
    pattern = parse_path_pattern(config.settings.watch.path_pattern)
    parts = export_file.resolve().parts[-(len(pattern) + 1) :]
    where = classify_path("/".join(parts), pattern, set(config.channels))
    values = where.values if isinstance(where, ExportPath) else {"file_name": export_file.name}
    if name is None:
        if not isinstance(where, ExportPath):
            layout = config.settings.watch.path_pattern.replace("{", "<").replace("}", ">")
            raise UsageError(
                f"{export_file}: not under {layout}/ of a configured channel; name one with"
                f" --channel ({', '.join(repr(c) for c in config.channels)})"
            )
        name = where.channel
    if name not in config.channels:
        raise UsageError(f"--channel {name!r} is not one of {', '.join(config.channels)}")
    return config.channels[name], values


def open_mapped(
    config: LoadedConfig, export_file: Path, name: str | None
) -> tuple[ExportReader, FileMapper]:
    """The export's reader and its channel's mapping bound to its header."""
    channel, values = channel_for(config, export_file, name)
    try:
        kind = special_kind(export_file.stat().st_mode)
    except FileNotFoundError:
        raise InputMissingError(f"{export_file}: no such file") from None
    except OSError as exc:
        raise InputMissingError(f"{export_file}: {exc.strerror}") from None
    if kind is not None:  # (a FIFO would block the read: named, never opened)
        raise ExportFileError(f"{export_file}: a {kind}, not a regular file: not read")
    fmt = channel.settings.format
    try:
        inspection = inspect_file(export_file, fmt)
    except ExportFileError as exc:
        raise ExportFileError(f"{export_file}: {exc}") from None
    except OSError as exc:
        raise InputMissingError(f"{export_file}: {exc.strerror}") from None
    try:
        reader = ExportReader(export_file, inspection, channel.plan.read)
    except ExportFileError as exc:
        raise ExportFileError(f"{export_file}: {exc}") from None
    try:
        mapper = bind(channel.plan.mapping, reader.header, values)
    except HeaderError as exc:
        reader.close()
        raise ExportFileError(f"{export_file}: header: {exc}") from None
    return reader, mapper


def cmd_preview(args: argparse.Namespace) -> int:
    config = load_config(args.config, dry_run=True, secrets=False)
    reader, mapper = open_mapped(config, args.export_file, args.channel)
    out, err = sys.stdout, sys.stderr
    for warning in mapper.warnings:
        print(f"warning: {warning}", file=err)
    view = None
    if args.explain:  # what delta would leave out (deltaview.py), the store read-only
        from .deltaview import DeltaView

        channel, _ = channel_for(config, args.export_file, args.channel)
        view = DeltaView.open(args.config, config, channel.name)
        if view is not None:
            print(view.note, file=out)
    objects = 0
    rejected: Counter[str] = Counter()
    dropped: Counter[str] = Counter()
    limit: int | None = args.limit  # rows of the file; None: all of them
    read = 0
    with reader:
        while limit is None or read < limit:
            records = reader.take(1000 if limit is None else min(1000, limit - read))
            if not records:
                break
            read += len(records)
            mapped = _map_records(mapper, records)
            drops_of: dict[int, list[Drop]] = {}
            for drop in mapped.drops:
                drops_of.setdefault(drop.line_no, []).append(drop)
            for i, record in enumerate(records):  # what the daemon would send, as it would
                line_no, body, drops = (
                    record.line_no,
                    mapped.bodies[i],
                    drops_of.get(record.line_no, []),
                )
                reason = mapped.reasons.get(i)
                if args.explain and objects + rejected.total() < args.sample:
                    _explain(
                        out, reader.header, record.cells, line_no, body, reason, drops,
                        mapped.users[i], view,
                    )  # fmt: skip
                if reason is not None:
                    rejected[reason] += 1
                    if not args.explain:
                        print(f"line {line_no}: rejected: {reason}", file=err)
                    continue
                objects += 1
                if not args.explain:
                    assert body is not None
                    out.write(body.decode() + "\n")
                for drop in drops:
                    dropped[f"{drop.field}: {drop.reason}"] += 1
                    if not args.explain:
                        what = f"{drop.field}={drop.value!r}: {drop.reason}"
                        print(f"line {drop.line_no}: dropped {what}", file=err)
    summary = err if not args.explain else out
    limited = f" (the first {limit} rows)" if limit is not None and read >= limit else ""
    print(
        f"{objects} objects, {rejected.total()} rows rejected, {dropped.total()} fields dropped"
        + limited,
        file=summary,
    )
    if args.explain:
        for title, counts in (("rejected", rejected), ("dropped", dropped)):
            for reason, count in counts.most_common():
                print(f"  {title} {count} x {reason}", file=out)
    out.flush()
    if view is not None:
        view.close()
    return 0


def _explain(
    out: TextIO,
    header: list[str],
    cells: list[str],
    line_no: int,
    body: bytes | None,
    reason: str | None,
    drops: list[Drop],
    user: str = "",
    view: DeltaView | None = None,
) -> None:
    """One source row beside what Braze would receive for it."""
    print(f"line {line_no}:", file=out)
    width = max((len(h) for h in header), default=0)
    for name, cell in zip(header, cells, strict=False):
        print(f"  {name:<{width}} = {cell!r}", file=out)
    if reason is not None or body is None:
        print(f"  -> rejected: {reason}\n", file=out)
        return
    print(f"  -> {body.decode()}", file=out)
    if view is not None:
        print(f"  -> {view.explain(user, orjson.loads(body))}", file=out)
    for drop in drops:
        print(f"  -> dropped {drop.field}={drop.value!r}: {drop.reason}", file=out)
    print(file=out)


def _map_records(mapper: FileMapper, records: list[CsvRecord]) -> MappedRows:
    """Records mapped as the daemon maps them: one the reader could not read as it is (too
    long, a quote left open at the end) rejected with the reader's reason, not its cells."""
    mapped = mapper.map_rows([r.cells for r in records], [r.line_no for r in records])
    for i, record in enumerate(records):
        if record.unread is not None:
            mapped.reasons[i] = record.unread
            mapped.bodies[i] = None
    return mapped


def check_export(
    config: LoadedConfig, export_file: Path, channel: str | None, sample_rows: int
) -> str:
    """One line on whether the export's header fits and how many sample rows would be
    rejected; raises the error that makes it unusable."""
    reader, mapper = open_mapped(config, export_file, channel)
    with reader:
        records = reader.take(sample_rows)
        rejected = len(_map_records(mapper, records).reasons)
    notes = "; ".join(mapper.warnings)
    return (
        f"{export_file}: header fits; {rejected} of the first {sample_rows} rows"
        " would be rejected" + (f"; {notes}" if notes else "")
    )
