"""The shipped systemd unit: systemd-analyze verify and security, and what it must declare.

systemd-analyze works offline (no running systemd needed). The unit is verified as a copy
whose ExecStart runs this venv's console script on the repository's config, so that the
check "is ExecStart executable" is real.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from rpi_braze_sync.errors import EXIT_CONFIG, EXIT_UNAVAILABLE, EXIT_USAGE

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "systemd" / "rpi-braze-sync.service"
CONFIG = REPO / "config" / "rpi-braze-sync.yaml"
SHIPPED_EXEC = "/opt/rpi-braze-sync/venv/bin/rpi-braze-sync"
SHIPPED_CONFIG = "/etc/rpi-braze-sync/rpi-braze-sync.yaml"
SHUTDOWN_GRACE_SECONDS = 20  # the daemon's default shutdown_grace_seconds

# Measured 1.2 with systemd 252 (Debian 12). What is left: the host's network (Braze is
# remote), AF_UNIX/AF_INET sockets, no IP allow list, no user namespace, the host's root,
# char-rtc read (from ProtectClock=), UMask=0027. A change that weakens the unit fails here.
MAX_EXPOSURE = 1.7

Unit = list[tuple[str, str, str]]  # (section, key, value) in file order


def parse_unit(text: str) -> Unit:
    """systemd's unit syntax: sections, repeated keys, `#`/`;` comments, `\\` continuations."""
    entries: Unit = []
    section = ""
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith(("#", ";")) or (not line and not pending):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        key, sep, value = line.partition("=")
        assert sep, f"not KEY=VALUE in [{section}]: {line!r}"
        entries.append((section, key.strip(), value.strip()))
    return entries


def values(unit: Unit, section: str, key: str) -> list[str]:
    """The assignments of a list setting still in force (an empty assignment resets it)."""
    found: list[str] = []
    for sec, k, v in unit:
        if (sec, k) == (section, key):
            found = [*found, v] if v else []
    return found


def words(unit: Unit, section: str, key: str) -> list[str]:
    return [word for value in values(unit, section, key) for word in shlex.split(value)]


def last(unit: Unit, section: str, key: str) -> str | None:
    """A single-valued setting: the last assignment wins."""
    found = [v for sec, k, v in unit if (sec, k) == (section, key)]
    return found[-1] if found else None


def seconds(span: str) -> float:
    """A systemd time span ("45", "45s", "1min 30s", "500ms") in seconds."""
    units = {"": 1, "s": 1, "sec": 1, "ms": 0.001, "m": 60, "min": 60, "h": 3600}
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", span)
    assert parts, f"not a time span: {span!r}"
    return sum(float(n) * units[u] for n, u in parts)


@pytest.fixture(scope="module")
def systemd_analyze() -> str:
    found = shutil.which("systemd-analyze") or (
        "/usr/bin/systemd-analyze" if os.access("/usr/bin/systemd-analyze", os.X_OK) else None
    )
    if found is None:
        message = "systemd-analyze not found: install Debian's `systemd` package"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found


def _unit_path(path: Path) -> str:
    text = str(path)
    return f'"{text}"' if re.search(r'[\s"\\]', text) else text


@pytest.fixture
def testable_unit(tmp_path: Path) -> Path:
    """The shipped unit, ExecStart pointed at this venv's console script and the repo config."""
    script = Path(sys.executable).parent / "rpi-braze-sync"
    assert script.is_file(), (
        f"{script} missing: install the project in this venv (pip install -e .)"
    )
    lines = []
    for line in UNIT.read_text(encoding="utf-8").splitlines():
        if line.startswith("ExecStart="):
            argv = shlex.split(line.removeprefix("ExecStart="))
            assert argv[0] == SHIPPED_EXEC, line
            assert argv[argv.index("--config") + 1] == SHIPPED_CONFIG, line
            argv[0] = str(script)
            argv[argv.index("--config") + 1] = str(CONFIG)
            line = "ExecStart=" + " ".join(_unit_path(Path(a)) if "/" in a else a for a in argv)
        lines.append(line)
    copy = tmp_path / UNIT.name
    copy.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return copy


def _run(*argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SYSTEMD_COLORS": "0", "SYSTEMD_PAGER": "", "SYSTEMD_LOG_COLOR": "0"}
    return subprocess.run(
        argv,
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        encoding="utf-8",
        errors="replace",
        timeout=60,
        check=False,
    )


def test_systemd_analyze_verify_prints_nothing(systemd_analyze: str, testable_unit: Path) -> None:
    result = _run(systemd_analyze, "verify", str(testable_unit), cwd=testable_unit.parent)
    printed = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert not printed, "systemd-analyze verify printed:\n" + "\n".join(printed)
    assert result.returncode == 0, f"systemd-analyze verify exited {result.returncode}"


def test_security_exposure_stays_low(systemd_analyze: str, testable_unit: Path) -> None:
    result = _run(
        systemd_analyze,
        "security",
        "--offline=yes",
        "--no-pager",
        str(testable_unit),
        cwd=testable_unit.parent,
    )
    print(result.stdout)
    print(result.stderr, file=sys.stderr, end="")
    assert result.returncode == 0, f"exited {result.returncode}:\n{result.stderr}"
    match = re.search(
        rf"Overall exposure level for {re.escape(UNIT.name)}: (\d+(?:\.\d+)?)", result.stdout
    )
    assert match, f"no overall exposure level in:\n{result.stdout}\n{result.stderr}"
    score = float(match.group(1))
    assert score <= MAX_EXPOSURE, f"exposure {score} > {MAX_EXPOSURE}: a protection was dropped"


SHIPPED = parse_unit(UNIT.read_text(encoding="utf-8"))
TRUE = {"yes", "true", "on", "1"}


CASES: list[tuple[str, Callable[[Unit], bool]]] = [
    ("Type=notify", lambda u: last(u, "Service", "Type") == "notify"),
    ("NotifyAccess=main", lambda u: last(u, "Service", "NotifyAccess") == "main"),
    (
        "WatchdogSec= set",
        lambda u: (v := last(u, "Service", "WatchdogSec")) is not None and seconds(v) > 0,
    ),
    (
        "ExecReload= sends SIGHUP to $MAINPID",
        lambda u: (
            (r := words(u, "Service", "ExecReload"))[:1] in (["/bin/kill"], ["/usr/bin/kill"])
            and bool({"-HUP", "-SIGHUP", "-1"} & set(r))
            and "$MAINPID" in r
        ),
    ),
    (
        "LoadCredential=braze-api-key:...",
        lambda u: any(
            v.startswith("braze-api-key:") for v in values(u, "Service", "LoadCredential")
        ),
    ),
    (
        "StateDirectory=rpi-braze-sync",
        lambda u: "rpi-braze-sync" in words(u, "Service", "StateDirectory"),
    ),
    ("Restart=on-failure", lambda u: last(u, "Service", "Restart") == "on-failure"),
    (
        f"RestartPreventExitStatus={EXIT_CONFIG} (configuration error)",
        lambda u: str(EXIT_CONFIG) in words(u, "Service", "RestartPreventExitStatus"),
    ),
    (
        f"RestartPreventExitStatus={EXIT_USAGE} (a wrong ExecStart= line)",
        lambda u: str(EXIT_USAGE) in words(u, "Service", "RestartPreventExitStatus"),
    ),
    (
        f"restarts on {EXIT_UNAVAILABLE} (the listen address was taken; it may be free again)",
        lambda u: str(EXIT_UNAVAILABLE) not in words(u, "Service", "RestartPreventExitStatus"),
    ),
    (
        f"TimeoutStopSec= longer than the {SHUTDOWN_GRACE_SECONDS} s shutdown grace",
        lambda u: (
            (v := last(u, "Service", "TimeoutStopSec")) is not None
            and seconds(v) > SHUTDOWN_GRACE_SECONDS
        ),
    ),
    ("After=remote-fs.target", lambda u: "remote-fs.target" in words(u, "Unit", "After")),
    ("Wants=remote-fs.target", lambda u: "remote-fs.target" in words(u, "Unit", "Wants")),
    (
        "no RequiresMountsFor= (it would stop the daemon when the share is unmounted)",
        lambda u: not any(k == "RequiresMountsFor" for _, k, _ in u),
    ),
    ("ProtectSystem=strict", lambda u: last(u, "Service", "ProtectSystem") == "strict"),
    (
        "no ReadWritePaths= by default (the share stays read-only; archiving is a drop-in)",
        lambda u: not values(u, "Service", "ReadWritePaths"),
    ),
    ("NoNewPrivileges=yes", lambda u: last(u, "Service", "NoNewPrivileges") in TRUE),
    ("PrivateTmp=yes", lambda u: last(u, "Service", "PrivateTmp") in TRUE),
]


@pytest.mark.parametrize(("what", "holds"), [pytest.param(w, h, id=w) for w, h in CASES])
def test_shipped_unit_declares(what: str, holds: Callable[[Unit], bool]) -> None:
    assert holds(SHIPPED), f"{UNIT.relative_to(REPO)} must have {what}"


def test_parse_unit_follows_systemd_syntax() -> None:
    unit = parse_unit(
        "[Unit]\nAfter=a.target\n# After=commented.target\nAfter=b.target \\\n  c.target\n"
        "[Service]\nCapabilityBoundingSet=CAP_X\nCapabilityBoundingSet=\n; x\nType = notify\n"
    )
    assert words(unit, "Unit", "After") == ["a.target", "b.target", "c.target"]
    assert values(unit, "Service", "CapabilityBoundingSet") == []
    assert last(unit, "Service", "Type") == "notify"
    assert seconds("1min 30s") == 90
