"""One daemon of an active/standby pair (journal.url): standby until it holds the lease,
leader while it does, standby again the moment it may no longer send.

The lease keeper (leader.py) runs for the daemon's whole life. As leader, the daemon serves
the shared journal (app.Daemon.serve_journal) with the journal's writes fenced by the lease's
epoch and every request by its deadline; when the lease is lost (not renewed in time, taken
by the other daemon, or the database gone), it stops at once and waits as standby. A database
that goes away is not a crash: the daemon stays up, says so in /readyz and the log, and leads
again once it holds the lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from .braze import Transport
from .config import LoadedConfig
from .errors import JournalError
from .journal import Journal
from .leader import FencedTransport, LeaseKeeper
from .lease import Role
from .metrics import Metrics
from .pgjournal import PgJournal
from .readiness import PairView, Readiness

log = logging.getLogger(__name__)


class Daemon(Protocol):
    """What the pair needs of app.Daemon (which imports this module)."""

    metrics: Metrics
    readiness: Readiness
    pair: PairView | None
    fence: Callable[[Transport], Transport] | None

    @property
    def config(self) -> LoadedConfig: ...

    def attach(self, journal: Journal) -> None: ...

    async def lead(self, journal: Journal, lost: asyncio.Event | None = None) -> bool: ...

    async def stopping(self) -> None: ...

    def crashed(self, name: str) -> None: ...


@dataclass
class PairState:
    """What /readyz and the metrics say about the pair."""

    keeper: LeaseKeeper
    journal_problem: str | None = None

    def role_line(self) -> str:
        keeper = self.keeper
        if keeper.role is Role.LEADER:
            assert keeper.lease is not None
            return f"role: leader (lease epoch {keeper.lease.epoch}, {keeper.me})"
        other = f"; the leader is {keeper.other}" if keeper.other else ""
        return f"role: standby ({keeper.me}{other})"

    def role(self) -> str:
        return self.keeper.role.value

    def problems(self) -> list[str]:
        found = [p for p in (self.keeper.problem, self.journal_problem) if p is not None]
        if found and self.keeper.role is Role.LEADER:
            found[-1] += ": sending is paused"
        return found


async def _open_journal(
    daemon: Daemon, pair: PairState, stop_wait: asyncio.Task[None]
) -> PgJournal | None:
    """The shared journal, once the database answers (migrated on the way): a database that
    is down at start is waited for, not a crash. None: stopped meanwhile."""
    while not stop_wait.done():
        try:
            journal = PgJournal(daemon.config)
        except JournalError as exc:
            if pair.journal_problem is None:
                log.error("%s; waiting for it", exc)
            pair.journal_problem = str(exc)
            await asyncio.wait([stop_wait], timeout=min(5.0, pair.keeper.lease_s / 3))
            continue
        pair.journal_problem = None
        return journal
    return None


async def _keep_lease(daemon: Daemon, keeper: LeaseKeeper) -> None:
    """The keeper runs until cancelled. Anything else that ends it is a bug, which would leave
    the lease unrenewed and the daemon sending nothing without a word: it is logged, and the
    daemon stops (exit 1) for systemd to start it again."""
    try:
        await keeper.run()
    except Exception:
        log.critical("task lease failed", exc_info=True)
    else:
        log.critical("task lease ended")
    daemon.crashed("lease")


async def run_as_pair(daemon: Daemon) -> None:
    """Until the daemon stops: standby, leader while the lease is held, standby again."""
    config = daemon.config
    changed = asyncio.Event()
    lost = asyncio.Event()

    def on_role(role: Role) -> None:
        daemon.metrics.leader.set(1 if role is Role.LEADER else 0)
        changed.set()
        if role is Role.STANDBY:
            lost.set()

    keeper = LeaseKeeper(config, on_role)
    pair = daemon.pair = daemon.readiness.pair = PairState(keeper)
    daemon.metrics.leader.set(0)
    daemon.fence = lambda transport: FencedTransport(transport, keeper.may_send)
    # Each resource closed on every path, in reverse order (the lease released before the
    # journal closes), as app.Daemon's own.
    async with contextlib.AsyncExitStack() as stack:
        stop_wait = asyncio.create_task(daemon.stopping())
        stack.callback(stop_wait.cancel)
        journal = await _open_journal(daemon, pair, stop_wait)
        if journal is None:
            return
        stack.callback(journal.close)
        daemon.attach(journal)
        log.info("standby: waiting for the lease on %s (%g s)", journal.where, keeper.lease_s)
        keeper_task = asyncio.create_task(_keep_lease(daemon, keeper), name="lease")
        stack.push_async_callback(_release, daemon, keeper, keeper_task)
        while not stop_wait.done():
            changed.clear()
            if keeper.lease is None:
                role_changed = asyncio.create_task(changed.wait())
                try:
                    await asyncio.wait([stop_wait, role_changed],
                                       return_when=asyncio.FIRST_COMPLETED)  # fmt: skip
                finally:
                    role_changed.cancel()
                continue
            lost.clear()
            journal.epoch = keeper.lease.epoch
            try:
                failed = await daemon.lead(journal, lost)
            except JournalError as exc:  # reading the queue as it began
                log.error("cannot lead now: %s", exc)
                failed = True
            finally:
                journal.epoch = None
                pair.journal_problem = None
            if failed and not stop_wait.done():
                # The journal failed under the leader: wait a third of the lease (the keeper
                # resigns if it cannot renew) rather than start again at once.
                await asyncio.wait([stop_wait], timeout=keeper.lease_s / 3)


async def _release(daemon: Daemon, keeper: LeaseKeeper, keeper_task: asyncio.Task[None]) -> None:
    """The keeper stopped and the lease released: the standby takes over at its next try."""
    keeper_task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await keeper_task
    await keeper.release()
    daemon.metrics.leader.set(0)
