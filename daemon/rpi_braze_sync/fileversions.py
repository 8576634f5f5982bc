"""The I/O half of file-version identity: the facts fileidentity.decide needs, gathered from
the journal and the file, and only those it asks for (a send that resumes reads no earlier
version; only a file that grew has its first bytes hashed again)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from .fileidentity import (
    Seen,
    VersionAction,
    VersionDecision,
    decide,
    earlier_version,
    needs_prefix_hash,
    needs_previous,
    version_of,
)
from .inspection import FileInspection, prefix_sha256
from .journal import FileRecord, Journal
from .logs import ExportLogger


async def compare_version(
    record: FileRecord, inspection: FileInspection, journal: Journal, path: Path, base: Path
) -> tuple[Seen, VersionDecision]:
    """What to do with `record`'s file as `inspection` found it; `base` the share it is in."""
    seen = Seen(version_of(record), bool(record.retry), inspection.sha256, inspection.size)
    previous = None
    if needs_previous(seen):
        done = journal.previous_done(record.rel_path, record.id)
        previous = version_of(done) if done is not None else None
    earlier = earlier_version(seen, previous)
    prefix = None
    if earlier is not None and needs_prefix_hash(seen, earlier):
        prefix = await asyncio.to_thread(prefix_sha256, path, earlier.size, base)
    return seen, decide(seen, earlier, prefix)


async def settle_version(
    record: FileRecord,
    inspection: FileInspection,
    journal: Journal,
    path: Path,
    base: Path,
    log: ExportLogger,
) -> VersionDecision:
    """compare_version, and the file's log told what was decided when it is not to send
    `record` as recorded (skip it, continue a file that grew, or resend new content)."""
    seen, decision = await compare_version(record, inspection, journal, path, base)
    if decision.action == VersionAction.SKIP:
        assert decision.earlier is not None
        earlier = decision.earlier.id
        log.info("same content as the version sent before (record %d): not sent again", earlier)
    elif decision.action == VersionAction.CONTINUE:
        log.warning(
            "the file grew after %s: continuing from row %d",
            "its send began" if decision.earlier == seen.record else "it was sent",
            decision.start + 1,
        )
    elif decision.action != VersionAction.AS_RECORDED:
        log.warning("new content under a path sent before: sending it from its first row")
    return decision
