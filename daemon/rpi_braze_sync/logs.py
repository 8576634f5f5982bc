"""Logging set-up: readable lines for journald by default, JSON lines on request.

Lines about one export carry its channel, offer, workflow id and file name, as fields in JSON
and as a prefix in text. Every message and field is escaped (display_name): a file name with a
line end cannot forge a log line, nor one that is not UTF-8 break a JSON line.
"""

from __future__ import annotations

import asyncio
import logging
import re
import sys
import time
import warnings
from collections.abc import Callable, Mapping, MutableMapping
from datetime import UTC, datetime
from typing import Any

import orjson

FILE_FIELDS = ("channel", "offer", "workflow_id", "file_name")
_SHORT_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def display_name(text: str) -> str:
    """`text` on one line, as a person can read it: control characters escaped (\\n, \\x1b),
    a byte that was not UTF-8 in a file name (kept as a surrogate by os.fsdecode) as \\xNN,
    other unprintable characters as \\uNNNN. Printable text is returned as it is."""
    if text.isprintable():
        return text
    return "".join(map(_display_char, text))


def _display_char(char: str) -> str:
    if char.isprintable():
        return char
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:  # surrogateescape: the byte code - 0xDC00 of the name
        return f"\\x{code - 0xDC00:02x}"
    if code < 0x100:
        return _SHORT_ESCAPES.get(char) or f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


_ESCAPE = re.compile(r"\\(x[0-9a-f]{2}|u[0-9a-f]{4}|U[0-9a-f]{8}|[nrt])")
_SHORT_UNESCAPES = {"n": "\n", "r": "\r", "t": "\t"}


def undisplay_name(shown: str) -> str:
    """The name display_name showed as `shown` (a \\xNN from 80 up is a byte that was not
    UTF-8), so that a path copied from `status` or the status page finds its file."""

    def one(match: re.Match[str]) -> str:
        code = match.group(1)
        if code in _SHORT_UNESCAPES:
            return _SHORT_UNESCAPES[code]
        value = int(code[1:], 16)
        return chr(0xDC00 + value) if code[0] == "x" and value >= 0x80 else chr(value)

    return _ESCAPE.sub(one, shown)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": iso_utc(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": display_name(record.getMessage()),
        }
        export = getattr(record, "export", None)
        if export:
            entry.update({key: display_name(value) for key, value in export.items()})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry).decode()


def iso_utc(epoch_s: float) -> str:
    """2026-11-28T09:15:02.431Z: ISO 8601, UTC, milliseconds."""
    moment = datetime.fromtimestamp(epoch_s, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class TextFormatter(logging.Formatter):
    def __init__(self, with_time: bool) -> None:
        fmt = "%(asctime)s " if with_time else ""
        super().__init__(fmt + "%(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        message = display_name(record.getMessage())
        export = getattr(record, "export", None)
        if export:
            where = " ".join(f"{k}='{display_name(export[k])}'" for k in FILE_FIELDS if k in export)
            message = f"[{where}] {message}"
        record = logging.makeLogRecord({**record.__dict__, "msg": message, "args": None})
        return super().format(record)


class ExportLogger(logging.LoggerAdapter[logging.Logger]):
    """A logger whose lines name one export file."""

    def process(
        self, msg: Any, kwargs: MutableMapping[str, Any]
    ) -> tuple[Any, MutableMapping[str, Any]]:
        kwargs.setdefault("extra", {})["export"] = self.extra
        return msg, kwargs


def export_logger(logger: logging.Logger, values: Mapping[str, str]) -> ExportLogger:
    return ExportLogger(logger, {k: values[k] for k in FILE_FIELDS if k in values})


def log_if_failed(log: logging.Logger | ExportLogger) -> Callable[[asyncio.Task[Any]], None]:
    """A done-callback for a helper task that nothing awaits (a file job's checkpoints and
    progress lines): its failure is logged with the traceback, not lost."""

    def done(task: asyncio.Task[Any]) -> None:
        if not task.cancelled() and (exc := task.exception()) is not None:
            what = getattr(task.get_coro(), "__qualname__", task.get_name())
            log.error("helper task %s failed", what, exc_info=exc)

    return done


class RepeatFilter(logging.Filter):
    """The same line from the HTTP server or its libraries (a connection refused, an accept
    that failed, a malformed request) once per interval: the first passes, the next ones are
    counted, and the first after the interval says how many were held back. A flood of slow
    clients cannot fill the disk with log."""

    LOGGERS = ("asyncio", "aiohttp", "rpi_braze_sync.server")

    def __init__(self, interval_s: float = 60.0, clock: Callable[[], float] = time.monotonic):
        super().__init__()
        self.interval_s = interval_s
        self._clock = clock
        self._seen: dict[tuple[str, object], tuple[float, int]] = {}  # -> (shown at, held)

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(self.LOGGERS):
            return True
        key = (record.name, record.msg)
        now = self._clock()
        shown_at, held = self._seen.get(key, (float("-inf"), 0))
        if now - shown_at < self.interval_s:
            self._seen[key] = (shown_at, held + 1)
            return False
        if len(self._seen) > 1000:  # keys are templates: a handful, unless a library formats
            self._seen.clear()
        self._seen[key] = (now, 0)
        if held:
            record.msg = (
                f"{record.getMessage()} ({held} more like this in the last"
                f" {now - shown_at:.0f} s, not shown)"
            )
            record.args = None
        return True


def configure_logging(json_lines: bool, level: int = logging.INFO) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RepeatFilter())
    # journald stamps each line itself; a terminal gets the time.
    handler.setFormatter(
        JsonFormatter() if json_lines else TextFormatter(with_time=sys.stderr.isatty())
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.captureWarnings(True)  # library warnings (watchdog's thread) become log lines
    # watchdog warns when a new folder's watch is added twice (its own race between the
    # folder's creation and the recursive walk; 1,800 characters a folder). The periodic scan
    # covers whatever such a race could miss.
    warnings.filterwarnings("ignore", r"Callback with id", RuntimeWarning)
    # Library chatter at debug level (watchdog logs every inotify event): --log-level debug
    # is for the daemon's own lines.
    for name in ("watchdog", "aiohttp.access", "asyncio"):
        logging.getLogger(name).setLevel(max(level, logging.WARNING))
