"""Command line: run the daemon, check and preview exports, show the journal, install files.

Exit statuses (sysexits.h), the same for every command:
  0    success; `run`: stopped by SIGTERM or SIGINT, progress checkpointed
  1    `run`: one of the daemon's tasks failed unexpectedly (systemd restarts it)
  64   usage: a wrong argument; an export outside <channel>/<offer>/<workflow id>/ without
       --channel; `retry` of a file the journal does not know
  65   data: an export file that cannot be used (encoding, header, CSV); the journal is
       damaged or is not a journal (systemd does not restart on it; README: "A damaged
       journal")
  66   no input: the export file, or the journal (`status`, `retry`), does not exist
  69   unavailable: `run` cannot listen on its address (in use, not local, not allowed);
       `check --online` cannot reach Braze or Braze cannot answer now
  73   `init`: a file exists already (use --force) or cannot be written
  74   I/O error: the journal cannot be opened or read
  75   `run`: another rpi-braze-sync is running on the same state directory (systemd
       restarts it, so it starts once the other one stops); `forget`: a running daemon
       holds delta's store
  77   `check --online`: Braze refuses the API key
  78   configuration error (systemd does not restart on it)
  130  interrupted (Ctrl-C) outside `run`
  141  the reader of the output went away (`preview FILE | head`): stops quietly
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

import orjson

from . import forget, package_version
from .app import serve
from .assets import cmd_init
from .check import cmd_check
from .completion import cmd_completion
from .config import LISTEN_ENV, LoadedConfig, load_config
from .errors import (
    EXIT_USAGE,
    InputMissingError,
    RpiBrazeSyncError,
    UsageError,
    error_lines,
    exit_status,
)
from .filestates import QUEUED_STATES, STATES, FileState
from .logs import configure_logging, display_name, undisplay_name
from .preview import cmd_preview
from .settings import host_port_problem, json_schema
from .statedir import restrict_umask
from .status import cmd_status, existing_journals, load_for_journal, open_journal

DEFAULT_CONFIG = "/etc/rpi-braze-sync/rpi-braze-sync.yaml"
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell shows for `yes | head`


class Parser(argparse.ArgumentParser):
    """Usage errors exit 64 (EX_USAGE), as the commands' own usage errors do, not 2."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _listen_address(value: str) -> str:
    problem = host_port_problem(value)
    if problem is not None:
        raise argparse.ArgumentTypeError(problem)
    return value


def _positive(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"expects a whole number of 1 or more; got {value!r}")
    return int(value)


def _config_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        default=os.environ.get("RPI_BRAZE_SYNC_CONFIG", DEFAULT_CONFIG),
        help=f"the YAML configuration (default $RPI_BRAZE_SYNC_CONFIG or {DEFAULT_CONFIG})",
    )


def _journal_args(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument(
        "--dry-run", action="store_true", help=f"{what} the dry run's journal, whatever the YAML"
    )
    parser.add_argument("--state-directory", help="overrides state_directory")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="rpi-braze-sync",
        description=__doc__.splitlines()[0],
        epilog=__doc__.split("\n\n", 1)[1],  # the exit statuses
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="watch the export folder and send complete files to Braze")
    _config_arg(run)
    run.add_argument("--dry-run", action="store_true", help="write request bodies to the outbox")
    run.add_argument("--state-directory", help="overrides state_directory")
    run.add_argument("--log-format", choices=["text", "json"], help="overrides logging.format")
    run.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    run.add_argument(
        "--listen",
        type=_listen_address,
        metavar="HOST:PORT",
        help=f"address of /metrics, /healthz, /readyz; overrides ${LISTEN_ENV} and http.listen",
    )

    preview = sub.add_parser("preview", help="print the Braze objects an export would produce")
    _config_arg(preview)
    preview.add_argument("export_file", type=Path)
    preview.add_argument("--channel", help="channel to map with (default: from the file's path)")
    preview.add_argument(
        "--explain",
        action="store_true",
        help="show sample rows beside their Braze objects, and counts of rejects by reason",
    )
    preview.add_argument("--sample", type=_positive, default=5, help="rows shown with --explain")
    preview.add_argument("--limit", type=_positive, metavar="N", help="only the first N rows")

    check = sub.add_parser("check", help="validate the configuration and, optionally, exports")
    _config_arg(check)
    check.add_argument("export_files", nargs="*", type=Path)
    check.add_argument("--channel", help="channel to check exports against")
    check.add_argument("--sample-rows", type=_positive, default=1000)
    check.add_argument("--dry-run", action="store_true", help="check as for run --dry-run")
    check.add_argument(
        "--online", action="store_true", help="also try the API key on Braze (an empty request)"
    )

    status = sub.add_parser("status", help="files in the journal, by state")
    _config_arg(status)
    status.add_argument("--json", action="store_true", help="one JSON document (see README)")
    status.add_argument(
        "--state", action="append", choices=STATES, help="only files in this state (repeatable)"
    )
    _journal_args(status, "show")

    retry = sub.add_parser("retry", help="send a failed or partly rejected file again")
    _config_arg(retry)
    retry.add_argument("path", help="the export, relative to the base folder or absolute")
    _journal_args(retry, "queue it in")

    _config_arg(forget.add_parser(sub))

    sub.add_parser("schema", help="print the configuration's JSON Schema")

    init = sub.add_parser("init", help="write the sample configuration and service files")
    init.add_argument("directory", type=Path, help="where to write them, e.g. /etc/rpi-braze-sync")
    init.add_argument("--force", action="store_true", help="overwrite files that exist")

    completion = sub.add_parser("completion", help="print a shell completion script")
    completion.add_argument("shell", choices=["bash", "zsh"])
    return parser


def cmd_run(args: argparse.Namespace) -> int:
    restrict_umask()  # before anything is written: journal, rejects and outbox hold personal data
    env = dict(os.environ)
    if args.listen:
        env[LISTEN_ENV] = args.listen  # the flag wins over the environment and the YAML

    def load() -> LoadedConfig:
        return load_config(
            args.config,
            env,
            dry_run=True if args.dry_run else None,
            state_directory=args.state_directory,
        )

    config = load()
    configure_logging(
        (args.log_format or config.settings.log_format_in_use) == "json",
        getattr(logging, args.log_level.upper()),
    )
    return asyncio.run(serve(config, load))


def _export_path(given: str, base: Path) -> Path:
    """The export `given` names: as the shell completed it (relative to the current folder),
    else relative to the export folder (as `status` shows it); each as typed, else as
    display_name escaped it (\\xff, \\n: the status page's command is one printable line)."""
    for text in dict.fromkeys((given, undisplay_name(given))):
        path = Path(text)
        for full in (path,) if path.is_absolute() else (path.absolute(), base / path):
            if full.exists() and full.resolve().is_relative_to(base.resolve()):
                return full
    path = Path(given)
    return path if path.is_absolute() else base / path


def cmd_retry(args: argparse.Namespace) -> int:
    config = load_for_journal(args)
    base = config.base_output_directory
    full = _export_path(args.path, base)
    try:
        rel = full.resolve().relative_to(base.resolve()).as_posix()
    except ValueError:
        raise UsageError(f"{args.path}: not under the export folder {base}") from None
    try:
        st = full.stat()
    except OSError as exc:
        raise InputMissingError(f"{full}: {exc.strerror}") from None
    journal = open_journal(config, existing_journals(config, args.dry_run)[0])
    try:
        record = journal.latest(rel)
        shown = display_name(rel)
        if record is None:
            raise UsageError(f"{shown}: not in the journal; the daemon sends new files by itself")
        if record.state in (FileState.SEEN, *QUEUED_STATES):
            print(f"{shown}: already queued ({record.state})")
            return 0
        queued = journal.request_retry(record, st.st_size, st.st_mtime_ns)
    finally:
        journal.close()
    print(
        f"{shown}: queued again (record {queued.id}, after {record.state} record {record.id});"
        " a running daemon sends it within seconds, otherwise at its next start"
    )
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    sys.stdout.write(orjson.dumps(json_schema(), option=orjson.OPT_INDENT_2).decode() + "\n")
    return 0


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "run": cmd_run,
    "preview": cmd_preview,
    "check": cmd_check,
    "status": cmd_status,
    "schema": cmd_schema,
    "retry": cmd_retry,
    "forget": forget.cmd_forget,
    "init": cmd_init,
    "completion": lambda args: cmd_completion(build_parser(), args.shell),
}


def _silence_stdout() -> None:
    """The reader left: point stdout at /dev/null so that the interpreter's last flush does
    not fail again and print its own complaint."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except RpiBrazeSyncError as exc:
        for line in error_lines(exc):
            print(line, file=sys.stderr)
        return exit_status(exc)
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
