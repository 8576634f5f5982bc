"""What the daemon says when it starts (where things are, what it watches, where it sends), and
what it checks about its surroundings before it opens anything.
"""

from __future__ import annotations

import logging
import os
import platform

from . import package_version
from .config import LoadedConfig
from .observer import read_mounts
from .watchrules import NETWORK_FILESYSTEMS, filesystem_of

log = logging.getLogger(__name__)


def announce(config: LoadedConfig) -> None:
    log.info(
        "rpi-braze-sync %s (Python %s) started, pid %d",
        package_version(),
        platform.python_version(),
        os.getpid(),
    )
    base = config.base_output_directory
    pattern = config.settings.watch.path_pattern.replace("{", "<").replace("}", ">")
    log.info("watching %s: drop exports as %s/%s/<file>", base, base, pattern)
    log.info(
        "channels: %s",
        ", ".join(f"{n!r} ({c.settings.mode})" for n, c in config.channels.items()),
    )
    if config.dry_run:
        log.info(
            "dry run: request bodies go to %s, nothing is sent", config.state_directory / "outbox"
        )
    else:
        log.info("sending to %s/users/track", config.settings.braze.api_url)
    log.info("rejected rows: %s", config.state_directory / "rejects")
    log.info("metrics: http://%s/metrics", config.settings.http.listen)
    log.info("status page: http://%s/", config.settings.http.listen)


def warn_if_network_state(config: LoadedConfig) -> None:
    fs_type = filesystem_of(read_mounts(), str(config.state_directory.resolve()))
    if fs_type in NETWORK_FILESYSTEMS:
        log.warning(
            "the state directory %s is on a network filesystem (%s): SQLite's locking is "
            "unreliable there; put state_directory on a local disk",
            config.state_directory,
            fs_type,
        )


def secret_env_names(config: LoadedConfig) -> set[str]:
    """Environment variables that hold (or lead to) a secret: the mapping process goes without."""
    names = {config.settings.braze.api_key_env, "BRAZE_API_KEY", "CREDENTIALS_DIRECTORY"}
    for token_env in (config.settings.hook.token_env, config.settings.status_page.token_env):
        if token_env:
            names.add(token_env)
    return names
