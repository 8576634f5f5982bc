"""Installing as an operator would: `make run` needs only the runtime, the wheel carries the
operator's files, `pipx install` of the wheel works, `init DIR` writes them out, and the
shell completion scripts work in real shells.

pipx comes with the test tools; zsh is Debian's (.ci/run installs it). Under $CI, a missing
one fails these tests instead of skipping them.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from rpi_braze_sync import package_version
from rpi_braze_sync.assets import SHIPPED, UNIT

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(sys.executable).parent / "rpi-braze-sync"
SOURCES = {name: ROOT / ("systemd" if name == UNIT else "config") / name for name in SHIPPED}


def need(program: str, package: str) -> str:
    found = shutil.which(program) or shutil.which(program, path=str(SCRIPT.parent))
    if found is None:
        message = f"{program} not found: install {package}"
        if os.environ.get("CI"):
            pytest.fail(f"{message}; $CI is set, so this cannot be skipped", pytrace=False)
        pytest.skip(message)
    return found


def run(*args: str | Path, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # type: ignore[call-overload, no-any-return]
        [str(a) for a in args], capture_output=True, text=True, timeout=300, check=False, **kwargs
    )


# --- one source for the operator's files ---------------------------------------------------


def test_the_packages_files_are_the_repositorys() -> None:
    shipped = ROOT / "daemon" / "rpi_braze_sync" / "shipped"
    assert sorted(p.name for p in shipped.iterdir()) == sorted(SHIPPED)
    for name, source in SOURCES.items():
        assert (shipped / name).read_bytes() == source.read_bytes(), name
        assert (shipped / name).resolve() == source.resolve(), f"{name}: a link, not a copy"
    config_files = {p.name for p in (ROOT / "config").iterdir()}
    assert config_files <= set(SHIPPED)  # a new file in config/ must ship too


def check_init(program: Path | str, target: Path) -> None:
    result = run(program, "init", target)
    assert result.returncode == 0, result.stdout + result.stderr
    for name, source in SOURCES.items():
        written = (target / name).read_text()
        if name != UNIT:
            assert written == source.read_text(), name
    unit = (target / UNIT).read_text()
    assert f"ExecStart={program} run --config {target}/rpi-braze-sync.yaml\n" in unit
    assert f"LoadCredential=braze-api-key:{target}/braze-api-key\n" in unit
    # No path of the shipped unit is left (a path starting there, not one inside `target`).
    assert not re.search(r"(?<![\w.])/(etc|opt)/rpi-braze-sync", unit.replace(str(target), ""))
    # Its comments and every other line are the shipped unit's.
    shipped = SOURCES[UNIT].read_text().splitlines()
    assert len(unit.splitlines()) == len(shipped)


def test_init_writes_the_files_and_refuses_to_overwrite(tmp_path: Path) -> None:
    target = tmp_path / "etc" / "rpi-braze-sync"
    check_init(SCRIPT, target)
    config = target / "rpi-braze-sync.yaml"
    config.write_text(config.read_text().replace("settle_seconds: 10", "settle_seconds: 5"))
    again = run(SCRIPT, "init", target)
    assert again.returncode == 73
    assert "exist(s): nothing written; --force overwrites" in again.stderr
    assert "settle_seconds: 5" in config.read_text()  # the edit is kept
    forced = run(SCRIPT, "init", target, "--force")
    assert forced.returncode == 0
    assert "settle_seconds: 10" in config.read_text()
    checked = run(SCRIPT, "check", "--config", config, "--dry-run")
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_make_run_installs_the_runtime_and_make_test_the_tools(tmp_path: Path) -> None:
    venv = f"VENV={tmp_path / 'venv'}"
    run_steps = run("make", "-n", "-C", ROOT, "run", venv).stdout
    test_steps = run("make", "-n", "-C", ROOT, "test", venv).stdout
    assert re.search(r"pip install --quiet -e \.$", run_steps, re.M), run_steps
    assert "[test]" not in run_steps
    assert "pip install --quiet -e '.[test]'" in test_steps


def test_pipx_installs_the_wheel(tmp_path: Path) -> None:
    pipx = need("pipx", "the test tools (pip install -e '.[test]')")
    source = tmp_path / "source"  # a build writes build/ beside its sources: not in the repo
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(ROOT / name, source / name)
    for folder in ("daemon", "config", "systemd"):
        skip = shutil.ignore_patterns("__pycache__", "*.egg-info")
        shutil.copytree(ROOT / folder, source / folder, symlinks=True, ignore=skip)
    dist = tmp_path / "dist"
    built = run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", dist, source)
    assert built.returncode == 0, built.stdout + built.stderr
    (wheel,) = dist.glob("rpi_braze_sync-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        for name, source in SOURCES.items():
            assert archive.read(f"rpi_braze_sync/shipped/{name}") == source.read_bytes()
        for page in ("status.html", "status.css", "status.js"):  # the status page's own files
            shipped = ROOT / "daemon" / "rpi_braze_sync" / "web" / page
            assert archive.read(f"rpi_braze_sync/web/{page}") == shipped.read_bytes()
    assert f"rpi_braze_sync-{package_version()}.dist-info/METADATA" in names
    env = {
        **os.environ,
        "PIPX_HOME": str(tmp_path / "pipx"),
        "PIPX_BIN_DIR": str(tmp_path / "bin"),
        "PIPX_MAN_DIR": str(tmp_path / "man"),
    }
    # --no-compile: pip's bytecode pass over every dependency is half the install's time, and
    # its failures are only warnings; the program still compiles what it imports.
    installed = run(pipx, "install", "--pip-args=--no-compile", wheel, env=env)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    program = tmp_path / "bin" / "rpi-braze-sync"
    version = run(program, "--version")
    assert version.stdout == f"rpi-braze-sync {package_version()}\n", version.stderr
    check_init(program, tmp_path / "etc")


# --- shell completion ---------------------------------------------------------------------


def complete_in_bash(script: str, words: list[str], cwd: Path) -> list[str]:
    """What bash offers for the last word: the generated function run by a real bash."""
    quoted = " ".join("'" + w.replace("'", "'\\''") + "'" for w in words)
    program = (
        f"{script}\nCOMP_WORDS=({quoted}); COMP_CWORD={len(words) - 1}\n"
        f"_rpi_braze_sync\nprintf '%s\\n' \"${{COMPREPLY[@]}}\"\n"
    )
    result = run(need("bash", "bash"), "--norc", "-c", program, cwd=cwd)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    return [line for line in result.stdout.splitlines() if line]


def test_bash_completion_completes_commands_options_values_and_files(tmp_path: Path) -> None:
    script = run(SCRIPT, "completion", "bash").stdout
    (tmp_path / "my export.csv").write_text("")
    (tmp_path / "state dir").mkdir()
    cases = [
        (["rpi-braze-sync", "st"], ["status"]),
        (["rpi-braze-sync", "--v"], ["--version"]),
        (["rpi-braze-sync", "status", "--st"], ["--state", "--state-directory"]),
        (["rpi-braze-sync", "status", "--state", "f"], ["failed"]),
        (["rpi-braze-sync", "run", "--log-format", ""], ["text", "json"]),
        (["rpi-braze-sync", "preview", "--config", "x", "my"], ["my export.csv"]),
        (["rpi-braze-sync", "status", "--state-directory", "st"], ["state dir"]),
        (["rpi-braze-sync", "completion", "z"], ["zsh"]),
        (["rpi-braze-sync", "check", "--"], None),
    ]
    for words, expected in cases:
        offered = complete_in_bash(script, words, tmp_path)
        if expected is None:  # every check option, from the parser
            assert {"--online", "--dry-run", "--sample-rows", "--channel"} <= set(offered)
        else:
            assert offered == expected, (words, offered)


def test_zsh_completion_loads_and_registers(tmp_path: Path) -> None:
    zsh = need("zsh", "Debian's zsh package")
    script = tmp_path / "_rpi-braze-sync"
    script.write_text(run(SCRIPT, "completion", "zsh").stdout)
    assert run(zsh, "-n", script).returncode == 0
    loaded = run(
        zsh, "-f", "-c",
        f"autoload -U compinit; compinit -u -D; source {script};"
        " print -r -- ${_comps[rpi-braze-sync]}",
    )  # fmt: skip
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.strip() == "_rpi_braze_sync"
    text = script.read_text()
    for command in ("run", "preview", "check", "status", "retry", "schema", "init"):
        assert f"'{command}:" in text
    assert "'*--state[only files in this state (repeatable)]:value:(preexisting seen" in text
    for option in ("--listen", "--online", "--limit"):
        assert f"'{option}[" in text
