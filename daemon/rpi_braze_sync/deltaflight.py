"""Pure: delta's rows in flight, so that no comparison trusts a record that a row sent since (or
still in flight) may have made wrong. Order of calls: see InFlight.
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import repeat


class InFlight:
    """Two hazards, one object:
    - a row of the user is in flight (sent, not answered) when another row of that user is
      compared: what Braze will hold is unknown until the answer, so it is sent whole;
    - a chunk's records were read, then a row of one of its users was acknowledged and its
      new record written, before the chunk was compared: compare with the newer record.

    Per chunk: token = lookup_started(keys); records = store.lookup(keys); per row base(token,
    key, record), compare, and sending(key) if it sends; lookup_done(token). Per answer:
    latest(key, compared_with) is build_record's base, then answered(key, written or None).
    """

    def __init__(self) -> None:
        self._seq = 0  # counts records written
        self._rows: dict[bytes, int] = {}  # user -> rows sent and not yet answered
        self._written: dict[bytes, tuple[int, bytes]] = {}  # user -> (seq, newest record)
        self._lookups: dict[int, int] = {}  # outstanding lookup token -> seq when it began
        # outstanding lookup token -> the users it reads (None: any): a record written while
        # it is outstanding is kept for it only if it reads that user (acknowledged_all)
        self._reads: dict[int, set[bytes] | None] = {}
        self._next_token = 0

    def lookup_started(self, keys: Iterable[bytes] | None = None) -> int:
        """Call just before reading the records of a chunk's users (`keys`; None: not said,
        every record written until lookup_done is kept for it)."""
        token = self._next_token
        self._next_token += 1
        self._lookups[token] = self._seq
        self._reads[token] = None if keys is None else set(keys)
        return token

    def base(self, token: int, key: bytes, looked_up: bytes | None) -> tuple[bytes | None, bool]:
        """The record to compare the row with, and whether the user is busy (send whole)."""
        written = self._written.get(key)
        record = (
            written[1] if written is not None and written[0] > self._lookups[token] else looked_up
        )
        return record, key in self._rows

    def lookup_done(self, token: int) -> None:
        """The chunk is compared (and its sending rows registered): forget what only it needed."""
        del self._lookups[token]
        del self._reads[token]
        oldest = min(self._lookups.values(), default=self._seq)
        stale = [
            k for k, (seq, _) in self._written.items() if seq <= oldest and k not in self._rows
        ]
        for key in stale:
            del self._written[key]

    def sending(self, key: bytes) -> None:
        """A row of this user will be sent (call at comparison, not when the request leaves)."""
        rows = self._rows
        rows[key] = rows.get(key, 0) + 1

    def quiet(self, token: int, keys: list[bytes]) -> bool:
        """Whether base() of every key is (its looked-up record, not busy), and no key repeats:
        a chunk of users none of whose rows is in flight or was written since the lookup (the
        first run's usual chunk; then sending_all instead of base and sending row by row)."""
        users = self._reads[token]
        if users is None:
            users = set(keys)
        # Views first: a dict view against a set walks the smaller of the two (a set against a
        # view walks the whole view: every row in flight, per chunk).
        if len(users) != len(keys) or not self._rows.keys().isdisjoint(users):
            return False
        since = self._lookups[token]
        written = self._written
        return all(written[k][0] <= since for k in written.keys() & users)

    def sending_all(self, keys: Iterable[bytes]) -> None:
        """sending() for each of these users, none of whom has a row in flight (quiet)."""
        self._rows.update(dict.fromkeys(keys, 1))

    def latest(self, key: bytes, fallback: bytes | None) -> bytes | None:
        """The user's newest record: one written since the row was compared, else `fallback`
        (what the row was compared with)."""
        written = self._written.get(key)
        return written[1] if written is not None else fallback

    def answered(self, key: bytes, written: bytes | None) -> None:
        """A sent row of this user was answered: acknowledged with `written` handed to the
        store (in answer order, before the next lookup is queued), or rejected/abandoned (None)."""
        if written is not None:
            self._seq += 1
            self._written[key] = (self._seq, written)
        left = self._rows.pop(key) - 1
        if left > 0:
            self._rows[key] = left
        elif not self._lookups:
            self._written.pop(key, None)

    def answered_all(self, answers: Iterable[tuple[bytes, bytes | None]]) -> None:
        """answered() for each (key, written) in turn."""
        rows, written_, lookups = self._rows, self._written, self._lookups
        seq = self._seq
        for key, written in answers:
            if written is not None:
                seq += 1
                written_[key] = (seq, written)
            left = rows.pop(key) - 1
            if left > 0:
                rows[key] = left
            elif not lookups:
                written_.pop(key, None)
        self._seq = seq

    def acknowledged_all(self, keys: list[bytes], records: list[bytes]) -> None:
        """answered(key, record) for each pair in turn; in bulk when each of these users has
        this one row in flight (the first run's usual answer), else one by one."""
        rows = self._rows
        counts = list(map(rows.pop, keys, repeat(0)))  # (a user here twice: 0 the second time)
        if counts.count(1) != len(keys):  # another row of some user in flight: put back
            rows.update((key, count) for key, count in zip(keys, counts, strict=True) if count)
            self.answered_all(zip(keys, records, strict=True))
            return
        seq, count = self._seq, len(keys)
        read = self._read_by_lookups(keys) if self._lookups else set()
        if read is None:  # kept for base() of the chunks being looked up
            numbered = zip(range(seq + 1, seq + count + 1), records, strict=True)
            self._written.update(zip(keys, numbered, strict=True))
        elif read:  # (rare: a user of the first run's chunk being looked up answered now)
            written = self._written
            for n, (key, record) in enumerate(zip(keys, records, strict=True), seq + 1):
                if key in read:
                    written[key] = (n, record)
                else:
                    written.pop(key, None)
        elif self._written:  # none of these users busy or read: nothing kept (as answered())
            list(map(self._written.pop, keys, repeat(None)))
        self._seq = seq + count

    def _read_by_lookups(self, keys: list[bytes]) -> set[bytes] | None:
        """Which of these users the outstanding lookups read (None: some lookup did not say
        which users it reads). A record of a user none of them reads is needed by none:
        base() and quiet() are asked only of a lookup's own users, a later lookup reads the
        store (written before the answer's rows settle), and latest() only while the user
        has another row in flight (acknowledged_all keeps those one by one, as answered())."""
        read: set[bytes] = set()
        for users in self._reads.values():
            if users is None:
                return None
            read |= users.intersection(keys)
        return read

    def __len__(self) -> int:
        """Users held (bounded by rows in flight and writes during outstanding lookups)."""
        return len(self._rows.keys() | self._written.keys())
