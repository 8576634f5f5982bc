"""`rpi-braze-sync forget`: clear values delta remembers (issue 16), so that the next export
sends them again, e.g. after a restore on the Braze side.

The store has one writer: run it with the daemon stopped (a running daemon that uses delta
holds the store; forget then says so and changes nothing). It needs no API key, and forgets
whatever the workspace the values were remembered for.

A user is named as the mapping names it: `--user ID` is an external_id, as it is (an id may
hold ':', so no prefix is read from it); `--email`, `--phone` and `--alias LABEL NAME` name
the users of the other identifiers. Each becomes its store key by identifiers.identity, the
daemon's own function: no second spelling of a user to drift from the first.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from .errors import UsageError
from .identifiers import identity
from .status import load_for_journal

_OTHER_KINDS = ("--email", "--phone", "--alias")


def add_parser(sub: argparse._SubParsersAction[Any]) -> argparse.ArgumentParser:
    forget: argparse.ArgumentParser = sub.add_parser(
        "forget",
        help="clear values delta remembers, so that the next export sends them (daemon stopped)",
        description="Clear values delta remembers, so that the next export sends them again."
        " Give --all, --older-than DAYS, or users: --user (external_id), --email, --phone and"
        " --alias, which can be given together. A user is named by the value the daemon sends"
        " (as `preview` shows it: a phone in E.164). Stop the daemon first.",
    )
    # --all, --user and --older-than exclude each other here; --email, --phone and --alias
    # name users as --user does, so cmd_forget refuses them beside --all or --older-than.
    which = forget.add_mutually_exclusive_group()
    which.add_argument("--all", action="store_true", help="every remembered value")
    which.add_argument(
        "--user",
        nargs="+",
        default=[],
        metavar="ID",
        help="users by external_id, the ID as it is (a ':' in it is part of the id)",
    )
    which.add_argument(
        "--older-than",
        type=float,
        metavar="DAYS",
        help="users whose values were last all sent more than DAYS ago",
    )
    forget.add_argument(
        "--email", nargs="+", default=[], metavar="ADDRESS", help="users by email address"
    )
    forget.add_argument(
        "--phone", nargs="+", default=[], metavar="NUMBER", help="users by phone (E.164: +33...)"
    )
    forget.add_argument(
        "--alias",
        nargs=2,
        action="append",
        default=[],
        metavar=("LABEL", "NAME"),
        help="a user by user_alias: its alias_label, then its alias_name (repeatable)",
    )
    forget.add_argument("--state-directory", help="overrides state_directory")
    return forget


def named_users(args: argparse.Namespace) -> list[str]:
    """The identities of the users `forget` names, as the mapping makes them (the store's
    user; rowcode.compile_identify: an alias is its label, then its name)."""
    return [
        *(identity("external_id", [user]) for user in args.user),
        *(identity("email", [email]) for email in args.email),
        *(identity("phone", [phone]) for phone in args.phone),
        *(identity("user_alias", [label, name]) for label, name in args.alias),
    ]


def cmd_forget(args: argparse.Namespace) -> int:
    users = named_users(args)
    others = args.email or args.phone or args.alias
    if others and (args.all or args.older_than is not None):
        raise UsageError(f"{', '.join(_OTHER_KINDS)} name users: not with --all or --older-than")
    if not (args.all or users or args.older_than is not None):
        named = ", ".join(("--user", *_OTHER_KINDS))
        raise UsageError(f"give --all, --older-than DAYS, or users ({named})")
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
        elif users:
            known = store.forget_users(users)
            print(f"forgot the values of {known} of {len(users)} users (others: none)")
        else:
            gone = store.forget_older_than(int(time.time()), args.older_than)
            print(f"forgot the values of {gone} users last sent over {args.older_than:g} days ago")
    finally:
        store.close()
    return 0
