"""deltarecord.user_key: the store's key keeps the order of identities and names one identity,
whatever its length or characters."""

from __future__ import annotations

import random

import pytest
import xxhash

from rpi_braze_sync.deltarecord import KEY_BYTES, user_key, user_keys

LONG_PREFIX = "alias:loyalty_program_member_number_" + "x" * KEY_BYTES  # over KEY_BYTES alone
IDENTITIES = [
    "",
    "u1",
    "u10",
    "u2",
    "a" * (KEY_BYTES - 1),
    "a" * KEY_BYTES,
    "a" * (KEY_BYTES + 1),
    "a" * (KEY_BYTES + 2),
    "a" * 500,
    LONG_PREFIX,
    LONG_PREFIX + "1",
    LONG_PREFIX + "2",
    LONG_PREFIX + "10",
    "email:zoë@example.com",
    "é" * KEY_BYTES,  # two bytes each: cut in the middle of a character
    "é" * KEY_BYTES + "e",
    "日本" * 40,
    "\x00",
    "\x00\x00",
    "\U0010ffff" * 20,
    "3f2a7c1e-9b4d-4e1a-8c2f-0d5e6f7a8b9c",
    "alias:label:name",
]


def test_each_identity_has_its_own_key() -> None:
    keys = [user_key(u) for u in IDENTITIES]
    assert len(set(keys)) == len(IDENTITIES)


@pytest.mark.parametrize("identity", IDENTITIES)
def test_a_key_is_the_identity_or_its_bounded_prefix_and_digest(identity: str) -> None:
    encoded = identity.encode("utf-8")
    key = user_key(identity)
    if len(encoded) <= KEY_BYTES:
        assert key == encoded
    else:
        assert key == encoded[:KEY_BYTES] + xxhash.xxh3_128_digest(encoded)
        assert len(key) == KEY_BYTES + 16
    assert key < b"\xff"  # forget_all's range ends there


def test_keys_sort_as_identities_do_up_to_key_bytes() -> None:
    rng = random.Random(16)
    ids = [f"{rng.randrange(10**9)}" for _ in range(2000)]
    ids += [f"email:{rng.randrange(10**6)}.{n}@example.com" for n in range(500)]
    ids += ["é" + str(n) for n in range(100)] + ["e" + str(n) for n in range(100)]
    assert [user_key(u) for u in sorted(ids)] == sorted(user_key(u) for u in ids)
    # Longer ones sort by their first KEY_BYTES bytes: an audience sorted by id stays in
    # order in the store, apart from ids that share all of them.
    long = [f"{'p' * KEY_BYTES}{n}" for n in range(50)] + [
        f"{'q' * KEY_BYTES}{n}" for n in range(50)
    ]
    keys = [user_key(u) for u in sorted(long)]
    assert all(k[:KEY_BYTES] == b"p" * KEY_BYTES for k in keys[:50])
    assert all(k[:KEY_BYTES] == b"q" * KEY_BYTES for k in keys[50:])


def test_a_chunk_is_keyed_like_each_user() -> None:
    short = ["u1", "é", "", "a" * KEY_BYTES]
    assert user_keys(short) == [user_key(u) for u in short]
    assert user_keys(IDENTITIES) == [user_key(u) for u in IDENTITIES]
    assert user_keys(iter(IDENTITIES)) == [user_key(u) for u in IDENTITIES]
    assert user_keys([]) == []
