"""Reloading the configuration (SIGHUP, or the file changed): load it again, keep the keys read
only at start, and hand the result to every component's `apply(config)`. Files in progress
finish under the mapping they started with; a configuration that cannot be loaded is refused
and the daemon goes on with the one it has.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import replace

from .config import LoadedConfig
from .errors import ConfigError
from .metrics import Metrics

log = logging.getLogger(__name__)

# Keys read once at start; a reload that changes them says so and keeps the running values.
RESTART_ONLY = (
    "state_directory", "watch.base_output_directory", "watch.observer", "watch.path_pattern",
    "http.listen", "braze.dry_run",
)  # fmt: skip
CONFIG_POLL_S = 2.0

Apply = Callable[[LoadedConfig], None]  # a component's apply(config)


def _setting(config: LoadedConfig, dotted: str) -> object:
    if dotted == "state_directory":
        return config.state_directory
    if dotted == "watch.base_output_directory":
        return config.base_output_directory
    section, key = dotted.split(".")
    return getattr(getattr(config.settings, section), key)


def merge_reloaded(old: LoadedConfig, new: LoadedConfig) -> LoadedConfig:
    """`new`, with the running values of the keys read only at start (RESTART_ONLY), and the
    dry run's lack of an API key kept."""
    watch = new.settings.watch.model_copy(
        update={
            k: getattr(old.settings.watch, k)
            for k in ("base_output_directory", "observer", "path_pattern")
        }
    )
    braze = new.settings.braze.model_copy(update={"dry_run": old.settings.braze.dry_run})
    settings = new.settings.model_copy(
        update={"watch": watch, "braze": braze, "http": old.settings.http}
    )
    return replace(
        new,
        settings=settings,
        state_directory=old.state_directory,
        base_output_directory=old.base_output_directory,
        api_key=new.api_key if not old.dry_run else old.api_key,
    )


class ConfigReloader:
    """Owns the configuration in use; components registered with `on_reload` get each new one."""

    def __init__(
        self,
        config: LoadedConfig,
        metrics: Metrics,
        load_again: Callable[[], LoadedConfig] | None = None,
    ) -> None:
        self.config = config
        self.metrics = metrics
        self._load_again = load_again
        self._appliers: list[Apply] = []
        self._loaded_stamp = self._config_stamp()

    def on_reload(self, apply: Apply) -> Callable[[], None]:
        """Give `apply` each new configuration; the returned function stops that (a pair's
        leader registers its components each time it leads, and must not leave them behind)."""
        self._appliers.append(apply)
        return lambda: self._appliers.remove(apply)

    def reload(self) -> bool:
        """Apply the configuration file again. Whatever the file holds (a bomb, a bug), the
        daemon goes on: False when it was refused."""
        if self._load_again is None:
            return False
        try:
            return self._reload(self._load_again)
        except Exception as exc:
            log.error(
                "configuration reload failed, still running on the previous one: %s: %s",
                type(exc).__name__,
                str(exc)[:200],
            )
            self._count(False)
            return False

    def _reload(self, load_again: Callable[[], LoadedConfig]) -> bool:
        self._loaded_stamp = self._config_stamp()  # this version, good or bad, is handled
        try:
            new = load_again()
        except ConfigError as exc:
            for problem in exc.problems:
                log.error(
                    "configuration reload refused, still running on the previous one: %s", problem
                )
            self._count(False)
            return False
        old = self.config
        kept = [key for key in RESTART_ONLY if _setting(new, key) != _setting(old, key)]
        if kept:
            log.warning("%s changed: takes effect at the next restart", ", ".join(kept))
        self.config = merge_reloaded(old, new)
        for apply in self._appliers:
            apply(self.config)
        self._count(True)
        log.info(
            "configuration reloaded from %s: applies to files that start from now on", new.path
        )
        return True

    def _count(self, applied: bool) -> None:
        if applied:
            self.metrics.config_reloads.labels("applied").inc()
        else:
            self.metrics.config_reloads.labels("failed").inc()
        self.metrics.config_last_reload_ok.set(1 if applied else 0)

    def _config_stamp(self) -> tuple[int, int] | None:
        try:
            st = self.config.path.stat()
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size

    async def watch_file(self, reload: Callable[[], object]) -> None:
        """Call `reload` (the daemon's: it tells systemd) when the file changes, as SIGHUP does
        (editors and configuration management change files without a signal)."""
        while True:
            await asyncio.sleep(CONFIG_POLL_S)
            current = self._config_stamp()
            if current is not None and current != self._loaded_stamp:
                reload()
