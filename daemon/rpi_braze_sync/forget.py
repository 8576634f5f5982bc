"""`rpi-braze-sync forget`: clear values delta remembers (issue 16), so that the next export
sends them again, e.g. after a restore on the Braze side.

The store has one writer: run it with the daemon stopped (a running daemon that uses delta
holds the store; forget then says so and changes nothing). It needs no API key, and forgets
whatever the workspace the values were remembered for.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from .errors import UsageError
from .status import load_for_journal


def add_parser(sub: argparse._SubParsersAction[Any]) -> argparse.ArgumentParser:
    forget: argparse.ArgumentParser = sub.add_parser(
        "forget",
        help="clear values delta remembers, so that the next export sends them (daemon stopped)",
    )
    which = forget.add_mutually_exclusive_group(required=True)
    which.add_argument("--all", action="store_true", help="every remembered value")
    which.add_argument(
        "--user",
        nargs="+",
        metavar="ID",
        help="these users (the identifier the mapping sends, e.g. an external_id)",
    )
    which.add_argument(
        "--older-than",
        type=float,
        metavar="DAYS",
        help="users whose values were last all sent more than DAYS ago",
    )
    forget.add_argument("--state-directory", help="overrides state_directory")
    return forget


def cmd_forget(args: argparse.Namespace) -> int:
    if args.older_than is not None and args.older_than < 0:
        raise UsageError("--older-than takes a number of days, 0 or more")
    config = load_for_journal(args)
    from .deltastore import DeltaStore  # (here: not loaded by every command, nor the daemon)

    store = DeltaStore.open_existing(config.state_directory)
    if store is None:
        print(f"nothing remembered in {config.state_directory}: nothing to forget")
        return 0
    try:
        if args.all:
            store.forget_all()
            print("forgot every remembered value: the next exports send everything")
        elif args.user:
            known = store.forget_users(args.user)
            print(f"forgot the values of {known} of {len(args.user)} users (others: none)")
        else:
            gone = store.forget_older_than(int(time.time()), args.older_than)
            print(f"forgot the values of {gone} users last sent over {args.older_than:g} days ago")
    finally:
        store.close()
    return 0
