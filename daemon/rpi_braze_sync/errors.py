"""The project's one error hierarchy; foreign exceptions are converted where they enter."""

from __future__ import annotations

EXIT_CONFIG = 78  # EX_CONFIG: systemd's RestartPreventExitStatus=78 stops restart loops


class RpiBrazeSyncError(Exception):
    """Base of every error this package raises on purpose."""


class ConfigError(RpiBrazeSyncError):
    """The configuration cannot be used; every problem found is listed, not just the first."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


class ExportFileError(RpiBrazeSyncError):
    """One export file cannot be sent (encoding, header, layout); other files go on."""


class FileChangedError(ExportFileError):
    """The file shrank, changed or vanished while it was being read."""


class FileVanishedError(FileChangedError):
    """The file was deleted (RPI deletes an export when its run is stopped)."""


class ShareUnavailableError(RpiBrazeSyncError):
    """The export folder cannot be read right now (a network share that dropped): wait."""


class JournalError(RpiBrazeSyncError):
    """The state database cannot be opened or written."""
