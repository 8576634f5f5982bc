"""The lease decisions (lease.py), as tables of (lease, now) -> what the holder does."""

from __future__ import annotations

import pytest

from rpi_braze_sync.lease import Lease, Step, attempt_timeout_s, next_step, wait_s

L = 15.0
HELD = Lease(epoch=7, began=100.0, lease_s=L)  # renew at 105, stop sending at 112


@pytest.mark.parametrize(
    ("lease", "now", "step"),
    [
        (None, 0.0, Step.ACQUIRE),
        (None, 1e9, Step.ACQUIRE),
        (HELD, 100.0, Step.WAIT),
        (HELD, 104.99, Step.WAIT),
        (HELD, 105.0, Step.RENEW),  # a third of the lease
        (HELD, 111.99, Step.RENEW),  # renewals failed: still trying, still sending
        (HELD, 112.0, Step.RESIGN),  # 0.8 of the lease: stops before it can expire (115)
        (HELD, 100.0 + 2 * L, Step.RESIGN),  # woken from SIGSTOP after twice the lease
    ],
)
def test_next_step(lease: Lease | None, now: float, step: Step) -> None:
    assert next_step(lease, now) is step


@pytest.mark.parametrize(
    ("now", "may"),
    [(100.0, True), (111.999, True), (112.0, False), (114.9, False), (130.0, False)],
)
def test_sending_stops_before_the_lease_can_expire(now: float, may: bool) -> None:
    assert HELD.may_send(now) is may
    # Whatever the clock says, nothing is sent at or past the expiry the standby waits for.
    assert not HELD.may_send(HELD.began + L)


@pytest.mark.parametrize(
    ("began", "deadline"),
    [(104.0, 116.0), (99.0, 112.0), (100.0, 112.0)],  # an older proof does not move it back
)
def test_renewal_moves_the_deadline_from_when_it_began(began: float, deadline: float) -> None:
    renewed = HELD.renewed(began)
    assert renewed.send_deadline == pytest.approx(deadline)
    assert renewed.epoch == HELD.epoch


@pytest.mark.parametrize(
    ("lease", "now", "failed", "expected"),
    [
        (None, 0.0, False, 5.0),  # standby asks every third of the lease
        (HELD, 100.0, False, 5.0),  # until the renewal
        (HELD, 104.0, False, 1.0),
        (HELD, 106.0, True, 1.0),  # a failed renewal: retried within a second
        (HELD, 111.5, True, 0.5),  # ... but wakes at the deadline to resign
        (HELD, 113.0, True, 0.01),  # past it: at once
    ],
)
def test_wait(lease: Lease | None, now: float, failed: bool, expected: float) -> None:
    assert wait_s(lease, now, L, failed) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("lease", "now", "expected"),
    [(None, 0.0, 5.0), (HELD, 105.0, 7.0), (HELD, 111.0, 1.0), (HELD, 120.0, 0.01)],
)
def test_a_renewal_gives_up_before_the_deadline(
    lease: Lease | None, now: float, expected: float
) -> None:
    assert attempt_timeout_s(lease, now, L) == pytest.approx(expected)
