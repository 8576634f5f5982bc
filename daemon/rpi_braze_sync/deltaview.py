"""`preview --explain` with delta on (issue 16): which of a row's values delta would leave out,
read from the store read-only (beside a running daemon: a snapshot as of the preview's start).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import orjson

from .config import LoadedConfig, load_config
from .delta import Send, compare_row, fresh, user_key
from .deltabody import parse, summary
from .deltarun import DAY_S, workspace_of
from .deltastore import DeltaStore
from .errors import ConfigError


class DeltaView:
    def __init__(self, store: DeltaStore | None, max_age_days: float, note: str) -> None:
        self.store = store
        self.max_age_s = int(max_age_days * DAY_S)
        self.note = note  # said once, before the rows

    @classmethod
    def open(cls, config_path: str | Path, config: LoadedConfig, channel: str) -> DeltaView | None:
        """None when the channel does not use delta."""
        settings = config.settings
        if not settings.delta_for(channel):
            return None
        try:  # the workspace needs the key: without it, the store is read unchecked
            workspace: str | None = workspace_of(load_config(config_path, dry_run=False))
        except ConfigError:
            workspace = None
        store = DeltaStore.open_read_only(config.state_directory, workspace)
        days = settings.delta.max_age_days
        if store is None:
            note = "delta: nothing remembered for this Braze workspace: every value would be sent"
        elif workspace is None:
            note = "delta: the API key is not available here, so the workspace is not checked"
        else:
            note = f"delta: values remembered in {store.directory} (sent again after {days:g} days)"
        return cls(store, days, note)

    def explain(self, user: str, attributes: dict[str, Any]) -> str:
        """One line: what delta would leave out of this object, and what it would send."""
        body = orjson.dumps(attributes)
        record = self.store.lookup([user_key(user)])[0] if self.store is not None else None
        now = int(time.time())
        parsed = parse(body)
        if not fresh(record, now, self.max_age_s):
            if parsed.mode == "append":
                return (
                    "delta: sends every value (append: not remembered for a user no upsert created)"
                )
            return "delta: sends every value (nothing remembered for this user, or too old)"
        decision = compare_row(summary(body), record, now, self.max_age_s, parsed.mode)
        if decision.send is Send.NOTHING:
            return f"delta: not sent: Braze holds all {decision.points_skipped} values from us"
        skipped = [parsed.paths[i] for i in decision.skipped_fields]
        skipped += [
            f"{parsed.adds[i][0]} add {parsed.adds[i][1].decode()}" for i in decision.skipped_adds
        ]
        if not skipped:
            return f"delta: sends all {decision.points_sent} values (each changed or new)"
        return f"delta: skips {', '.join(skipped)} (held by Braze); sends {decision.points_sent}"

    def close(self) -> None:
        if self.store is not None:
            self.store.close()
