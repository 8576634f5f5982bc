"""The project's one error hierarchy; foreign exceptions are converted where they enter
(aiohttp's and the OS's in braze.py, sqlite3's in the journal, pydantic's in config.py).
PURE: the mapping core imports it, so it imports nothing that does I/O.
"""

from __future__ import annotations

# Exit statuses, from BSD's sysexits.h (cli.py's docstring and the README list them).
EXIT_USAGE = 64  # EX_USAGE: wrong arguments, or an export outside the channel layout
EXIT_DATA = 65  # EX_DATAERR: an export file that cannot be used, or a damaged journal
EXIT_NOINPUT = 66  # EX_NOINPUT: an input (export file, journal) does not exist
EXIT_UNAVAILABLE = 69  # EX_UNAVAILABLE: the listen address is taken, Braze unreachable
EXIT_CANTCREAT = 73  # EX_CANTCREAT: init would overwrite a file, or cannot write it
EXIT_TEMPFAIL = 75  # EX_TEMPFAIL: another daemon holds the state directory; try again later
EXIT_IOERR = 74  # EX_IOERR: the journal cannot be read or written
EXIT_NOPERM = 77  # EX_NOPERM: Braze refuses the API key (check --online)
EXIT_CONFIG = 78  # EX_CONFIG: systemd's RestartPreventExitStatus=78 stops restart loops


class RpiBrazeSyncError(Exception):
    """Base of every error this package raises on purpose."""


class ConfigError(RpiBrazeSyncError):
    """The configuration cannot be used; every problem found is listed, not just the first."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


class MappingError(RpiBrazeSyncError):
    """A channel's mapping cannot be compiled; each problem has the key path (below the
    mapping) it is about. config.py turns it into a ConfigError at the file's lines."""

    def __init__(self, problems: list[tuple[tuple[str | int, ...], str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{'.'.join(map(str, p))}: {m}" for p, m in problems))


class FieldValueError(RpiBrazeSyncError, ValueError):
    """A value Braze would refuse or misread; the message says why. It never leaves the
    mapping: it becomes a rejected row or a dropped field. (A ValueError too: the value
    functions catch Python's own ValueErrors and theirs alike.)"""


class ExportFileError(RpiBrazeSyncError):
    """One export file cannot be sent (encoding, header, layout); other files go on."""


class HeaderError(ExportFileError):
    """The file's header cannot be used with its channel's mapping: the whole file fails."""


class FileChangedError(ExportFileError):
    """The file shrank, changed or vanished while it was being read."""


class FileVanishedError(FileChangedError):
    """The file was deleted (RPI deletes an export when its run is stopped)."""


class NotRegularFileError(ExportFileError):
    """A path on the share that is not a regular file inside it (a link, FIFO, device,
    socket or folder): never read. `kind` says which (a bounded set, a metric label)."""

    def __init__(self, kind: str, message: str) -> None:
        self.kind = kind
        super().__init__(message)


class RecordTooLongError(ExportFileError):
    """A record longer than format.max_record_bytes where it cannot be rejected alone."""


class ShareUnavailableError(RpiBrazeSyncError):
    """The export folder cannot be read right now (a network share that dropped): wait."""


class RequestFailedError(RpiBrazeSyncError):
    """A request of a file's failed while being sent or settled (a bug): its file is tried
    again from its checkpoint, as after a dropped share."""


class WorkspaceChangedError(RpiBrazeSyncError):
    """Delta: a reload named another Braze workspace while rows decided unchanged against the
    old one's values were not yet taken (deltaskip.py): the file is tried again from its
    checkpoint, those rows read and decided again, as after a dropped share."""


class TransportError(RpiBrazeSyncError):
    """No answer from Braze (braze.py maps aiohttp's and the OS's errors to it). `error` is a
    bounded label (metrics.REQUEST_ERRORS); `reached`: the request may have reached Braze and
    been applied (it was at least partly written), so resending it may duplicate it; `detail`
    is for the log (host, never the key)."""

    def __init__(self, error: str, reached: bool, detail: str) -> None:
        self.error = error
        self.reached = reached
        self.detail = detail
        super().__init__(detail)


class JournalError(RpiBrazeSyncError):
    """The state database cannot be opened or written."""


class JournalDamagedError(JournalError):
    """The journal is not an SQLite database, or SQLite finds it damaged: restarting cannot
    fix it (the README says how to recover)."""


class LeaseLostError(JournalError):
    """The PostgreSQL journal's lease moved to another daemon (or was never held): this one
    writes no checkpoint or state change, and sends nothing more."""


class StateLockedError(RpiBrazeSyncError):
    """Another daemon holds the state directory's lock."""


class UsageError(RpiBrazeSyncError):
    """The command was asked for something it cannot do as given (exit 64)."""


class InputMissingError(RpiBrazeSyncError):
    """A file the command reads does not exist (exit 66)."""


class CannotWriteError(RpiBrazeSyncError):
    """A file the command writes exists already, or cannot be written (exit 73)."""


class ListenError(RpiBrazeSyncError):
    """The HTTP server cannot listen on its address (taken, not local, not allowed)."""


_EXIT_STATUSES: tuple[tuple[type[RpiBrazeSyncError], int], ...] = (
    (ConfigError, EXIT_CONFIG),
    (JournalDamagedError, EXIT_DATA),
    (StateLockedError, EXIT_TEMPFAIL),
    (ExportFileError, EXIT_DATA),
    (UsageError, EXIT_USAGE),
    (InputMissingError, EXIT_NOINPUT),
    (ListenError, EXIT_UNAVAILABLE),
    (JournalError, EXIT_IOERR),
    (CannotWriteError, EXIT_CANTCREAT),
)


def exit_status(exc: RpiBrazeSyncError) -> int:
    """The exit status a command ends with when `exc` stops it."""
    return next((status for kind, status in _EXIT_STATUSES if isinstance(exc, kind)), 1)


def error_lines(exc: RpiBrazeSyncError) -> list[str]:
    """How a command prints `exc`: one line a problem, saying what kind of problem."""
    if isinstance(exc, ConfigError):
        return [f"configuration error: {problem}" for problem in exc.problems]
    if isinstance(exc, JournalError):
        return [f"journal error: {exc}"]
    return [f"rpi-braze-sync: {exc}"]
