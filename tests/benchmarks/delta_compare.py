"""CPU per row of delta's comparison and record building (issue 16), on rows shaped like the
seed's: 20 fields (8 standard, 12 nested keys, one a $time) and 4 array values added.

    python tests/benchmarks/delta_compare.py [--rows 200000]

Rows are made a chunk of 500 at a time and compared at once, as the pipeline will (a row's
objects are then still in the processor's cache; comparing 100,000 rows made long before
measures memory latency instead). Prints microseconds of CPU per row, best of --repeat:
- first run: nothing remembered (compare, then build the record once acknowledged);
- unchanged: the same rows again (compare only: nothing is sent or written);
- new ids each run: the same fields, new channel execution and contact ids (compare, build);
- 10 % changed: one field changed in one row of ten (compare, build);
- fingerprints alone: the 20 value fingerprints and 4 array ones, for scale.
Not in the test suite.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from typing import Any

import xxhash

from rpi_braze_sync.delta import build_record, compare

NOW = 1_800_000_000
MAX_AGE = 30 * 86400
CHUNK = 500
Row = tuple[dict[str, bytes], list[tuple[str, bytes]]]


def dumps(value: object) -> bytes:
    # orjson 3.13 leaves each small result holding a ~4 KB allocation: 100,000 rows of
    # 24 values would measure the allocator, not delta.
    return json.dumps(value, separators=(",", ":")).encode()


def make_row(i: int, run: int, changed_every: int = 0) -> Row:
    country = "DE" if changed_every and i % changed_every == 0 else "FR"
    fields = {
        "first_name": f"First{i % 977}", "last_name": f"Last{i % 1013}",
        "email": f"u{i}@example.com", "country": country, "dob": f"19{50 + i % 50}-01-1{i % 9}",
        "gender": "MF"[i % 2], "home_city": "Paris", "phone": f"+3312345{i % 10000:04d}",
    }  # fmt: skip
    encoded = {k: dumps(v) for k, v in fields.items()}
    for k in range(11):
        encoded[f"rpi_cdp_attributes.col{k}"] = dumps(i % (k + 7) if k % 2 else f"v{k}")
    encoded["rpi_cdp_attributes.since"] = dumps({"$time": "2024-01-02"})
    adds = [
        ("rpi_audience_outputs", b'"Spring Sale"'), ("rpi_offers", b'"Spring Offer"'),
        ("rpi_contact_ids", dumps(f"{run}-{i}")), ("rpi_channel_exec_ids", dumps(run)),
    ]  # fmt: skip
    return encoded, adds


Case = Callable[[list[Row], list[bytes | None]], list[bytes | None]]


def compare_only(rows: list[Row], records: list[bytes | None]) -> list[bytes | None]:
    for (fields, adds), record in zip(rows, records, strict=False):
        compare(fields, adds, record, NOW, MAX_AGE, "upsert")
    return records


def compare_and_build(rows: list[Row], records: list[bytes | None]) -> list[bytes | None]:
    out = []
    for (fields, adds), record in zip(rows, records, strict=False):
        decision = compare(fields, adds, record, NOW, MAX_AGE, "upsert")
        if decision.remember is not None:
            record = build_record(decision.remember, record, NOW)
        out.append(record)
    return out


def fingerprints(rows: list[Row], records: list[bytes | None]) -> list[bytes | None]:
    value_fp = xxhash.xxh3_64_digest
    for fields, adds in rows:
        b"".join(map(value_fp, fields.values()))
        [value_fp(e, 7) for _, e in adds]
    return records


def run(n: int, make: Callable[[int], Row], case: Case, stored: list[Any]) -> float:
    """CPU seconds of `case` alone, chunk by chunk; `stored` is updated with what it returns."""
    spent = 0.0
    for start in range(0, n, CHUNK):
        rows = [make(i) for i in range(start, min(n, start + CHUNK))]
        records = [
            None if r is None else bytes(bytearray(r)) for r in stored[start : start + CHUNK]
        ]
        before = time.process_time()
        out = case(rows, records)
        spent += time.process_time() - before
        stored[start : start + CHUNK] = out
    return spent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    n = args.rows
    cases: list[tuple[str, Callable[[int], Row], Case]] = [
        ("first run (compare + build)", lambda i: make_row(i, 1), compare_and_build),
        ("unchanged (compare)", lambda i: make_row(i, 1), compare_only),
        ("new ids each run (compare + build)", lambda i: make_row(i, 2), compare_and_build),
        ("10 % changed (compare + build)", lambda i: make_row(i, 1, 10), compare_and_build),
        ("fingerprints alone (20 + 4)", lambda i: make_row(i, 1), fingerprints),
    ]
    first: list[bytes | None] = [None] * n
    run(n, cases[0][1], compare_and_build, first)
    print("| case | CPU µs per row |\n| --- | --- |")
    for name, make, case in cases:
        best = float("inf")
        for _ in range(args.repeat):
            stored = [None] * n if case is cases[0][2] and name.startswith("first") else list(first)
            best = min(best, run(n, make, case, stored))
        print(f"| {name} | {best / n * 1e6:.2f} |", flush=True)


if __name__ == "__main__":
    main()
