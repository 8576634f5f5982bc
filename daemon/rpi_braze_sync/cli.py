"""Command line: run the daemon, preview or check an export, show the journal.

Exit status: 0 success, 78 configuration error (systemd does not restart on it), 65 an export
file that cannot be used, 1 anything else.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

import orjson

from .app import serve
from .config import Channel, LoadedConfig, load_config
from .errors import EXIT_CONFIG, ConfigError, ExportFileError, JournalError
from .journal import Journal, journal_path
from .logs import configure_logging
from .mapping import HeaderError, Mapped, Rejection, RowMapper, parse_path_pattern
from .reader import ExportReader, inspect_file
from .settings import json_schema
from .watchrules import ExportPath, classify_path

EXIT_DATA = 65
DEFAULT_CONFIG = "/etc/rpi-braze-sync/rpi-braze-sync.yaml"


def _config_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        default=os.environ.get("RPI_BRAZE_SYNC_CONFIG", DEFAULT_CONFIG),
        help=f"the YAML configuration (default $RPI_BRAZE_SYNC_CONFIG or {DEFAULT_CONFIG})",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rpi-braze-sync", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="watch the export folder and send complete files to Braze")
    _config_arg(run)
    run.add_argument("--dry-run", action="store_true", help="write request bodies to the outbox")
    run.add_argument("--state-directory", help="overrides state_directory")
    run.add_argument("--log-format", choices=["text", "json"], help="overrides log_format")
    run.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])

    preview = sub.add_parser("preview", help="print the Braze objects an export would produce")
    _config_arg(preview)
    preview.add_argument("export_file", type=Path)
    preview.add_argument("--channel", help="channel to map with (default: from the file's path)")
    preview.add_argument(
        "--explain",
        action="store_true",
        help="show sample rows beside their Braze objects, and counts of rejects by reason",
    )
    preview.add_argument("--sample", type=int, default=5, help="rows shown with --explain")

    check = sub.add_parser("check", help="validate the configuration and, optionally, exports")
    _config_arg(check)
    check.add_argument("export_files", nargs="*", type=Path)
    check.add_argument("--channel", help="channel to check exports against")
    check.add_argument("--sample-rows", type=int, default=1000)

    retry = sub.add_parser("retry", help="send a failed or partly rejected file again")
    _config_arg(retry)
    retry.add_argument("path", help="the export, relative to the base folder or absolute")
    retry.add_argument("--dry-run", action="store_true", help="queue it in the dry run's journal")
    retry.add_argument("--state-directory", help="overrides state_directory")

    sub.add_parser("schema", help="print the configuration's JSON Schema")

    status = sub.add_parser("status", help="files in the journal, by state")
    _config_arg(status)
    status.add_argument("--json", action="store_true", help="one JSON object per file")
    status.add_argument("--dry-run", action="store_true", help="show the dry run's journal")
    status.add_argument("--state-directory", help="overrides state_directory")
    return parser


def _channel_for(
    config: LoadedConfig, export_file: Path, name: str | None
) -> tuple[Channel, dict[str, str]]:
    """The channel of an export, from --channel or from the folders the file sits in."""
    pattern = parse_path_pattern(config.settings.watch.path_pattern)
    parts = export_file.resolve().parts[-(len(pattern) + 1) :]
    where = classify_path("/".join(parts), pattern, set(config.channels))
    values = where.values if isinstance(where, ExportPath) else {"file_name": export_file.name}
    if name is None:
        if not isinstance(where, ExportPath):
            raise ConfigError(
                [
                    f"{export_file}: not under <channel>/<offer>/<workflow id>/ of a configured"
                    " channel; use --channel"
                ]
            )
        name = where.channel
    if name not in config.channels:
        raise ConfigError([f"--channel {name!r} is not one of {', '.join(config.channels)}"])
    return config.channels[name], values


def _open_mapped(
    config: LoadedConfig, export_file: Path, name: str | None
) -> tuple[ExportReader, RowMapper]:
    channel, values = _channel_for(config, export_file, name)
    fmt = channel.settings.format
    inspection = inspect_file(export_file, fmt)
    reader = ExportReader(export_file, inspection, fmt)
    try:
        mapper = channel.mapping.bind(reader.header, values)
    except HeaderError as exc:
        reader.close()
        raise ExportFileError(f"header: {exc}") from None
    return reader, mapper


def cmd_preview(args: argparse.Namespace) -> int:
    config = load_config(args.config, dry_run=True, secrets=False)
    reader, mapper = _open_mapped(config, args.export_file, args.channel)
    out, err = sys.stdout, sys.stderr
    for warning in mapper.warnings:
        print(f"warning: {warning}", file=err)
    objects = 0
    rejected: Counter[str] = Counter()
    dropped: Counter[str] = Counter()
    with reader:
        while records := reader.take(1000):
            for record in records:
                result = mapper.map_row(record.cells, record.line_no)
                shown = args.explain and objects + rejected.total() < args.sample
                if shown:
                    _explain(out, reader.header, record.cells, record.line_no, result)
                if isinstance(result, Rejection):
                    rejected[result.reason] += 1
                    if not args.explain:
                        print(f"line {result.line_no}: rejected: {result.reason}", file=err)
                    continue
                objects += 1
                if not args.explain:
                    out.write(orjson.dumps(result.attributes).decode() + "\n")
                for drop in result.drops or ():
                    dropped[f"{drop.field}: {drop.reason}"] += 1
                    if not args.explain:
                        what = f"{drop.field}={drop.value!r}: {drop.reason}"
                        print(f"line {drop.line_no}: dropped {what}", file=err)
    summary = err if not args.explain else out
    print(
        f"{objects} objects, {rejected.total()} rows rejected, {dropped.total()} fields dropped",
        file=summary,
    )
    if args.explain:
        for title, counts in (("rejected", rejected), ("dropped", dropped)):
            for reason, count in counts.most_common():
                print(f"  {title} {count} x {reason}", file=out)
    out.flush()
    return 0


def _explain(
    out: TextIO, header: list[str], cells: list[str], line_no: int, result: Mapped | Rejection
) -> None:
    """One source row beside what Braze would receive for it."""
    print(f"line {line_no}:", file=out)
    width = max((len(h) for h in header), default=0)
    for name, cell in zip(header, cells, strict=False):
        print(f"  {name:<{width}} = {cell!r}", file=out)
    if isinstance(result, Rejection):
        print(f"  -> rejected: {result.reason}\n", file=out)
        return
    print(f"  -> {orjson.dumps(result.attributes).decode()}", file=out)
    for drop in result.drops or ():
        print(f"  -> dropped {drop.field}={drop.value!r}: {drop.reason}", file=out)
    print(file=out)


def cmd_check(args: argparse.Namespace) -> int:
    config = load_config(args.config, dry_run=True, secrets=False)
    print(f"{args.config}: configuration is valid ({len(config.channels)} channels)")
    status = 0
    for export_file in args.export_files:
        try:
            reader, mapper = _open_mapped(config, export_file, args.channel)
        except (ExportFileError, ConfigError) as exc:
            print(f"{export_file}: {exc}")
            status = EXIT_CONFIG
            continue
        rejected = 0
        with reader:
            for record in reader.take(args.sample_rows):
                if isinstance(mapper.map_row(record.cells, record.line_no), Rejection):
                    rejected += 1
        notes = "; ".join(mapper.warnings)
        print(
            f"{export_file}: header fits; {rejected} of the first {args.sample_rows} rows"
            " would be rejected" + (f"; {notes}" if notes else "")
        )
    return status


def cmd_status(args: argparse.Namespace) -> int:
    # Only the journal is read, so a live configuration needs no API key here.
    config = load_config(
        args.config, dry_run=True, state_directory=args.state_directory, secrets=False
    )
    path = journal_path(config.state_directory, dry_run=args.dry_run)
    if not path.exists():
        print(f"no journal at {path}: the daemon has not run with this state directory")
        return 0
    journal = Journal(path, read_only=True)
    try:
        records = journal.all()
    finally:
        journal.close()
    if args.json:
        for r in records:
            sys.stdout.write(orjson.dumps(r.__dict__).decode() + "\n")
        return 0
    print(f"{'STATE':<12} {'SENT':>9} {'REJECTED':>9} {'DROPPED':>8} {'CHECKPOINT':>10}  FILE")
    for r in records:
        print(
            f"{r.state:<12} {r.rows_sent:>9} {r.rows_rejected:>9} {r.fields_dropped:>8}"
            f" {r.checkpoint:>10}  {r.rel_path}"
        )
        if r.reason:
            print(f"{'':<53}  reason: {r.reason}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:

    def load() -> LoadedConfig:
        return load_config(
            args.config,
            dry_run=True if args.dry_run else None,
            state_directory=args.state_directory,
        )

    config = load()
    configure_logging(
        (args.log_format or config.settings.log_format) == "json",
        getattr(logging, args.log_level.upper()),
    )
    return asyncio.run(serve(config, load))


def cmd_retry(args: argparse.Namespace) -> int:
    config = load_config(
        args.config, dry_run=True, state_directory=args.state_directory, secrets=False
    )
    base = config.base_output_directory
    path = Path(args.path)
    full = path if path.is_absolute() else base / path
    try:
        rel = full.resolve().relative_to(base.resolve()).as_posix()
    except ValueError:
        raise ConfigError([f"{args.path}: not under the export folder {base}"]) from None
    try:
        st = full.stat()
    except OSError as exc:
        print(f"{full}: {exc.strerror}", file=sys.stderr)
        return EXIT_DATA
    journal = Journal(journal_path(config.state_directory, dry_run=args.dry_run))
    try:
        record = journal.latest(rel)
        if record is None:
            print(
                f"{rel}: not in the journal; the daemon sends new files by itself", file=sys.stderr
            )
            return EXIT_DATA
        if record.state in ("complete", "sending", "seen"):
            print(f"{rel}: already queued ({record.state})")
            return 0
        queued = journal.request_retry(record, st.st_size, st.st_mtime_ns)
    finally:
        journal.close()
    print(
        f"{rel}: queued again (record {queued.id}, after {record.state} record {record.id});"
        " a running daemon sends it within seconds, otherwise at its next start"
    )
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    sys.stdout.write(orjson.dumps(json_schema(), option=orjson.OPT_INDENT_2).decode() + "\n")
    return 0


COMMANDS = {
    "run": cmd_run,
    "preview": cmd_preview,
    "check": cmd_check,
    "status": cmd_status,
    "schema": cmd_schema,
    "retry": cmd_retry,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"configuration error: {problem}", file=sys.stderr)
        return EXIT_CONFIG
    except ExportFileError as exc:
        print(f"{getattr(args, 'export_file', '')}: {exc}", file=sys.stderr)
        return EXIT_DATA
    except JournalError as exc:
        print(f"journal error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
