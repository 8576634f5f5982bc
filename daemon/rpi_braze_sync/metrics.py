"""Every metric, defined once, on a registry the app builds (tests build their own).

Prefix rpi_braze_sync_; units as suffixes; labels only from bounded sets (channel names come
from the config, never from file names or users). Every label value known in advance starts
at 0, so that a family can be graphed and alerted on before its first event.
"""

from __future__ import annotations

import platform
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics

from . import package_version

# The *_created series double the output and no dashboard uses them.
disable_created_metrics()  # type: ignore[no-untyped-call]

P = "rpi_braze_sync_"

# The label values known in advance (others, such as an unexpected HTTP status, still appear
# when they happen).
ROW_OUTCOMES = ("sent", "rejected")
FILE_OUTCOMES = ("done", "failed", "vanished")
DATA_POINT_OUTCOMES = ("sent", "skipped")
# Why a path on the share was left alone: the layout, no such channel, or not a regular file.
IGNORED_REASONS = ("layout", "channel", "symlink", "fifo", "device", "socket", "directory")
REQUEST_CODES = ("201", "400", "401", "403", "404", "413", "429", "500", "502", "503", "504")
REQUEST_ERRORS = ("connection", "dns", "tls", "timeout")  # no answer (braze.TransportError)
RETRY_REASONS = ("rate_limited", "too_large", "bisect", "auth", "http_4xx", "http_5xx",
                 *REQUEST_ERRORS)  # fmt: skip
WAIT_SOURCES = ("local", "braze")
RELOAD_OUTCOMES = ("applied", "failed")
HOOK_OUTCOMES = ("accepted", "duplicate", "invalid", "unauthorised", "unavailable")


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.rows = Counter(P + "rows", "Rows by final outcome", ["channel", "outcome"], registry=r)
        self.fields_dropped = Counter(
            P + "fields_dropped", "Optional fields dropped from a sent row", ["channel"], registry=r
        )
        self.data_points = Counter(
            P + "data_points",
            "Braze data points acknowledged (sent) or left out as held already (skipped, delta)",
            ["channel", "outcome"],
            registry=r,
        )
        self.files = Counter(
            P + "files", "Files finished, by outcome", ["channel", "outcome"], registry=r
        )
        self.ignored_files = Counter(
            P + "ignored_files", "Paths left alone, by reason", ["reason"], registry=r
        )
        self.requests = Counter(
            P + "requests", "Braze requests answered, by HTTP status code", ["code"], registry=r
        )
        self.request_errors = Counter(
            P + "request_errors",
            "Braze requests without an answer: connection refused or lost, DNS, TLS, timeout",
            ["error"],
            registry=r,
        )
        self.request_duration = Histogram(
            P + "request_duration_seconds",
            "Braze request duration",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=r,
        )
        self.retries = Counter(
            P + "retries", "Batches sent again, by reason", ["reason"], registry=r
        )
        self.possible_duplicates = Counter(
            P + "possible_duplicate_rows",
            "Rows resent after a timeout or a connection lost mid-request (Braze may have"
            " applied them already); never after a refused connection, DNS or TLS failure",
            registry=r,
        )
        self.rate_limit_waits = Counter(
            P + "rate_limit_waits",
            "Times a sender waited for the rate limit",
            ["source"],
            registry=r,
        )
        self.in_flight = Gauge(
            P + "in_flight_requests", "Requests sent and not yet answered", registry=r
        )
        self.concurrency_limit = Gauge(
            P + "concurrency_limit",
            "Requests allowed in flight (from Braze's delivery rate x shortest round trip)",
            registry=r,
        )
        self.backlog_files = Gauge(
            P + "backlog_files", "Complete files waiting to be sent", registry=r
        )
        self.backlog_rows = Gauge(
            P + "backlog_rows", "Rows read and waiting for Braze to acknowledge them", registry=r
        )
        self.current_file_progress = Gauge(
            P + "current_file_progress_ratio",
            "Share of the current file's rows acknowledged by Braze or rejected",
            registry=r,
        )
        self.last_success = Gauge(
            P + "last_success_timestamp_seconds", "When Braze last accepted a request", registry=r
        )
        self.auth_failing = Gauge(
            P + "braze_auth_failing", "1 while Braze refuses the key or URL", registry=r
        )
        self.leader = Gauge(
            P + "leader",
            "1 on the daemon that sends (a single daemon, or the pair's lease holder); 0 on a"
            " standby",
            registry=r,
        )
        self.share_available = Gauge(
            P + "share_available", "1 while the export folder is readable", registry=r
        )
        self.config_reloads = Counter(
            P + "config_reloads", "Configuration reloads by outcome", ["outcome"], registry=r
        )
        self.config_last_reload_ok = Gauge(
            P + "config_last_reload_successful",
            "0 after a refused reload, until a good one",
            registry=r,
        )
        self.hook_calls = Counter(
            P + "hook_calls", "RPI post-execution calls by outcome", ["outcome"], registry=r
        )
        self.build_info = Gauge(
            P + "build_info",
            "Always 1; the labels say what runs",
            ["version", "python"],
            registry=r,
        )
        self.observer_restarts = Counter(
            P + "observer_restarts",
            "Times the watcher's observer thread was found stopped and started again",
            registry=r,
        )
        self.oldest_unfinished_age = Gauge(
            P + "oldest_unfinished_file_age_seconds",
            "Age of the oldest file complete and not yet done, failed or vanished (0 if none)",
            registry=r,
        )
        self.config_last_reload_ok.set(1)
        self.share_available.set(1)
        self.build_info.labels(package_version(), platform.python_version()).set(1)
        for family, values in (
            (self.ignored_files, IGNORED_REASONS),
            (self.requests, REQUEST_CODES),
            (self.request_errors, REQUEST_ERRORS),
            (self.retries, RETRY_REASONS),
            (self.rate_limit_waits, WAIT_SOURCES),
            (self.config_reloads, RELOAD_OUTCOMES),
            (self.hook_calls, HOOK_OUTCOMES),
        ):
            for value in values:
                family.labels(value)

    def add_channels(self, channels: Iterable[str]) -> None:
        """Start the per-channel series at 0 (at start, and for channels a reload adds)."""
        for channel in channels:
            self.fields_dropped.labels(channel)
            for outcome in ROW_OUTCOMES:
                self.rows.labels(channel, outcome)
            for outcome in FILE_OUTCOMES:
                self.files.labels(channel, outcome)
            for outcome in DATA_POINT_OUTCOMES:
                self.data_points.labels(channel, outcome)
