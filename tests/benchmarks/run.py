"""Benchmarks of the whole daemon, as a real process, against a fake Braze in its own process.

Prints one table: throughput against a bare pipeline measured in the same run, saturation of
a rate-limited, 100 ms-away Braze, peak memory, latencies, and the journal's cost. Each figure
is the median of --runs runs, with min and max.

    make bench                      # the full run (1M and 5M rows; several minutes)
    make bench BENCH="--only journal"   # one part: throughput, saturation, delta, journal
    python tests/benchmarks/run.py --quick   # seconds: checks that it all runs
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import ctypes
import os
import signal
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import yaml

from rpi_braze_sync import inspection, recordcount
from rpi_braze_sync.config import load_config
from rpi_braze_sync.mapper import bind
from rpi_braze_sync.mapping import Mapped
from rpi_braze_sync.settings import FormatSettings

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
UPSERT = "Braze Onboarding and Upsert"
HEADER = [
    "RPContactID", "ChannelExecutionID", "external_id", "first_name", "last_name", "email",
    "country", "dob", "gender", "home_city", "phone", "Output Name", "education", "income",
    "marital status",
]  # fmt: skip


MESSY_HEADER = [*HEADER, "loyalty_number", "newsletter_opt_in", "lifetime_value", "notes"]
_GENDER_WORDS = ["male", "Female", "F", "m", "MALE", "other", "", "female", "M"]
_COUNTRIES = ["FR", "France", "fra", "United Kingdom", "de", "USA", "", "fr"]
_INCOMES = ["<25k", "25k-50k", "50k-100k", ">100k", "55000", ""]
_BOOLEANS = ["true", "FALSE", "Yes", "no", "1", "0", "True", "n"]
_AMOUNTS = ["1e3", "12.50", "0", "2.5E2", "-3", "", "1,5"]
_CITIES = ["Paris", "Saint-\u00c9tienne", "Washington, D.C.", "Lyon", "N\u00eemes"]


def _messy_row(i: int) -> list[str]:
    """One row of an RPI export of CDP data as it comes: words in any case, strings of
    digits with leading zeros, invalid dates, ranges, numbers in exponent form, text with
    commas, quotes and line ends."""
    dob = f"19{50 + i % 50}-0{1 + i % 9}-1{i % 9}"
    if i % 20 == 3:
        dob = "2024-02-30"  # not a real date: dropped
    elif i % 25 == 4:
        dob = f"1{i % 9}/03/1984"  # another format: dropped
    elif i % 30 == 5:
        dob = ""
    email = f"u{i}@example.com" if i % 7 else f"U{i}@Example.COM"
    if i % 50 == 9:
        email = f"u{i}(at)example.com"  # not an address: dropped
    phone = f"+3312345{i % 10000:04d}" if i % 20 else f"01 23 45 {i % 100:02d} 67"
    first = f"First{i % 977}" if i % 11 else f"Ann, Marie {i % 977}"
    notes = ""
    if i % 10 == 1:
        notes = f'said "call me", at {i % 24}h'
    elif i % 20 == 2:
        notes = f"first line\nsecond line {i % 100}"
    return [
        str(100000 + i), "5501", f"u{i}", first, f"Last{i % 1013}", email,
        _COUNTRIES[i % len(_COUNTRIES)], dob, _GENDER_WORDS[i % len(_GENDER_WORDS)],
        _CITIES[i % len(_CITIES)], phone, "Spring Sale", ["Master", "Bachelor's", "PhD"][i % 3],
        _INCOMES[i % len(_INCOMES)], ["married", "Single", "divorced"][i % 3],
        f"{i % 100000:07d}", _BOOLEANS[i % len(_BOOLEANS)], _AMOUNTS[i % len(_AMOUNTS)], notes,
    ]  # fmt: skip


def generate_messy(path: Path, rows: int) -> None:
    """19 columns shaped like a real export (see _messy_row), written by csv (quoted where
    needed, CRLF, UTF-8)."""
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, lineterminator="\r\n")
        writer.writerow(MESSY_HEADER)
        for start in range(0, rows, 10000):
            writer.writerows(_messy_row(i) for i in range(start, min(rows, start + 10000)))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def generate(path: Path, rows: int) -> None:
    """The seed's columns, like an RPI upsert export (CRLF, UTF-8)."""
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write(",".join(HEADER) + "\r\n")
        for start in range(0, rows, 10000):
            f.write(
                "".join(
                    f"{100000 + i},5501,u{i},First{i % 977},Last{i % 1013},u{i}@example.com,FR,"
                    f"19{50 + i % 50}-0{1 + i % 9}-1{i % 9},{'MF'[i % 2]},Paris,+3312345{i % 10000:04d},"
                    f"Spring Sale,Master,{i % 100000},married\r\n"
                    for i in range(start, min(rows, start + 10000))
                )
            )


# --- processes ------------------------------------------------------------------------


PR_SET_PDEATHSIG = 1  # linux/prctl.h


def die_with_parent() -> None:
    """preexec_fn of every process started here: it gets SIGTERM when this script ends, however
    (a timeout's SIGKILL included), so no daemon or fake Braze is left running after it."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class Fake:
    def __init__(self, latency_ms: float = 0, rate_limit: int | None = None) -> None:
        self.port = free_port()
        self.args = ["--port", str(self.port), "--latency-ms", str(latency_ms)]
        if rate_limit:
            self.args += ["--rate-limit", str(rate_limit)]
        self.proc: asyncio.subprocess.Process | None = None
        self.url = f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> Fake:
        self.proc = await asyncio.create_subprocess_exec(
            PYTHON, str(ROOT / "tests" / "fakebraze.py"), *self.args,
            stdout=asyncio.subprocess.PIPE, cwd=ROOT, preexec_fn=die_with_parent,
        )  # fmt: skip
        assert self.proc.stdout is not None
        await self.proc.stdout.readline()  # "fake Braze at ..."
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.terminate()
            await self.proc.wait()

    async def stats(self) -> dict[str, Any]:
        async with aiohttp.ClientSession() as s, s.get(f"{self.url}/stats") as r:
            return dict(await r.json())


class Daemon:
    def __init__(
        self,
        workdir: Path,
        fake: Fake,
        braze: dict[str, Any],
        watch: dict[str, Any],
        env: dict[str, str],
        extra: dict[str, Any] | None = None,
    ) -> None:
        self.workdir = workdir
        self.exports = workdir / "exports"
        self.exports.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        config = yaml.safe_load((ROOT / "config" / "rpi-braze-sync.yaml").read_text())
        config["braze"].update({"api_url": fake.url, **braze})
        config["watch"].update({"base_output_directory": str(self.exports), **watch})
        config["state_directory"] = str(workdir / "state")
        config["http"] = {"listen": f"127.0.0.1:{self.port}"}
        config["hook"] = {"recheck_seconds": 1.0}
        config.update(extra or {})
        self.config = workdir / "config.yaml"
        self.config.write_text(yaml.safe_dump(config, sort_keys=False))
        self.env = {**os.environ, "BRAZE_API_KEY": "bench-key", **env}
        self.proc: asyncio.subprocess.Process | None = None

    async def __aenter__(self) -> Daemon:
        self.log = open(self.workdir / "daemon.log", "ab")  # noqa: SIM115
        self.proc = await asyncio.create_subprocess_exec(
            PYTHON, "-m", "rpi_braze_sync.cli", "run", "--config", str(self.config),
            stdout=self.log, stderr=self.log, env=self.env, cwd=ROOT, preexec_fn=die_with_parent,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                async with (
                    aiohttp.ClientSession() as s,
                    s.get(f"http://127.0.0.1:{self.port}/readyz") as r,
                ):
                    if r.status == 200:
                        return self
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
        raise RuntimeError(f"the daemon did not start: see {self.workdir / 'daemon.log'}")

    async def __aexit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            await self.proc.wait()
        self.log.close()

    def _processes(self) -> list[str]:
        """The daemon's pid and its children's (the mapping process)."""
        assert self.proc is not None
        pid = self.proc.pid
        # Each thread lists the children it started (the mapping process comes from a worker).
        children = [
            child
            for task in Path(f"/proc/{pid}/task").iterdir()
            for child in (task / "children").read_text().split()
        ]
        return [str(pid), *children]

    def cpu_s(self) -> float:
        """CPU seconds (user + system) used so far by the daemon and its children, together."""
        total = 0
        for each in self._processes():
            fields = Path(f"/proc/{each}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        return total / os.sysconf("SC_CLK_TCK")

    def loop_s(self) -> float:
        """Seconds the daemon's main thread (its event loop) has spent running or waiting for a
        core so far (/proc's schedstat): how busy the one thread that runs its Python is."""
        assert self.proc is not None
        pid = self.proc.pid
        running_ns, waiting_ns, _ = Path(f"/proc/{pid}/task/{pid}/schedstat").read_text().split()
        return (int(running_ns) + int(waiting_ns)) / 1e9

    def peak_rss_mb(self) -> float:
        """VmHWM, the peak resident set, of the daemon and of its children (the mapping
        process), added up."""
        return sum(self.peak_rss_split_mb())

    def peak_rss_split_mb(self) -> tuple[float, float]:
        """VmHWM of the daemon and of its children (the mapping process), apart: the sum
        alone does not tell which process grew."""
        peaks = []
        for each in self._processes():
            for line in Path(f"/proc/{each}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peaks.append(int(line.split()[1]) / 1024)
        return peaks[0], sum(peaks[1:])

    def drop(self, data: Path, name: str, workflow: str = "1") -> Path:
        """Put the export in place at once (a rename), as a finished RPI file."""
        folder = self.exports / UPSERT / "Bench" / workflow
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / name
        os.link(data, target)
        return target

    async def post(self, path: str, body: object) -> None:
        async with (
            aiohttp.ClientSession() as s,
            s.post(f"http://127.0.0.1:{self.port}{path}", json=body) as r,
        ):
            assert r.status < 300, await r.text()


async def wait_for_stats(
    fake: Fake, ready: Callable[[dict[str, Any]], bool], timeout_s: float, poll_s: float
) -> dict[str, Any]:
    """The fake's stats once `ready` says so (polled every `poll_s`)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        stats = await fake.stats()
        if ready(stats):
            return stats
        await asyncio.sleep(poll_s)
    raise RuntimeError(f"timed out: {stats['requests']} requests, {stats['objects']} objects")


async def wait_for_first_request(fake: Fake, timeout_s: float) -> None:
    await wait_for_stats(fake, lambda stats: stats["requests"] > 0, timeout_s, poll_s=0.02)


async def wait_for_objects(fake: Fake, count: int, timeout_s: float) -> dict[str, Any]:
    return await wait_for_stats(fake, lambda stats: stats["objects"] >= count, timeout_s, 0.1)


# --- the cases --------------------------------------------------------------------------

FAST = {"rate_limit": {"requests": 1_000_000, "seconds": 1}}  # the rate limit out of the way
QUICK_WATCH = {"settle_seconds": 0.5, "poll_interval_seconds": 0.1, "backfill": False}


# The default reads and maps in a second process; this is the one-process alternative.
ONE_PROCESS = {"performance": {"mapping_process": False}}


async def daemon_throughput(
    work: Path,
    data: Path,
    rows: int,
    env: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, float]:
    """Rows per second from the first request to the last; CPU seconds per million rows of
    both processes together, from the drop (the mapping process starts with the file)."""
    async with Fake() as fake, Daemon(work, fake, FAST, QUICK_WATCH, env or {}, extra) as daemon:
        cpu_before = daemon.cpu_s()
        daemon.drop(data, "export.txt")
        stats = await wait_for_objects(fake, rows, timeout_s=600)
        cpu = daemon.cpu_s() - cpu_before
        rss_daemon, rss_children = daemon.peak_rss_split_mb()
    seconds = stats["last"] - stats["first"]
    return {
        "rows_s": rows / seconds,
        "requests_s": stats["requests"] / seconds,
        "rss_mb": rss_daemon + rss_children,
        "rss_daemon_mb": rss_daemon,
        "rss_child_mb": rss_children,
        "cpu_s_per_m": cpu / rows * 1_000_000,
    }


def same_objects(record: dict[str, str]) -> dict[str, Any]:
    """The seed mapping's object for a row, by plain dict look-ups: no trimming, no checks,
    no types (what the daemon adds on top)."""
    return {
        "external_id": record["external_id"], "first_name": record["first_name"],
        "last_name": record["last_name"], "email": record["email"], "country": record["country"],
        "dob": record["dob"], "gender": record["gender"], "home_city": record["home_city"],
        "phone": record["phone"],
        "rpi_audience_outputs": {"add": [record["output_name"]]},
        "rpi_offers": {"add": ["Bench"]},
        "rpi_contact_ids": {"add": [record["rpcontactid"]]},
        "rpi_channel_exec_ids": {"add": [record["channelexecutionid"]]},
        "rpi_cdp_attributes": {"education": record["education"], "income": record["income"],
                               "marital_status": record["marital_status"]},
        "_merge_objects": True, "_update_existing_only": False,
    }  # fmt: skip


def four_fields(record: dict[str, str]) -> dict[str, Any]:
    """The reference of earlier runs: four of the seed's fields, a third of the bytes the
    daemon sends. Still printed, beside the fair one."""
    return {"external_id": record["external_id"], "first_name": record["first_name"],
            "email": record["email"], "rpi_cdp_attributes": {"income": record["income"]},
            "_update_existing_only": False}  # fmt: skip


def check_same_objects(data: Path) -> None:
    """The reference must send what the daemon sends: the same keys, row for row."""
    channel = load_config(ROOT / "config" / "rpi-braze-sync.yaml", env={}, secrets=False)
    mapping = channel.channels[UPSERT].plan.mapping
    with open(data, encoding="utf-8", newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        row = next(reader)
    mapper = bind(mapping, header, {"channel": UPSERT, "offer": "Bench", "workflow_id": "1"})
    mapped = mapper.map_row(row, 2)
    assert isinstance(mapped, Mapped), mapped
    keys = [h.strip().lower().replace(" ", "_") for h in header]
    bare = same_objects(dict(zip(keys, row, strict=True)))

    def shape(obj: Any) -> Any:
        return {k: shape(v) for k, v in obj.items()} if isinstance(obj, dict) else None

    assert shape(bare) == shape(mapped.attributes), (bare, mapped.attributes)


async def baseline_throughput(
    data: Path, rows: int, make: Callable[[dict[str, str]], dict[str, Any]], in_flight: int = 64
) -> dict[str, float]:
    """csv.reader -> a plain dict mapping -> orjson -> aiohttp POST, nothing else."""
    async with Fake() as fake:
        queue: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=in_flight * 2)

        async def post_all(session: aiohttp.ClientSession) -> None:
            while (body := await queue.get()) is not None:
                async with session.post(f"{fake.url}/users/track", data=body) as r:
                    await r.read()

        connector = aiohttp.TCPConnector(limit=in_flight)
        async with aiohttp.ClientSession(
            connector=connector, headers={"Authorization": "Bearer x"}
        ) as session:
            workers = [asyncio.create_task(post_all(session)) for _ in range(in_flight)]
            with open(data, encoding="utf-8", newline="") as f:
                reader = csv.reader(f)
                header = [h.strip().lower().replace(" ", "_") for h in next(reader)]
                batch: list[dict[str, Any]] = []
                for row in reader:
                    batch.append(make(dict(zip(header, row, strict=True))))
                    if len(batch) == 75:
                        await queue.put(orjson.dumps({"attributes": batch}))
                        batch = []
                if batch:
                    await queue.put(orjson.dumps({"attributes": batch}))
            for _ in workers:
                await queue.put(None)
            await asyncio.gather(*workers)
        stats = await fake.stats()
    seconds = stats["last"] - stats["first"]
    return {"rows_s": rows / seconds, "requests_s": stats["requests"] / seconds}


async def saturation(
    work: Path, data: Path, rows: int, extra: dict[str, Any] | None = None
) -> dict[str, float]:
    """Braze 100 ms away, 3,000 per 3 s allowed (the fake refuses above 3,300)."""
    braze = {"rate_limit": {"requests": 3000, "seconds": 3}}
    async with (
        Fake(latency_ms=100, rate_limit=3300) as fake,
        Daemon(work, fake, braze, QUICK_WATCH, {}, extra) as daemon,
    ):
        daemon.drop(data, "export.txt")
        stats = await wait_for_objects(fake, rows, timeout_s=900)
    seconds = stats["last"] - stats["first"]
    return {
        "share": stats["requests"] / seconds / 1000.0,
        "max_in_3s": stats["max_in_window"],
        "refused": stats["refused"],
    }


async def latencies(work: Path, data: Path) -> dict[str, float]:
    """RPI call -> first request (after a 1 s re-check), and last write -> first request."""
    watch = {"settle_seconds": 2.0, "poll_interval_seconds": 1.0, "backfill": False}
    async with Fake() as fake, Daemon(work, fake, FAST, watch, {}) as daemon:
        target = daemon.exports / UPSERT / "Bench" / "w2" / "dropped.txt"
        target.parent.mkdir(parents=True)
        target.write_bytes(data.read_bytes())
        written = time.monotonic()
        stats = await wait_for_objects(fake, 1, timeout_s=30)
        drop_s = stats["first"] - written
    watch = {"settle_seconds": 60.0, "poll_interval_seconds": 1.0, "backfill": False}
    async with Fake() as fake, Daemon(work / "hook", fake, FAST, watch, {}) as daemon:
        daemon.drop(data, "hooked.txt", workflow="w1")
        await asyncio.sleep(0.5)
        called = time.monotonic()
        await daemon.post(
            "/rpi/post-execution",
            {"channelName": UPSERT, "offerName": "Bench", "workflowAssociationInstanceID": "w1"},
        )
        stats = await wait_for_objects(fake, 1, timeout_s=30)
        hook_s = stats["first"] - called - 1.0  # minus the configured re-check
    return {"drop_s": drop_s, "hook_s": hook_s}


# --- reporting --------------------------------------------------------------------------


@dataclass
class Figure:
    name: str
    values: list[float]
    unit: str
    target: str

    def row(self) -> str:
        def show(value: float) -> str:
            return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"

        med = statistics.median(self.values)
        spread = (
            f"{show(min(self.values))} .. {show(max(self.values))}" if len(self.values) > 1 else ""
        )
        unit = f" {self.unit}" if self.unit else ""
        return f"| {self.name} | {show(med)}{unit} | {spread} | {self.target} |"


def quote_all(data: Path, target: Path) -> None:
    """The same rows with every field quoted: the record count's slower path."""
    with open(data, newline="", encoding="utf-8") as src, open(target, "w", newline="") as out:
        writer = csv.writer(out, quoting=csv.QUOTE_ALL, lineterminator="\r\n")
        writer.writerows(csv.reader(src))


class _NoCount:
    """Stands in for the record counter, to time the inspection without it."""

    too_long = None

    def __init__(self, *args: object) -> None:
        pass

    def feed(self, text: str) -> None:
        pass

    def finish(self) -> int:
        return 0


def inspection_cost(data: Path) -> dict[str, float]:
    """The daemon's inspection (hash, encoding check, record count) of a file, timed with and
    without the record count, in turns, in this process."""
    fmt = FormatSettings()
    counting = recordcount.RecordCounter
    timings: dict[bool, float] = {}
    for with_count in (True, False):
        setattr(inspection, "RecordCounter", counting if with_count else _NoCount)  # noqa: B010
        started = time.perf_counter()
        inspection.inspect_file(data, fmt)
        timings[with_count] = time.perf_counter() - started
    setattr(inspection, "RecordCounter", counting)  # noqa: B010
    return {"seconds": timings[True], "count_s": timings[True] - timings[False]}


async def repeat(
    runs: int, case: Callable[[int], Awaitable[dict[str, float]]]
) -> list[dict[str, float]]:
    return [await case(i) for i in range(runs)]


async def clean_and_messy(
    work: Path, data: Path, messy: Path, rows: int, runs: int
) -> list[Figure]:
    """The daemon on the clean and the messy data set, in turns: rows/s, CPU, peak RSS."""
    clean_runs: list[dict[str, float]] = []
    messy_runs: list[dict[str, float]] = []
    for i in range(runs):
        clean_runs.append(await daemon_throughput(work / f"c{i}", data, rows))
        messy_runs.append(await daemon_throughput(work / f"x{i}", messy, rows))
    figures = []
    for name, runs_of in (("clean data, ", clean_runs), ("messy data, ", messy_runs)):
        target = ">= 150,000"
        figures.append(Figure(f"daemon, {name}rows/s", [r["rows_s"] for r in runs_of], "", target))
        cpu = [r["cpu_s_per_m"] for r in runs_of]
        figures.append(Figure(f"daemon, {name}CPU s per 1M rows (both processes)", cpu, "s", ""))
        rss = [r["rss_mb"] for r in runs_of]
        figures.append(Figure(f"daemon, {name}peak RSS, {rows:,} rows", rss, "MB", ""))
        for key, process in (("daemon", "the daemon"), ("child", "the mapping process")):
            peaks = [r[f"rss_{key}_mb"] for r in runs_of]
            figures.append(Figure(f"  of which {process}", peaks, "MB", ""))
    return figures


def print_table(runs: int, figures: list[Figure]) -> None:
    print(
        f"rpi-braze-sync benchmark: {runs} runs, {os.cpu_count()} CPUs, {time.strftime('%Y-%m-%d')}"
    )
    print("| figure | median | min .. max | target |")
    print("| --- | --- | --- | --- |")
    for figure in figures:
        print(figure.row())


async def delta_figures_for(
    work: Path, data: Path, args: argparse.Namespace, big: Path | None = None
) -> list[Figure]:
    """Delta's targets (issue 16), side by side with delta off: delta_run.py."""
    sys.path.insert(0, str(ROOT))
    from tests.benchmarks.delta_run import delta_figures  # here: it imports this module

    if big is None and args.memory_rows:
        big = work / "rows-big.txt"
        generate(big, args.memory_rows)
    return await delta_figures(work, data, args.rows, args.runs, big, args.memory_rows)


async def journal_figures_for(work: Path, data: Path, args: argparse.Namespace) -> list[Figure]:
    """The PostgreSQL journal beside SQLite (issue 17): journal_engines.py."""
    sys.path.insert(0, str(ROOT))
    from tests.benchmarks.journal_engines import journal_figures  # here: it imports this module

    return await journal_figures(work, data, args.rows, args.runs)


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        work = Path(tmp)
        data = work / "rows.txt"
        generate(data, args.rows)
        messy = work / "rows-messy.txt"
        generate_messy(messy, args.rows)
        if args.only == "throughput":
            print_table(args.runs, await clean_and_messy(work, data, messy, args.rows, args.runs))
            return
        if args.only == "delta":
            print_table(args.runs, await delta_figures_for(work, data, args))
            return
        if args.only == "journal":
            print_table(args.runs, await journal_figures_for(work, data, args))
            return
        if args.only == "saturation":
            sat_data = work / "rows-sat.txt"
            generate(sat_data, args.saturation_rows)
            sat = await repeat(
                args.runs, lambda i: saturation(work / f"s{i}", sat_data, args.saturation_rows)
            )
            share = [s["share"] for s in sat]
            print_table(args.runs, [Figure("share of 1,000 req/s", share, "", ">= 0.95")])
            return
        big = work / "rows-big.txt"
        generate(big, args.memory_rows)
        sat_data = work / "rows-sat.txt"
        generate(sat_data, args.saturation_rows)
        small = work / "rows-small.txt"
        generate(small, 100)
        figures: list[Figure] = []

        check_same_objects(data)
        pairs: list[tuple[dict[str, float], dict[str, float]]] = []
        in_one: list[dict[str, float]] = []
        minimal: list[dict[str, float]] = []
        no_ckpt: list[dict[str, float]] = []
        for i in range(args.runs):  # side by side, alternating, so noise hits all alike
            minimal.append(await baseline_throughput(data, args.rows, four_fields))
            base = await baseline_throughput(data, args.rows, same_objects)
            without = {"RPI_BRAZE_SYNC_BENCH_NO_CHECKPOINTS": "1"}
            if i % 2:  # with and without checkpoints, one after the other, in turns
                no_ckpt.append(await daemon_throughput(work / f"n{i}", data, args.rows, without))
            mine = await daemon_throughput(work / f"t{i}", data, args.rows)
            if not i % 2:
                no_ckpt.append(await daemon_throughput(work / f"n{i}", data, args.rows, without))
            pairs.append((base, mine))
            one = await daemon_throughput(work / f"p{i}", data, args.rows, extra=ONE_PROCESS)
            in_one.append(one)
        figures.append(
            Figure("bare pipeline, rows/s", [b["rows_s"] for b, _ in pairs], "", "reference")
        )
        figures.append(
            Figure("bare pipeline, 4 fields, rows/s", [m["rows_s"] for m in minimal], "", "")
        )
        figures.append(Figure("daemon, rows/s", [d["rows_s"] for _, d in pairs], "", ">= 150,000"))
        figures.append(Figure("daemon, requests/s", [d["requests_s"] for _, d in pairs], "", ""))
        figures.append(
            Figure(
                "daemon / bare pipeline",
                [d["rows_s"] / b["rows_s"] for b, d in pairs],
                "",
                ">= 0.67",
            )
        )
        versus_minimal = [
            d["rows_s"] / m["rows_s"] for (_, d), m in zip(pairs, minimal, strict=True)
        ]
        figures.append(Figure("daemon / bare pipeline, 4 fields", versus_minimal, "", ""))
        figures.append(
            Figure(f"peak RSS, {args.rows:,} rows", [d["rss_mb"] for _, d in pairs], "MB", "")
        )
        ratios = [p["rows_s"] / b["rows_s"] for (b, _), p in zip(pairs, in_one, strict=True)]
        rows_p = [p["rows_s"] for p in in_one]
        rss_p = [p["rss_mb"] for p in in_one]
        figures.append(Figure("one process: rows/s", rows_p, "", "(alternative)"))
        figures.append(Figure("one process: / bare pipeline", ratios, "", ""))
        figures.append(Figure(f"one process: peak RSS, {args.rows:,}", rss_p, "MB", "< 100"))

        cost = [1 - d["rows_s"] / n["rows_s"] for (_, d), n in zip(pairs, no_ckpt, strict=True)]
        figures.append(Figure("journal cost (1 - with/without)", cost, "", "<= 0.05"))
        figures += await clean_and_messy(work, data, messy, args.rows, args.runs)
        figures += await delta_figures_for(work, data, args, big)
        figures += await journal_figures_for(work, data, args)

        quoted = work / "rows-quoted.txt"
        quote_all(data, quoted)
        for name, path in (("", data), ("quoted, ", quoted)):
            inspections = [inspection_cost(path) for _ in range(args.runs)]
            figures.append(
                Figure(
                    f"inspection, {name}{args.rows:,} rows",
                    [c["seconds"] for c in inspections],
                    "s",
                    "",
                )
            )
            figures.append(
                Figure(
                    f"  of which record count, {name}",
                    [c["count_s"] for c in inspections],
                    "s",
                    "",
                )
            )

        big_runs = await repeat(
            args.runs, lambda i: daemon_throughput(work / f"b{i}", big, args.memory_rows)
        )
        rss_small = statistics.median(d["rss_mb"] for _, d in pairs)
        figures.append(
            Figure(
                f"peak RSS, {args.memory_rows:,} rows",
                [d["rss_mb"] for d in big_runs],
                "MB",
                "< 100",
            )
        )
        figures.append(
            Figure(
                "RSS growth, big / small - 1",
                [d["rss_mb"] / rss_small - 1 for d in big_runs],
                "",
                "<= 0.10",
            )
        )

        sat = await repeat(
            args.runs, lambda i: saturation(work / f"s{i}", sat_data, args.saturation_rows)
        )
        figures.append(
            Figure(
                "share of 1,000 req/s (100 ms, 3,000/3 s)", [s["share"] for s in sat], "", ">= 0.95"
            )
        )
        figures.append(
            Figure("max requests in any 3 s", [s["max_in_3s"] for s in sat], "", "<= 3,000")
        )
        figures.append(Figure("429s from the fake", [s["refused"] for s in sat], "", "0"))
        sat_p = await repeat(
            args.runs,
            lambda i: saturation(work / f"m{i}", sat_data, args.saturation_rows, ONE_PROCESS),
        )
        share_p = [s["share"] for s in sat_p]
        figures.append(Figure("one process: share of 1,000 req/s", share_p, "", ">= 0.95"))
        most_p = [s["max_in_3s"] for s in sat_p]
        figures.append(Figure("one process: max in any 3 s", most_p, "", "<= 3,000"))

        lat = await repeat(args.runs, lambda i: latencies(work / f"l{i}", small))
        figures.append(
            Figure(
                "RPI call -> first request, after re-check", [x["hook_s"] for x in lat], "s", "< 1"
            )
        )
        figures.append(
            Figure(
                "last write -> first request",
                [x["drop_s"] for x in lat],
                "s",
                "<= settle 2 + poll 1",
            )
        )

    print_table(args.runs, figures)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--memory-rows", type=int, default=5_000_000)
    parser.add_argument("--saturation-rows", type=int, default=750_000)
    parser.add_argument("--workdir", default=None, help="where to put the generated files")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one run: a smoke test")
    parser.add_argument(
        "--only",
        choices=("all", "throughput", "saturation", "delta", "journal"),
        default="all",
        help="throughput: the daemon on the clean and messy data sets only, in turns; delta: "
        "delta's targets only, beside delta off; journal: the PostgreSQL journal beside SQLite",
    )
    arguments = parser.parse_args()
    if arguments.quick:  # the default suite runs this (test_benchmark_smoke.py): keep it small
        arguments.runs, arguments.rows, arguments.memory_rows, arguments.saturation_rows = (
            1,
            4_000,
            8_000,
            3_000,
        )
    asyncio.run(main(arguments))
