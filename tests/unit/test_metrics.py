"""Every labelled family exists before its first event, for each label value known in advance."""

from __future__ import annotations

import ast
from pathlib import Path

import rpi_braze_sync
from rpi_braze_sync.metrics import (
    FILE_OUTCOMES,
    HOOK_OUTCOMES,
    IGNORED_REASONS,
    RELOAD_OUTCOMES,
    REQUEST_CODES,
    REQUEST_ERRORS,
    RETRY_REASONS,
    ROW_OUTCOMES,
    WAIT_SOURCES,
    Metrics,
)

CHANNELS = ("Braze Onboarding and Upsert", "Braze Append")
KNOWN = {  # attribute of Metrics -> (sample name, label, values)
    "ignored_files": ("ignored_files_total", "reason", IGNORED_REASONS),
    "requests": ("requests_total", "code", REQUEST_CODES),
    "request_errors": ("request_errors_total", "error", REQUEST_ERRORS),
    "retries": ("retries_total", "reason", RETRY_REASONS),
    "rate_limit_waits": ("rate_limit_waits_total", "source", WAIT_SOURCES),
    "config_reloads": ("config_reloads_total", "outcome", RELOAD_OUTCOMES),
    "hook_calls": ("hook_calls_total", "outcome", HOOK_OUTCOMES),
}


def test_every_labelled_family_starts_at_zero_for_each_known_value() -> None:
    metrics = Metrics()
    metrics.add_channels(CHANNELS)
    value = metrics.registry.get_sample_value
    for name, label, values in KNOWN.values():
        for known in values:
            assert value(f"rpi_braze_sync_{name}", {label: known}) == 0, (name, known)
    for channel in CHANNELS:
        assert value("rpi_braze_sync_fields_dropped_total", {"channel": channel}) == 0
        for outcome in ROW_OUTCOMES:
            labels = {"channel": channel, "outcome": outcome}
            assert value("rpi_braze_sync_rows_total", labels) == 0
        for outcome in FILE_OUTCOMES:
            labels = {"channel": channel, "outcome": outcome}
            assert value("rpi_braze_sync_files_total", labels) == 0


def test_code_holds_only_http_status_codes() -> None:
    assert all(code.isdigit() and len(code) == 3 for code in REQUEST_CODES)
    assert not set(REQUEST_ERRORS) & set(REQUEST_CODES)


def test_the_code_uses_only_known_label_values() -> None:
    """Each `.labels("literal")` in the package names a value started at 0 above."""
    package = Path(rpi_braze_sync.__file__).parent
    used: list[tuple[str, str, str]] = []
    for source in package.glob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "labels"
                and isinstance(node.func.value, ast.Attribute)
                and node.func.value.attr in KNOWN
            ):
                for arg in node.args:
                    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                        used.append((source.name, node.func.value.attr, arg.value))
    assert len(used) >= 10  # the walk finds them
    unknown = [(f, family, v) for f, family, v in used if v not in KNOWN[family][2]]
    assert unknown == []
