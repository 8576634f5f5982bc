"""Monitoring assets in config/: the Prometheus alert rules, their promtool unit tests, and the
Grafana dashboard, checked against promtool and against a real scrape of the daemon's metrics.

promtool comes from Debian's `prometheus` package (.ci/run installs it). Without it the promtool
tests skip on a workstation and fail when $CI is set.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from rpi_braze_sync.metrics import (
    DATA_POINT_OUTCOMES,
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

ROOT = Path(__file__).resolve().parents[2]
ALERTS = ROOT / "config" / "prometheus-alerts.yaml"
ALERT_TESTS = ROOT / "config" / "prometheus-alerts.test.yaml"
DASHBOARD = ROOT / "config" / "grafana-dashboard.json"

PREFIX = "rpi_braze_sync_"
METRIC_NAME = re.compile(r"\b(rpi_braze_sync_[A-Za-z0-9_]+)")
# `metric{label="v", label=~"a|b"}`: the metric and its matchers.
SELECTOR = re.compile(r"\b(rpi_braze_sync_[A-Za-z0-9_]+)\s*\{([^}]*)\}")
MATCHER = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*"([^"]*)"')
# `by (a, b) (rate(metric...` / `increase(`: labels aggregated over one metric.
GROUPING = re.compile(
    r"\bby\s*\(([A-Za-z0-9_,\s]*)\)\s*\(\s*(?:rate|irate|increase)\(\s*(rpi_braze_sync_[A-Za-z0-9_]+)"
)
# Labels Prometheus adds at scrape time, not the daemon.
TARGET_LABELS = {"job", "instance"}

CHANNELS = ("Braze Onboarding and Upsert", "Braze Append")
# The label values the daemon uses, as metrics.py starts them.
LABEL_VALUES: dict[str, tuple[str, ...]] = {
    "rows": ROW_OUTCOMES,
    "files": FILE_OUTCOMES,
    "data_points": DATA_POINT_OUTCOMES,
    "ignored_files": IGNORED_REASONS,
    "requests": REQUEST_CODES,
    "request_errors": REQUEST_ERRORS,
    "retries": RETRY_REASONS,
    "rate_limit_waits": WAIT_SOURCES,
    "config_reloads": RELOAD_OUTCOMES,
    "hook_calls": HOOK_OUTCOMES,
}


# --- helpers ------------------------------------------------------------------------------


def promtool() -> str:
    """promtool's path; skips (or fails under CI) when Debian's prometheus is not installed."""
    found = shutil.which("promtool")
    if found is None:
        message = (
            "promtool not found on PATH: install Debian's prometheus package "
            "(apt-get install --no-install-recommends prometheus)"
        )
        if os.environ.get("CI"):
            pytest.fail(f"{message}; $CI is set, so this cannot be skipped", pytrace=False)
        pytest.skip(message)
    return found


def run_promtool(*args: str | Path) -> str:
    command = [promtool(), *map(str, args)]
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=120, cwd=ROOT, check=False
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{' '.join(command)} exited {result.returncode}:\n{output}"
    return output


def scrape() -> dict[str, set[str]]:
    """Every sample name a real /metrics body has, with its label names.

    Each labelled metric is touched once with the daemon's label values, so its series exist.
    """
    m = Metrics()
    children: dict[str, Any] = {
        "rows": m.rows,
        "files": m.files,
        "data_points": m.data_points,
        "ignored_files": m.ignored_files,
        "requests": m.requests,
        "request_errors": m.request_errors,
        "retries": m.retries,
        "rate_limit_waits": m.rate_limit_waits,
        "config_reloads": m.config_reloads,
        "hook_calls": m.hook_calls,
    }
    for key, metric in children.items():
        for value in LABEL_VALUES[key]:
            if key in ("rows", "files", "data_points"):
                for channel in CHANNELS:
                    metric.labels(channel, value).inc()
            else:
                metric.labels(value).inc()
    for channel in CHANNELS:
        m.fields_dropped.labels(channel).inc()
    m.request_duration.observe(0.2)
    m.possible_duplicates.inc()
    m.in_flight.set(2)
    m.concurrency_limit.set(4)
    m.backlog_files.set(1)
    m.backlog_rows.set(75)
    m.current_file_progress.set(0.5)
    m.last_success.set(1_700_000_000)
    m.auth_failing.set(0)

    text = generate_latest(m.registry).decode()
    names: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            names.setdefault(sample.name, set()).update(sample.labels)
    return names


def base_name(sample: str) -> str:
    for suffix in ("_bucket", "_sum", "_count"):
        if sample.endswith(suffix):
            return sample[: -len(suffix)]
    return sample


def alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def walk(node: object) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


def dashboard_exprs() -> list[str]:
    """Panel target expressions and the templating variables' queries."""
    board = dashboard()
    exprs = [node["expr"] for node in walk(board["panels"]) if isinstance(node.get("expr"), str)]
    for variable in board["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]
            exprs.append(query["query"] if isinstance(query, dict) else query)
    return exprs


def panels() -> list[dict[str, Any]]:
    return [node for node in walk(dashboard()["panels"]) if "gridPos" in node and "type" in node]


def sources() -> dict[str, list[str]]:
    return {
        "alerts": [rule["expr"] for rule in alert_rules()],
        "dashboard": dashboard_exprs(),
    }


# --- promtool ------------------------------------------------------------------------------


def test_alert_rules_pass_promtool_check() -> None:
    output = run_promtool("check", "rules", ALERTS)
    assert f"SUCCESS: {len(alert_rules())} rules found" in output, output


def test_alert_rule_unit_tests_pass() -> None:
    output = run_promtool("test", "rules", ALERT_TESTS)
    assert "SUCCESS" in output, output


def test_dashboard_exprs_are_valid_promql(tmp_path: Path) -> None:
    """Each dashboard query, with Grafana's variables filled in, as a rule promtool parses."""
    rules = []
    for index, expr in enumerate(dashboard_exprs()):
        # Grafana's label_values(selector, label) is not PromQL: check its selector.
        variable = re.fullmatch(r"label_values\((.*),\s*\w+\)", expr, re.S)
        if variable is not None:
            expr = variable.group(1)
        expr = re.sub(r"\$__\w+", "5m", expr)
        expr = re.sub(r"\$\{?\w+\}?", ".+", expr)
        rules.append({"record": f"dashboard:query_{index}", "expr": expr})
    path = tmp_path / "dashboard-queries.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    output = run_promtool("check", "rules", path)
    assert f"SUCCESS: {len(rules)} rules found" in output, output


# --- alert rules, structure ------------------------------------------------------------------

EXPECTED_ALERTS = {
    "RpiBrazeSyncDown",
    "RpiBrazeSyncBrazeAuthFailing",
    "RpiBrazeSyncBacklogNotDraining",
    "RpiBrazeSyncRejectRateHigh",
    "RpiBrazeSyncConfigReloadFailed",
    "RpiBrazeSyncShareUnavailable",
    "RpiBrazeSyncBrazeErrorsHigh",
    "RpiBrazeSyncBrazeRateLimited",
    "RpiBrazeSyncFileFailed",
    "RpiBrazeSyncOldestFileWaiting",
}


def test_every_alert_has_for_severity_summary_and_description() -> None:
    rules = alert_rules()
    assert {rule["alert"] for rule in rules} == EXPECTED_ALERTS
    for rule in rules:
        name = rule["alert"]
        assert re.fullmatch(r"\d+[smh]", str(rule.get("for", ""))), f"{name}: no `for:`"
        assert rule["labels"]["severity"] in ("critical", "warning"), name
        annotations = rule["annotations"]
        assert annotations["summary"].strip(), name
        assert len(annotations["description"].split()) >= 20, f"{name}: say what to check"


def test_down_alert_uses_the_documented_job_name() -> None:
    (down,) = [rule for rule in alert_rules() if rule["alert"] == "RpiBrazeSyncDown"]
    assert 'up{job="rpi-braze-sync"} == 0' in down["expr"]
    assert 'absent(up{job="rpi-braze-sync"})' in down["expr"]
    assert "job_name: rpi-braze-sync" in ALERTS.read_text()  # the assumption, stated


def test_unit_tests_make_every_alert_fire_and_not_fire() -> None:
    cases = yaml.safe_load(ALERT_TESTS.read_text())["tests"]
    fired: set[str] = set()
    silent: set[str] = set()
    for case in cases:
        for check in case["alert_rule_test"]:
            expected = check.get("exp_alerts") or []
            (fired if expected else silent).add(check["alertname"])
            for alert in expected:
                assert alert["exp_labels"]["severity"], check
                assert set(alert["exp_annotations"]) == {"summary", "description"}, check
    assert fired == EXPECTED_ALERTS, f"never fired: {EXPECTED_ALERTS - fired}"
    assert silent == EXPECTED_ALERTS, f"never checked silent: {EXPECTED_ALERTS - silent}"


# --- names against a real scrape --------------------------------------------------------------


def test_scrape_has_every_metric_of_metrics_py() -> None:
    """The fixture itself: every family the registry defines shows up with its series."""
    names = {base_name(name) for name in scrape()}
    defined = {
        family.name for family in Metrics().registry.collect() if family.name.startswith(PREFIX)
    }
    # Families are named without _total; samples have it.
    assert defined <= {name.removesuffix("_total") for name in names}
    assert len(defined) >= 20


@pytest.mark.parametrize("source", ["alerts", "dashboard"])
def test_every_referenced_metric_exists_in_a_real_scrape(source: str) -> None:
    exposed = scrape()
    exprs = sources()[source]
    referenced = {name for expr in exprs for name in METRIC_NAME.findall(expr)}
    assert len(referenced) >= (8 if source == "alerts" else 18), referenced  # the regex works
    # Names as queried: `rpi_braze_sync_rows_total`, `..._request_duration_seconds_bucket`.
    missing = sorted(referenced - set(exposed))
    known = sorted({base_name(name) for name in exposed})
    assert not missing, (
        f"{source} query metrics the daemon does not expose: {missing}; it has {known}"
    )


@pytest.mark.parametrize("source", ["alerts", "dashboard"])
def test_every_matched_or_grouped_label_exists(source: str) -> None:
    exposed = scrape()
    problems = []
    checked = 0
    for expr in sources()[source]:
        for metric, matchers in SELECTOR.findall(expr):
            for label, op, value in MATCHER.findall(matchers):
                checked += 1
                if label in TARGET_LABELS:
                    continue
                if label not in exposed.get(metric, set()):
                    problems.append(f"{metric} has no label {label!r}: {expr}")
                    continue
                key = base_name(metric).removeprefix(PREFIX).removesuffix("_total")
                if op in ("=", "=~") and "$" not in value and key in LABEL_VALUES:
                    for alternative in value.split("|"):
                        if alternative not in LABEL_VALUES[key]:
                            problems.append(f"{metric}: {label}={alternative!r} never set: {expr}")
        for labels, metric in GROUPING.findall(expr):
            for label in filter(None, (part.strip() for part in labels.split(","))):
                checked += 1
                if label not in exposed.get(metric, set()) | TARGET_LABELS:
                    problems.append(f"grouping by {label!r}, which {metric} lacks: {expr}")
    assert checked >= 10, "the selector regexes found nothing to check"
    assert not problems, "\n".join(problems)


# --- dashboard ---------------------------------------------------------------------------------


def test_dashboard_is_importable_json_with_a_datasource_variable() -> None:
    board = dashboard()
    assert board["uid"] == "rpi-braze-sync"
    assert 36 <= board["schemaVersion"] <= 41
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["DS_PROMETHEUS"]["type"] == "datasource"
    assert variables["DS_PROMETHEUS"]["query"] == "prometheus"
    assert [i["name"] for i in board["__inputs"]] == ["DS_PROMETHEUS"]
    ids = [panel["id"] for panel in panels()]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in panels():
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${DS_PROMETHEUS}", panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${DS_PROMETHEUS}", panel["title"]
            assert 'job=~"$job"' in target["expr"], f"{panel['title']}: ignores $job"


THEMES = [
    ("Rows sent / rejected per channel", ["rows_total"]),
    ("Fields dropped per channel", ["fields_dropped_total"]),
    ("Files finished by outcome", ["files_total"]),
    ("Requests by status code", ["requests_total"]),
    ("Request duration p50 / p95 / p99", ["request_duration_seconds_bucket"]),
    ("Retries by reason", ["retries_total"]),
    ("Rate-limit waits by source", ["rate_limit_waits_total"]),
    ("In-flight requests and concurrency limit", ["in_flight_requests", "concurrency_limit"]),
    ("Backlog", ["backlog_files", "backlog_rows"]),
    ("Current file progress", ["current_file_progress_ratio"]),
    ("Time since last success", ["last_success_timestamp_seconds"]),
    ("Braze auth failing", ["braze_auth_failing"]),
    ("Share available", ["share_available"]),
    ("Config reload status", ["config_last_reload_successful"]),
    ("Hook calls by outcome", ["hook_calls_total"]),
]


@pytest.mark.parametrize(("title", "metrics"), THEMES, ids=[title for title, _ in THEMES])
def test_dashboard_has_a_panel_per_theme(title: str, metrics: list[str]) -> None:
    by_title = {panel["title"]: panel for panel in panels()}
    assert title in by_title, f"no panel {title!r}; panels: {sorted(by_title)}"
    used = {name for t in by_title[title]["targets"] for name in METRIC_NAME.findall(t["expr"])}
    for metric in metrics:
        assert PREFIX + metric in used, f"{title!r} does not query {PREFIX + metric}"


def test_duration_panel_shows_p50_p95_p99() -> None:
    (panel,) = [p for p in panels() if p["title"] == "Request duration p50 / p95 / p99"]
    quantiles = {
        float(q)
        for t in panel["targets"]
        for q in re.findall(r"histogram_quantile\(([\d.]+),", t["expr"])
    }
    assert quantiles == {0.5, 0.95, 0.99}
    assert all("by (le)" in t["expr"] for t in panel["targets"] if "quantile" in t["expr"])
