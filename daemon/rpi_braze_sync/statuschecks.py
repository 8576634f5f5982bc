"""The status page's checks of the daemon, in words: Braze reachable, key accepted, share
available, configuration reloaded (statusdoc.Check: ok, a word, a sentence). Pure: from Live.
"""

from __future__ import annotations

from .progress import format_duration
from .readiness import UNREACHABLE_AFTER_S  # as /readyz: shorter blips are "retrying"
from .statusdoc import Check, DaemonState
from .statusinputs import Live


def daemon_state(live: Live) -> DaemonState:
    return DaemonState(
        version=live.version,
        role=live.role,
        dry_run=live.dry_run,
        ready=not live.problems,
        problems=live.problems,
        braze_reachable=_reachable(live),
        key_accepted=_key(live),
        share_available=(
            Check(ok=True, text="yes", detail="the export folder can be read")
            if live.share_available
            else Check(ok=False, text="no", detail="the export folder cannot be read: waiting")
        ),
        config_reloaded=_reloaded(live),
    )


def _since(live: Live, epoch_s: float | None) -> str:
    if epoch_s is None:
        return "no request has succeeded yet"
    return f"the last request succeeded {format_duration(live.now - epoch_s)} ago"


def _reachable(live: Live) -> Check:
    if live.dry_run:
        return Check(ok=None, text="dry run", detail="nothing is sent: bodies go to the outbox")
    failing = live.braze_failing_s
    if live.auth_failing:  # an answer, if a refusal: Braze is there
        return Check(ok=True, text="yes", detail="Braze answers, but refuses the key or URL")
    if failing <= 0:
        ok = None if live.last_success_at is None else True
        return Check(
            ok=ok, text="yes" if ok else "not tried yet", detail=_since(live, live.last_success_at)
        )
    text = "retrying" if failing < UNREACHABLE_AFTER_S else "no"
    detail = (
        f"errors or no answer for {format_duration(failing)}; {_since(live, live.last_success_at)}"
    )
    return Check(ok=failing < UNREACHABLE_AFTER_S, text=text, detail=detail)


def _key(live: Live) -> Check:
    if live.dry_run:
        return Check(ok=None, text="dry run", detail="the key is not used in a dry run")
    if live.auth_failing:
        return Check(
            ok=False, text="no", detail=f"Braze refuses the key or URL: {live.auth_message}"
        )
    if live.last_success_at is None:
        return Check(ok=None, text="not tried yet", detail="no request has been sent yet")
    return Check(ok=True, text="yes", detail="Braze accepted the last request")


def _reloaded(live: Live) -> Check:
    counts = f"{live.reloads_applied} applied, {live.reloads_failed} refused since the start"
    if not live.last_reload_ok:
        return Check(
            ok=False,
            text="refused",
            detail=f"the last reload was refused: running on the previous configuration; see"
            f" the log ({counts})",
        )
    if not live.reloads_applied:
        return Check(
            ok=None, text="not reloaded", detail="running on the configuration read at the start"
        )
    return Check(ok=True, text="yes", detail=f"the last reload was applied ({counts})")
