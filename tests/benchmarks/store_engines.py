"""Embedded stores compared for delta's remembered values (issue 16): one process per engine.

The access pattern is the daemon's: users keyed by a 16-byte digest of their key, one record
of about 24 remembered values per user, lookups per chunk of 500 rows, writes of acknowledged
records in batches, users in the export's order (random with respect to the key). Each engine
runs in a process of its own so that its peak resident memory (VmHWM) is its own.

    python tests/benchmarks/store_engines.py --users 5000000            # every engine
    python tests/benchmarks/store_engines.py --users 200000 --engines rocksdb,sqlite-blob

Phases per engine: "first run" inserts every user (lookup, miss, then write); "unchanged run"
looks up --rows random users; "changed run" looks them up and rewrites them; "sweep" deletes
the users whose newest value is older than a cut-off (a tenth of them). A writing phase ends
when the compactions it caused are done (RocksDB), so its CPU per row includes them. CPU is
the process's, every thread included. Not in the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import sqlite3
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import rocksdict
import xxhash

from rpi_braze_sync import deltarecord as delta
from rpi_braze_sync import deltarocks
from rpi_braze_sync.deltastore import DeltaStore

CHUNK = 500  # rows looked up together (the mapping's chunk)
COMMIT_EVERY = 20  # chunks of acknowledged rows per write transaction
VALUES = 24  # remembered values per user: 20 fields and nested keys, 4 array values
POOL = 4096  # distinct random record bodies (generating one per write would be measured)
ENGINES = (
    "delta-store",
    "sqlite-blob",
    "sqlite-value",
    "lmdb",
    "lmdb-reopen",
    "rocksdb",
    "leveldb",
)
REOPEN_EVERY = 4  # lmdb-reopen: chunks read between two re-opens (munmap drops touched pages)

key_of = xxhash.xxh3_128_digest


def user_key(i: int) -> bytes:
    return key_of(b"user-%d" % i)


FIELDS, ADDS = 20, 4  # of VALUES


def record_pool(seed: int) -> list[bytes]:
    """delta's records (delta.pack_record): 20 fields whose path fingerprints are the same
    for every user of a mapping, random value fingerprints, 4 array values added."""
    rng = random.Random(seed)
    paths = b"".join(key_of(b"path-%d" % n)[:4] for n in range(FIELDS))
    return [
        delta.pack_record(
            0,
            paths,
            rng.randbytes(8 * FIELDS),
            rng.randbytes(8 * ADDS),
            FIELDS,
            rng.randbytes(8),
            rng.randbytes(8),
        )
        for _ in range(POOL)
    ]


def with_time(record: bytes, t: int) -> bytes:
    return record[:2] + struct.pack("<I", t) + record[6:]


def time_of(record: bytes) -> int:
    return delta.refreshed_at(record) or 0


# --- engines: open, lookup(keys) -> values or None, write([(key, value)]), sweep(cutoff) ---


class Engine:
    def __init__(self, path: Path) -> None:
        self.path = path

    def lookup(self, keys: list[bytes]) -> list[bytes | None]:
        raise NotImplementedError

    def write(self, items: list[tuple[bytes, bytes]]) -> None:
        raise NotImplementedError

    def commit(self) -> None:
        pass

    def settle(self) -> None:
        """Wait for the work the writes left behind (compactions): its CPU is theirs."""

    def sweep(self, cutoff: int) -> int:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class SqliteBlob(Engine):
    """One row per user: key, newest time (for retention), the packed record."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        path.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(path / "delta.sqlite3", isolation_level=None)
        for pragma in (
            "journal_mode=WAL", "synchronous=NORMAL", "cache_size=-16384", "mmap_size=0",
            "temp_store=MEMORY",
        ):  # fmt: skip
            self.db.execute(f"PRAGMA {pragma}")
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS r (k BLOB PRIMARY KEY, t INTEGER, v BLOB) WITHOUT ROWID"
        )
        self.select = "SELECT k, v FROM r WHERE k IN ({})".format(",".join("?" * CHUNK))
        self.in_tx = False

    def lookup(self, keys: list[bytes]) -> list[bytes | None]:
        sql = (
            self.select
            if len(keys) == CHUNK
            else self.select.replace(",".join("?" * CHUNK), ",".join("?" * len(keys)))
        )
        found = dict(self.db.execute(sql, keys).fetchall())
        return list(map(found.get, keys))

    def write(self, items: list[tuple[bytes, bytes]]) -> None:
        if not self.in_tx:
            self.db.execute("BEGIN")
            self.in_tx = True
        self.db.executemany(
            "INSERT OR REPLACE INTO r (k, t, v) VALUES (?, ?, ?)",
            [(k, time_of(v), v) for k, v in items],
        )

    def commit(self) -> None:
        if self.in_tx:
            self.db.execute("COMMIT")
            self.in_tx = False

    def sweep(self, cutoff: int) -> int:
        n = self.db.execute("DELETE FROM r WHERE t < ?", (cutoff,)).rowcount
        self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return int(n)

    def close(self) -> None:
        self.commit()
        self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self.db.close()


class SqliteValue(SqliteBlob):
    """One row per remembered value: (user, path) -> fingerprint, time."""

    def __init__(self, path: Path) -> None:
        Engine.__init__(self, path)
        path.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(path / "delta.sqlite3", isolation_level=None)
        for pragma in (
            "journal_mode=WAL",
            "synchronous=NORMAL",
            "cache_size=-16384",
            "mmap_size=0",
        ):
            self.db.execute(f"PRAGMA {pragma}")
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS v (k BLOB, p INTEGER, f BLOB, t INTEGER,"
            " PRIMARY KEY (k, p)) WITHOUT ROWID"
        )
        self.in_tx = False

    def lookup(self, keys: list[bytes]) -> list[bytes | None]:
        sql = "SELECT k, p, f, t FROM v WHERE k IN ({})".format(",".join("?" * len(keys)))
        found: dict[bytes, list[Any]] = {}
        for k, p, f, t in self.db.execute(sql, keys):
            found.setdefault(k, []).append((p, f, t))
        return [b"x" if k in found else None for k in keys]

    def write(self, items: list[tuple[bytes, bytes]]) -> None:
        if not self.in_tx:
            self.db.execute("BEGIN")
            self.in_tx = True
        rows = []
        for k, rec in items:
            t = time_of(rec)
            values = delta.HEADER_BYTES + 4 * FIELDS
            for n in range(VALUES):  # the 4 array values as paths 20..23
                at = delta.HEADER_BYTES + 4 * n
                p = int.from_bytes(rec[at : at + 4], "little") if n < FIELDS else n
                rows.append((k, p, rec[values + 8 * n : values + 8 * n + 8], t))
        self.db.executemany("INSERT OR REPLACE INTO v (k, p, f, t) VALUES (?, ?, ?, ?)", rows)

    def sweep(self, cutoff: int) -> int:
        n = self.db.execute("DELETE FROM v WHERE t < ?", (cutoff,)).rowcount
        self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return int(n) // VALUES


class Lmdb(Engine):
    def __init__(self, path: Path) -> None:
        import lmdb

        super().__init__(path)
        self.env = lmdb.open(
            str(path), map_size=64 << 30, readahead=False, sync=False, metasync=False,
            max_dbs=0, subdir=True, create=True,
        )  # fmt: skip
        self.txn: Any = None

    def lookup(self, keys: list[bytes]) -> list[bytes | None]:
        with self.env.begin() as txn:
            get = txn.get
            return [get(k) for k in keys]

    def write(self, items: list[tuple[bytes, bytes]]) -> None:
        if self.txn is None:
            self.txn = self.env.begin(write=True)
        self.txn.cursor().putmulti(items)

    def commit(self) -> None:
        if self.txn is not None:
            self.txn.commit()
            self.txn = None

    def sweep(self, cutoff: int) -> int:
        old = []
        with self.env.begin() as txn:
            for k, v in txn.cursor():
                if time_of(v) < cutoff:
                    old.append(k)
        with self.env.begin(write=True) as txn:
            for k in old:
                txn.delete(k)
        return len(old)

    def close(self) -> None:
        self.commit()
        self.env.sync(True)
        self.env.close()


class LmdbReopen(Lmdb):
    """LMDB whose map is closed and opened again every few chunks: the pages a lookup
    touched stay resident (and count in RSS) only until then."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.reads = 0

    def reopen(self) -> None:
        self.env.close()
        Lmdb.__init__(self, self.path)

    def lookup(self, keys: list[bytes]) -> list[bytes | None]:
        self.reads += 1
        if self.reads % REOPEN_EVERY == 0 and self.txn is None:
            self.reopen()
        return super().lookup(keys)

    def commit(self) -> None:
        super().commit()
        self.reopen()


def settle_rocksdb(db: Any) -> None:
    busy = ("rocksdb.compaction-pending", "rocksdb.num-running-compactions",
            "rocksdb.num-running-flushes", "rocksdb.mem-table-flush-pending")  # fmt: skip
    while any(db.property_int_value(name) for name in busy):
        time.sleep(0.2)


class Rocks(Engine):
    def __init__(self, path: Path) -> None:
        import rocksdict as r

        super().__init__(path)
        self.r = r
        options = r.Options(raw_mode=True)
        options.create_if_missing(True)
        table = r.BlockBasedOptions()
        table.set_block_cache(r.Cache(16 << 20))
        table.set_bloom_filter(10, False)
        table.set_cache_index_and_filter_blocks(True)
        table.set_pin_l0_filter_and_index_blocks_in_cache(True)
        options.set_block_based_table_factory(table)
        options.set_compression_type(r.DBCompressionType.lz4())
        options.set_bottommost_compression_type(r.DBCompressionType.zstd())
        options.set_write_buffer_size(16 << 20)
        options.set_max_write_buffer_number(2)
        options.set_target_file_size_base(32 << 20)
        options.set_level_compaction_dynamic_level_bytes(True)
        options.set_max_background_jobs(2)
        options.set_max_open_files(256)
        options.set_keep_log_file_num(2)
        self.db = r.Rdict(str(path), options)

    def lookup(self, keys: list[bytes]) -> list[bytes | None]:
        # rocksdict: a list of keys gives a list of values
        found = self.db.get(cast(list[str | int | float | bytes | bool], keys))
        return cast(list[bytes | None], found)

    def write(self, items: list[tuple[bytes, bytes]]) -> None:
        batch = self.r.WriteBatch(raw_mode=True)
        for k, v in items:
            batch.put(k, v)
        self.db.write(batch)

    def sweep(self, cutoff: int) -> int:
        batch = self.r.WriteBatch(raw_mode=True)
        n = 0
        for k, v in self.db.items():
            if time_of(v) < cutoff:
                batch.delete(k)
                n += 1
        self.db.write(batch)
        return n

    def settle(self) -> None:
        settle_rocksdb(self.db)

    def close(self) -> None:
        self.db.close()


class Level(Engine):
    def __init__(self, path: Path) -> None:
        import plyvel

        super().__init__(path)
        self.db = plyvel.DB(
            str(path), create_if_missing=True, lru_cache_size=16 << 20, bloom_filter_bits=10,
            write_buffer_size=16 << 20, max_open_files=256, compression="snappy",
        )  # fmt: skip

    def lookup(self, keys: list[bytes]) -> list[bytes | None]:
        get = self.db.get
        return [get(k) for k in keys]

    def write(self, items: list[tuple[bytes, bytes]]) -> None:
        with self.db.write_batch() as batch:
            for k, v in items:
                batch.put(k, v)

    def sweep(self, cutoff: int) -> int:
        n = 0
        with self.db.write_batch() as batch:
            for k, v in self.db.iterator():
                if time_of(v) < cutoff:
                    batch.delete(k)
                    n += 1
        return n

    def close(self) -> None:
        self.db.close()


class Store(Engine):
    """The chosen engine as delta uses it: deltastore.DeltaStore, its options, its sweep.
    `delta-store:VARIANT,...` tries other options: index-out (index and filters outside the
    cache), universal (compaction), blob (values in blob files), no-wal, cache32 (a 32 MB
    cache), memtable32 (32 MB memtables), no-compression."""

    def __init__(self, path: Path, variant: str = "") -> None:
        super().__init__(path)
        flags = set(variant.split(",")) - {""}
        chosen = deltarocks.options

        def options(create: bool) -> Any:
            opts = chosen(create)
            if "index-out" in flags or "cache32" in flags:
                table = rocksdict.BlockBasedOptions()
                table.set_block_cache(rocksdict.Cache((32 if "cache32" in flags else 16) << 20))
                table.set_bloom_filter(10, False)
                table.set_cache_index_and_filter_blocks("index-out" not in flags)
                if "index-out" not in flags:
                    table.set_index_type(rocksdict.BlockBasedIndexType.two_level_index_search())
                    table.set_partition_filters(True)
                    table.set_pin_top_level_index_and_filter(True)
                table.set_pin_l0_filter_and_index_blocks_in_cache(True)
                opts.set_block_based_table_factory(table)
            if "universal" in flags:
                opts.set_compaction_style(rocksdict.DBCompactionStyle.universal())
            if "blob" in flags:  # values in blob files: compactions move keys, not records
                opts.set_enable_blob_files(True)
                opts.set_min_blob_size(0)
                opts.set_blob_file_size(64 << 20)
                opts.set_blob_compression_type(rocksdict.DBCompressionType.lz4())
                opts.set_enable_blob_gc(True)
                opts.set_blob_gc_age_cutoff(0.25)
            if "no-compression" in flags:
                opts.set_compression_type(rocksdict.DBCompressionType.none())
                opts.set_bottommost_compression_type(rocksdict.DBCompressionType.none())
            if "memtable32" in flags:
                opts.set_write_buffer_size(32 << 20)
            return opts

        deltarocks.options = options
        self.store = DeltaStore.open(path, "bench")
        if "no-wal" in flags:
            no_wal = rocksdict.WriteOptions()
            setattr(no_wal, "disable_wal", True)  # noqa: B010 - a property; its stub says a method
            self.store._db.set_write_options(no_wal)

    def lookup(self, keys: list[bytes]) -> list[bytes | None]:
        return self.store.lookup(keys)

    def write(self, items: list[tuple[bytes, bytes]]) -> None:
        self.store.remember(items)

    def sweep(self, cutoff: int) -> int:
        return self.store.sweep(cutoff, 0)

    def settle(self) -> None:
        settle_rocksdb(self.store._db)

    def close(self) -> None:
        self.store.close()


OPENERS: dict[str, Callable[[Path], Engine]] = {
    "delta-store": Store,
    "sqlite-blob": SqliteBlob, "sqlite-value": SqliteValue, "lmdb": Lmdb, "lmdb-reopen": LmdbReopen, "rocksdb": Rocks,
    "leveldb": Level,
}  # fmt: skip


def open_engine(name: str, path: Path) -> Engine:
    if name.startswith("delta-store:"):
        return Store(path, name.partition(":")[2])
    return OPENERS[name](path)


# --- one engine, in its own process -----------------------------------------------------


def status() -> dict[str, float]:
    """Resident memory now and at its peak (MB), split as Linux accounts it."""
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmHWM", "VmRSS", "RssAnon", "RssFile"):
            out[name] = int(value.split()[0]) / 1024
    return out


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)  # every thread: compactions included
    return usage.ru_utime + usage.ru_stime


def disk_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


class Phase:
    def __init__(self, results: dict[str, Any], name: str, rows: int = 0) -> None:
        self.results, self.name, self.rows = results, name, rows

    def __enter__(self) -> Phase:
        self.wall, self.cpu = time.perf_counter(), cpu_s()
        return self

    def __exit__(self, *exc: object) -> None:
        wall, cpu = time.perf_counter() - self.wall, cpu_s() - self.cpu
        entry = {"seconds": round(wall, 2), "cpu_seconds": round(cpu, 2), **status()}
        peaks = self.results.setdefault("peak", {"RssAnon": 0.0, "RssFile": 0.0})
        for name in peaks:
            peaks[name] = max(peaks[name], entry[name])
        if self.rows:
            entry["rows"] = self.rows
            entry["rows_per_s"] = round(self.rows / wall)
            entry["cpu_us_per_row"] = round(cpu / self.rows * 1e6, 2)
        self.results[self.name] = entry
        print(f"  {self.name}: {entry}", file=sys.stderr, flush=True)


def chunks(indices: Iterator[int], size: int = CHUNK) -> Iterator[list[int]]:
    chunk: list[int] = []
    for i in indices:
        chunk.append(i)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def run_rows(
    engine: Engine, indices: Iterator[int], pool: list[bytes], t: int, write: bool,
    deadline: float,
) -> int:  # fmt: skip
    """Per chunk: look the users up, then (if write) remember a record for each."""
    done = 0
    for n, chunk in enumerate(chunks(indices), 1):
        keys = [user_key(i) for i in chunk]
        engine.lookup(keys)
        if write:
            engine.write(
                [(k, with_time(pool[i % POOL], t)) for k, i in zip(keys, chunk, strict=False)]
            )
            if n % COMMIT_EVERY == 0:
                engine.commit()
        done += len(chunk)
        if time.perf_counter() > deadline:
            break
    engine.commit()
    if write:
        engine.settle()
    return done


def run_engine(name: str, users: int, rows: int, directory: Path, cap_s: float) -> dict[str, Any]:
    results: dict[str, Any] = {"engine": name, "users": users, "start": status()}
    pool = record_pool(1)
    now = int(time.time())
    shutil.rmtree(directory, ignore_errors=True)
    engine = open_engine(name, directory)
    # A tenth of the users were last sent 40 days ago: the sweep's share.
    old = now - 40 * 86400
    with Phase(results, "first run") as phase:
        start = time.perf_counter()
        deadline = start + cap_s
        tenth = max(1, users // 10)
        inserted = run_rows(engine, iter(range(tenth)), pool, old, True, deadline)
        if inserted == tenth:
            inserted += run_rows(engine, iter(range(tenth, users)), pool, now, True, deadline)
        phase.rows = inserted
    if inserted < users:
        results["capped"] = f"{inserted} of {users} users in {cap_s:.0f} s"
        engine.close()
        results["disk_bytes"] = disk_bytes(directory)
        results["bytes_per_value"] = round(results["disk_bytes"] / (inserted * VALUES), 1)
        shutil.rmtree(directory, ignore_errors=True)
        return results
    engine.close()
    results["disk_bytes"] = disk_bytes(directory)
    results["bytes_per_value"] = round(results["disk_bytes"] / (users * VALUES), 1)
    engine = open_engine(name, directory)

    def sample() -> Iterator[int]:  # the same random users each time, never held in a list
        rng = random.Random(7)
        return (rng.randrange(users) for _ in range(rows))

    with Phase(results, "unchanged run", rows):
        run_rows(engine, sample(), pool, now, False, float("inf"))
    with Phase(results, "changed run", rows):
        run_rows(engine, sample(), pool, now, True, float("inf"))
    with Phase(results, "sweep") as phase:
        results["swept"] = engine.sweep(now - 30 * 86400)
        phase.rows = 0
    engine.close()
    results["disk_bytes_after_sweep"] = disk_bytes(directory)
    results["end"] = status()
    shutil.rmtree(directory, ignore_errors=True)
    return results


# --- the table ---------------------------------------------------------------------------


def table(results: list[dict[str, Any]]) -> str:
    head = (
        "| engine | first run rows/s (CPU µs/row) | unchanged: lookups/s (CPU µs/row) "
        "| changed: rows/s (CPU µs/row) | bytes/value | sweep s "
        "| VmHWM MB (most anon / file seen at a phase's end) |"
    )
    lines = [head, "|" + " --- |" * 7]

    def phase(r: dict[str, Any], name: str) -> str:
        p = r.get(name)
        return f"{p['rows_per_s']:,} ({p['cpu_us_per_row']})" if p else "-"

    for r in results:
        end = r.get("end") or r["first run"]
        peak = r["peak"]
        first = phase(r, "first run") + (f" capped: {r['capped']}" if "capped" in r else "")
        lines.append(
            f"| {r['engine']} | {first} | {phase(r, 'unchanged run')} | {phase(r, 'changed run')} "
            f"| {r['bytes_per_value']} | {r.get('sweep', {}).get('seconds', '-')} "
            f"| {end['VmHWM']:.0f} ({peak['RssAnon']:.0f} / {peak['RssFile']:.0f}) |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=5_000_000)
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows of the later runs")
    parser.add_argument("--engines", default=";".join(ENGINES), help="separated by ;")
    parser.add_argument("--dir", default=None, help="where the stores go (default: a temp dir)")
    parser.add_argument("--cap-seconds", type=float, default=900, help="first run's time cap")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one engine, print JSON
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    base = Path(args.dir or os.environ.get("TMPDIR", "/tmp")) / "delta-store-bench"
    if args.one:
        where = base / args.one.replace(":", "-").replace(",", "-")
        result = run_engine(args.one, args.users, args.rows, where, args.cap_seconds)
        print(json.dumps(result))
        return
    results = []
    for name in args.engines.split(";"):
        print(f"{name}:", file=sys.stderr, flush=True)
        out = subprocess.run(
            [sys.executable, __file__, "--one", name, "--users", str(args.users), "--rows",
             str(args.rows), "--cap-seconds", str(args.cap_seconds), *(["--dir", args.dir] if args.dir else [])],
            check=True, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        results.append(json.loads(out.stdout))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    print(table(results))


if __name__ == "__main__":
    main()
