"""`check`: the configuration, what the daemon will need when it starts (the API key, the
export folder), exports against their channel, and with --online the key against Braze.

The online check sends Braze an empty /users/track request: no profile is touched. Braze
checks the key before the body, so 401/403 mean the key is refused, and a 400 for the empty
body (or a 2xx) means it was accepted.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from collections.abc import Mapping
from pathlib import Path

from .braze import HttpTransport, Reply, classify
from .config import LoadedConfig, load_api_key, load_config, load_hook_token
from .errors import (
    EXIT_CONFIG,
    EXIT_NOPERM,
    EXIT_UNAVAILABLE,
    ConfigError,
    RpiBrazeSyncError,
    TransportError,
    error_lines,
    exit_status,
)
from .preview import check_export
from .secret import Secret

PROBE_BODY = b'{"attributes":[]}'  # no object: nothing in Braze can change
PROBE_TIMEOUT_S = 15.0


def readiness_warnings(config: LoadedConfig, env: Mapping[str, str]) -> list[str]:
    """What would stop or stall the daemon although the file itself is valid."""
    warnings: list[str] = []
    settings, name = config.settings, str(config.path)
    if not config.dry_run:
        try:
            if load_api_key(settings, env, name) is None:
                warnings.append(
                    f"no API key: ${settings.braze.api_key_env} is not set here and"
                    " braze.api_key_file is not given; the daemon refuses to start without one"
                    " (outside dry run)"
                )
        except ConfigError as exc:
            warnings += [f"API key: {problem}" for problem in exc.problems]
    try:
        load_hook_token(settings, env, name)
    except ConfigError as exc:
        warnings += [f"hook token: {problem}" for problem in exc.problems]
    base = config.base_output_directory
    where = f"watch.base_output_directory {base}"
    if not base.exists():
        warnings.append(f"{where} does not exist: the daemon waits until it does")
    elif not base.is_dir():
        warnings.append(f"{where} is not a folder")
    else:
        try:
            os.listdir(base)
        except OSError as exc:
            warnings.append(
                f"{where} cannot be read by this user (uid {os.getuid()}): {exc.strerror};"
                " the daemon's user needs read access"
            )
    return warnings


def probe_verdict(reply: Reply | TransportError, url: str) -> tuple[int, str]:
    """(exit status, sentence) for Braze's answer to the empty request."""
    if isinstance(reply, TransportError):
        return EXIT_UNAVAILABLE, f"cannot reach Braze at {url}: {reply}"
    if reply.status in (401, 403):
        message = classify(reply).message
        return EXIT_NOPERM, (
            f"Braze refuses the API key (HTTP {reply.status}: {message}); the key needs the"
            " users.track permission, for this instance's URL"
        )
    if reply.status in (404, 405):
        return EXIT_CONFIG, f"{url} answered HTTP {reply.status}: is braze.api_url right?"
    if 200 <= reply.status < 300 or reply.status == 400:
        return 0, f"Braze at {url} accepts the API key (HTTP {reply.status} for an empty request)"
    if reply.status == 429:
        return EXIT_UNAVAILABLE, "Braze answered 429 (rate limited): try again in a minute"
    return EXIT_UNAVAILABLE, f"Braze answered HTTP {reply.status}: {classify(reply).message}"


async def probe_braze(api_url: str, key: Secret) -> Reply | TransportError:
    transport = HttpTransport(api_url, key, PROBE_TIMEOUT_S, 1)
    try:
        return await transport.post(PROBE_BODY, "check --online")
    except TransportError as failure:
        return failure
    finally:
        await transport.close()


def check_online(config: LoadedConfig, env: Mapping[str, str]) -> tuple[int, str]:
    settings = config.settings
    key = load_api_key(settings, env, str(config.path))
    if key is None:
        return EXIT_CONFIG, (
            f"--online: no API key to try (set ${settings.braze.api_key_env} or braze.api_key_file)"
        )
    url = f"{settings.braze.api_url}/users/track"
    return probe_verdict(asyncio.run(probe_braze(settings.braze.api_url, key)), url)


def cmd_check(args: argparse.Namespace) -> int:
    env = os.environ
    config = load_config(args.config, dry_run=True if args.dry_run else None, secrets=False)
    mode = "dry run" if config.dry_run else "live"
    print(f"{args.config}: configuration is valid ({len(config.channels)} channels, {mode})")
    for warning in readiness_warnings(config, env):
        print(f"warning: {warning}")
    status = 0
    if args.online:
        status, sentence = check_online(config, env)
        print(sentence if status == 0 else f"error: {sentence}")
    for export_file in args.export_files:
        try:
            print(check_export(config, Path(export_file), args.channel, args.sample_rows))
        except RpiBrazeSyncError as exc:  # the file names itself in the message
            print("\n".join(error_lines(exc)) if isinstance(exc, ConfigError) else exc)
            status = status or exit_status(exc)
    return status
