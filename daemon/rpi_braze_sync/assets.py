"""`init DIR`: the files the package ships for an operator, written out ready to edit: the
sample configuration and its JSON Schema, the systemd unit, the Prometheus alert rules (and
their promtool tests), the Grafana dashboard and the schema of the status page's JSON.

One source: the repository keeps them in config/ and systemd/; the package's shipped/ folder
holds links to them, which the wheel turns into copies.
"""

from __future__ import annotations

import argparse
import sys
from importlib.resources import files
from pathlib import Path

from .errors import CannotWriteError

SHIPPED = (
    "rpi-braze-sync.yaml",
    "rpi-braze-sync.schema.json",
    "rpi-braze-sync.service",
    "prometheus-alerts.yaml",
    "prometheus-alerts.test.yaml",
    "grafana-dashboard.json",
    "status.schema.json",  # GET /status.json's shape, for scripts that read it
)
UNIT = "rpi-braze-sync.service"
# What the shipped unit names; `init` writes the unit for where it is run and writes to.
UNIT_PROGRAM = "/opt/rpi-braze-sync/venv/bin/rpi-braze-sync"
UNIT_DIRECTORY = "/etc/rpi-braze-sync"


def shipped_text(name: str) -> str:
    return (files("rpi_braze_sync") / "shipped" / name).read_text(encoding="utf-8")


def running_program() -> str | None:
    """The console script running now (a venv's or pipx's), when it is one."""
    program = Path(sys.argv[0])
    return str(program.absolute()) if program.name == "rpi-braze-sync" else None


def unit_for(directory: Path, program: str | None) -> str:
    """The shipped unit, its paths pointed at `directory` and at `program`."""
    text = shipped_text(UNIT)
    if program is not None:
        text = text.replace(UNIT_PROGRAM, program)
    return text.replace(UNIT_DIRECTORY + "/", f"{directory}/")


def write_shipped(directory: Path, force: bool, program: str | None) -> list[Path]:
    """Every shipped file into `directory`; nothing is written if one exists (unless force)."""
    directory = directory.absolute()
    targets = [directory / name for name in SHIPPED]
    existing = [t for t in targets if t.exists()]
    if existing and not force:
        raise CannotWriteError(
            f"{', '.join(str(t) for t in existing)} exist(s): nothing written; --force overwrites"
        )
    try:
        directory.mkdir(parents=True, exist_ok=True)
        for target in targets:
            if target.name == UNIT:
                text = unit_for(directory, program)
            else:
                text = shipped_text(target.name)
            target.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise CannotWriteError(f"cannot write into {directory}: {exc.strerror}") from None
    return targets


def cmd_init(args: argparse.Namespace) -> int:
    directory: Path = args.directory.absolute()
    written = write_shipped(directory, args.force, running_program())
    for path in written:
        print(f"wrote {path}")
    config = directory / SHIPPED[0]
    print(
        f"next: edit {config}, then check it with"
        f" `rpi-braze-sync check --config {config}`; the unit {directory / UNIT} runs"
        f" {running_program() or UNIT_PROGRAM} with it (install it in /etc/systemd/system/)"
    )
    return 0
