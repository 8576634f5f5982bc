"""Pure lease arithmetic for the active/standby pair (journal.url, ha.lease_seconds).

The lease is one row in PostgreSQL with an epoch (the fencing token) and an expiry kept by the
database's clock. This module decides, from the process's monotonic clock alone, what the
holder may do: a renewal that succeeded proves the row was extended at some moment after the
renewal *began*, so the lease cannot expire before `began + lease_s` on any clock running at
the database's rate. The holder sends only before `began + lease_s * SEND_FRACTION`: the rest
is the margin for a request already on its way, the clocks' drift and the check itself.

No I/O, no clock: times are passed in (leader.py runs it; tests/unit/test_lease.py tables it).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

# Renewed every third of the lease (issue 17): two renewals can fail before sending stops.
RENEW_FRACTION = 1 / 3
# Sending stops this far into the lease after the last renewal that began: the standby
# cannot take it before 1.0, so a request started before 0.8 has a fifth of the lease to go.
SEND_FRACTION = 0.8
# A standby asks for the lease this often (a fraction of it, at least every second or so).
ACQUIRE_FRACTION = 1 / 3


class Role(Enum):
    LEADER = "leader"
    STANDBY = "standby"


class Step(Enum):
    """What the lease keeper does next."""

    ACQUIRE = "acquire"  # standby: ask the database for the lease
    RENEW = "renew"  # leader: extend it, conditional on the epoch held
    WAIT = "wait"  # nothing due yet
    RESIGN = "resign"  # leader past its sending deadline: stop, become standby


@dataclass(frozen=True)
class Lease:
    """A lease held: `epoch` as granted, `began` the monotonic time at which the renewal (or
    the acquisition) that proved it started."""

    epoch: int
    began: float
    lease_s: float

    def may_send(self, now: float) -> bool:
        """Checked before every request: False from the sending deadline on, for good."""
        return now < self.send_deadline

    @property
    def send_deadline(self) -> float:
        return self.began + self.lease_s * SEND_FRACTION

    @property
    def renew_at(self) -> float:
        return self.began + self.lease_s * RENEW_FRACTION

    def renewed(self, began: float) -> Lease:
        """A renewal that began at `began` succeeded. A renewal that began earlier than the
        one already proved (answers out of order) proves nothing new."""
        return Lease(self.epoch, max(self.began, began), self.lease_s)


def next_step(lease: Lease | None, now: float) -> Step:
    """The keeper's decision: standby asks for the lease; a leader renews once a third of the
    lease has passed since its last proof, and resigns once it may no longer send."""
    if lease is None:
        return Step.ACQUIRE
    if not lease.may_send(now):
        return Step.RESIGN
    if now >= lease.renew_at:
        return Step.RENEW
    return Step.WAIT


def wait_s(lease: Lease | None, now: float, lease_s: float, failed: bool) -> float:
    """How long to sleep before the next step: a standby asks every ACQUIRE_FRACTION of the
    lease; a leader wakes at its next renewal, or, after a failed one, retries soon but no
    later than its deadline (it must notice the deadline itself, not only at the renewal)."""
    if lease is None:
        return max(0.05, lease_s * ACQUIRE_FRACTION)
    if failed or now >= lease.renew_at:
        retry = min(1.0, lease_s / 10)
        return max(0.01, min(retry, lease.send_deadline - now))
    return max(0.01, min(lease.renew_at, lease.send_deadline) - now)


def attempt_timeout_s(lease: Lease | None, now: float, lease_s: float) -> float:
    """How long one database attempt may take: a leader's renewal must give up before its
    deadline (a hung connection must not hold it past it); a standby's, a third of the lease."""
    if lease is None:
        return max(0.5, lease_s * ACQUIRE_FRACTION)
    return max(0.01, lease.send_deadline - now)
