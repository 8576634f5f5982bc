"""Pure: the users delta's store surely holds nothing for, so that a first run (every user
new) asks the store nothing (deltarun.DeltaRun.lookup).

Kept from the moment the store is found empty (the first run after onboarding, a new
workspace): each user looked up or written since is marked, one bit in a bitmap at his key's
hash. A user whose bit is clear was never written since then: the store holds no record of
his, whatever happened meanwhile (a deletion only takes records away). A bit set by another
user (a false positive) only costs the lookup the store would have had anyway.

Why: on a first run every lookup finds nothing, and asking costs the loop a hop to the store's
thread per chunk, the GIL to that thread while rocksdict converts the keys and the answer, and
the store's thread its time (a first run of 200,000 rows, CPU per row of the daemon's threads
besides its loop: 1.70-1.85 -> 0.75-0.95 us).

Size: 4 MB, 32M bits, whatever the number of users (the daemon's budget is 150 MB with 5M
users remembered). Written users -> share of the others looked up anyway: 200,000 -> 0.6 %,
1M -> 3 %, 5M -> 14 %. (Two bits a user, a Bloom filter: 0.014 %, 0.3 %, 7 %; a first run's
chunks of 500 rows hopping to the store's thread for a false positive, by 200,000 users: 270
of 400 -> 5-9, but each lookup's check cost 0.3 us a user more on the loop: not kept.)
Python's hash of the key (random per process: the bitmap is never kept on disk; a restart
finds the store not empty and asks it everything, as before).

Dropped once it spares nothing: after USELESS_LOOKUPS lookups in a row in which every user
may be held (an unchanged run, all its users written since), each check (0.18 us a user)
would be paid for nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

BITS = 1 << 25
USELESS_LOOKUPS = 20  # chunks of 500 rows: 10,000 rows


class Unwritten:
    """Marks the users written since the store was empty (`mark`, before each write), and
    tells which of a chunk's users may be held (`maybe_held`; `held_marking` marks them too,
    so that their writes need not: a first run's every user is looked up, then written)."""

    def __init__(self, bits: int = BITS) -> None:
        assert bits & (bits - 1) == 0, "a power of two"
        self._bits = bytearray(bits >> 3)
        self._mask = bits - 1
        self._useless = 0  # lookups in a row in which it spared the store nothing

    def mark(self, keys: Iterable[bytes]) -> None:
        """These users may be written from now on (call before writing them)."""
        bits, mask = self._bits, self._mask
        for key in keys:
            h = hash(key) & mask
            bits[h >> 3] |= 1 << (h & 7)

    def maybe_held(self, keys: Sequence[bytes]) -> list[int]:
        """The positions of the users the store may hold a record for (marked, or sharing a
        bit with one marked); the others it holds nothing for."""
        bits, mask = self._bits, self._mask
        held = [
            i for i, key in enumerate(keys) if bits[(h := hash(key) & mask) >> 3] >> (h & 7) & 1
        ]
        self._useless = self._useless + 1 if len(held) == len(keys) else 0
        return held

    def held_marking(self, keys: Sequence[bytes]) -> list[int]:
        """maybe_held, then mark: one pass, one visit of each user's bit (in-process, 200,000
        users in chunks of 500: 0.51-0.56 -> 0.35-0.39 us a user, with their writes' mark)."""
        bits, mask = self._bits, self._mask
        held: list[int] = []
        for i, key in enumerate(keys):
            h = hash(key) & mask
            at, bit = h >> 3, 1 << (h & 7)
            byte = bits[at]
            if byte & bit:
                held.append(i)
            else:
                bits[at] = byte | bit
        self._useless = self._useless + 1 if len(held) == len(keys) else 0
        return held

    @property
    def spent(self) -> bool:
        """Whether it spared the store nothing for USELESS_LOOKUPS lookups in a row."""
        return self._useless >= USELESS_LOOKUPS
