"""The command line as an operator uses it: the console script, run as a process. preview,
check (with --online against a real fake Braze), --version, the exit statuses and the
messages a broken edit of the shipped configuration gets."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from pathlib import Path

from rpi_braze_sync import package_version
from rpi_braze_sync.errors import EXIT_CONFIG, EXIT_DATA, EXIT_NOINPUT, EXIT_USAGE
from tests.e2e.conftest import APPEND, SHIPPED_CONFIG, UPSERT, write_config
from tests.fakebraze import API_KEY, FakeBraze

SCRIPT = Path(sys.executable).parent / "rpi-braze-sync"


def env_without_key() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("BRAZE_API_KEY", "BRAZE_API_URL")}


def cli(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        env=env if env is not None else env_without_key(),
        check=False,
    )


def export(tmp: Path, channel: str, text: str) -> Path:
    folder = tmp / channel / "Spring Offer" / "wf-3"
    folder.mkdir(parents=True)
    path = folder / "RPI_Export_3.txt"
    path.write_text(text)
    return path


def test_version() -> None:
    result = cli("--version")
    assert result.returncode == 0
    assert result.stdout == f"rpi-braze-sync {package_version()}\n"
    assert package_version()[0].isdigit()  # read from the installed package's metadata


def test_usage_errors_exit_64() -> None:
    for args in (
        ["frobnicate"],
        ["preview"],
        ["preview", "--limit", "0", "x"],
        ["run", "--listen", "9464"],
    ):
        result = cli(*args)
        assert result.returncode == EXIT_USAGE, (args, result.stderr)
        assert "usage:" in result.stderr
        assert "Traceback" not in result.stderr
    assert "expects host:port" in cli("run", "--listen", "9464").stderr


def test_preview_prints_objects_and_reasons_without_network_or_state(tmp_path: Path) -> None:
    path = export(
        tmp_path,
        UPSERT,
        "external_id,dob,gender,Output Name,score\nu1,1990-01-31,male,Spring,7\n,1990-01-01,F,Spring,1\nu3,1990-13-01,F,Spring,\n",
    )
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    result = cli("preview", "--config", str(SHIPPED_CONFIG), str(path), cwd=workdir)
    assert result.returncode == 0, result.stderr
    objects = [json.loads(line) for line in result.stdout.splitlines()]
    assert objects == [
        {
            "external_id": "u1",
            "dob": "1990-01-31",
            "gender": "M",
            "rpi_audience_outputs": {"add": ["Spring"]},
            "rpi_offers": {"add": ["Spring Offer"]},
            "rpi_cdp_attributes": {"score": 7},
            "_merge_objects": True,
            "_update_existing_only": False,
        },
        {
            "external_id": "u3",
            "gender": "F",
            "rpi_audience_outputs": {"add": ["Spring"]},
            "rpi_offers": {"add": ["Spring Offer"]},
            "_update_existing_only": False,
        },
    ]
    assert "line 3: rejected: external_id is empty" in result.stderr
    assert "line 4: dropped dob='1990-13-01': not a real date" in result.stderr
    assert "2 objects, 1 rows rejected, 1 fields dropped" in result.stderr
    assert list(workdir.iterdir()) == []  # no state written


def test_preview_limit_reads_only_the_first_rows(tmp_path: Path) -> None:
    rows = "".join(f"u{i},A\n" for i in range(1, 2501))
    path = export(tmp_path, APPEND, "external_id,output_name\n" + rows)
    result = cli("preview", "--config", str(SHIPPED_CONFIG), "--limit", "1200", str(path))
    assert result.returncode == 0, result.stderr
    ids = [json.loads(line)["external_id"] for line in result.stdout.splitlines()]
    assert ids == [f"u{i}" for i in range(1, 1201)]
    assert "1200 objects, 0 rows rejected, 0 fields dropped (the first 1200 rows)" in result.stderr
    whole = cli("preview", "--config", str(SHIPPED_CONFIG), "--limit", "5000", str(path))
    assert "2500 objects, 0 rows rejected, 0 fields dropped\n" in whole.stderr


def test_preview_into_head_ends_quietly(tmp_path: Path) -> None:
    rows = "".join(f"u{i},A\n" for i in range(1, 50001))
    path = export(tmp_path, APPEND, "external_id,output_name\n" + rows)
    result = subprocess.run(
        f"'{SCRIPT}' preview --config '{SHIPPED_CONFIG}' '{path}' | head -n 2;"
        ' echo "status ${PIPESTATUS[0]}" >&2',
        shell=True,
        executable="/bin/bash",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert len(result.stdout.splitlines()) == 2
    assert "Traceback" not in result.stderr
    assert "BrokenPipe" not in result.stderr
    assert result.stderr.strip().splitlines() == ["status 141"]


def test_preview_explain_shows_rows_beside_objects_and_counts_reasons(tmp_path: Path) -> None:
    rows = "".join(f"u{i},{'bad' if i % 3 == 0 else '1990-01-01'},Spring\n" for i in range(1, 10))
    path = export(tmp_path, UPSERT, "external_id,dob,Output Name\n" + rows + ",1990-01-01,Spring\n")
    result = cli(
        "preview", "--config", str(SHIPPED_CONFIG), "--explain", "--sample", "2", str(path)
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert (
        "line 2:\n  external_id = 'u1'\n  dob         = '1990-01-01'\n  Output Name = 'Spring'\n  -> {"
        in out
    )
    assert "line 3:" in out
    assert "line 4:" not in out  # only the sample is shown
    assert "9 objects, 1 rows rejected, 3 fields dropped" in out
    assert "  rejected 1 x external_id is empty" in out
    assert "  dropped 3 x dob: not a yyyy-MM-dd date" in out


def test_preview_and_check_share_exit_statuses(tmp_path: Path) -> None:
    """64 usage (outside the layout), 65 data (unusable file), 66 missing, 78 config."""
    loose = tmp_path / "loose.csv"
    loose.write_text("external_id,output_name\nu1,A\n")
    bad_header = export(tmp_path, APPEND, "id,output_name\n1,A\n")
    broken = tmp_path / "broken.yaml"
    broken.write_text("channels: {}\n")
    cases = [
        ([str(loose)], EXIT_USAGE, "name one with --channel"),
        (["--channel", "Nope", str(loose)], EXIT_USAGE, "--channel 'Nope' is not one of"),
        ([str(bad_header)], EXIT_DATA, "the identifier column 'external_id' is missing"),
        ([str(tmp_path / "absent.csv"), "--channel", APPEND], EXIT_NOINPUT, "no such file"),
    ]
    for args, status, message in cases:
        for command in ("preview", "check"):
            result = cli(command, "--config", str(SHIPPED_CONFIG), *args)
            assert result.returncode == status, (command, args, result.stdout, result.stderr)
            assert message in result.stdout + result.stderr, (command, args)
            assert "Traceback" not in result.stderr
    for command in ("preview", "check"):
        result = cli(command, "--config", str(broken), str(loose))
        assert result.returncode == EXIT_CONFIG
    chosen = cli("preview", "--config", str(SHIPPED_CONFIG), "--channel", APPEND, str(loose))
    assert chosen.returncode == 0, chosen.stderr
    assert json.loads(chosen.stdout)["_update_existing_only"] is True


def test_check_validates_config_and_exports(tmp_path: Path) -> None:
    good = export(tmp_path, APPEND, "external_id,output_name\nu1,A\n,B\n")
    ok = cli("check", "--config", str(SHIPPED_CONFIG), "--dry-run", str(good))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "1 of the first 1000 rows would be rejected" in ok.stdout


def test_check_warns_about_a_missing_key_and_export_folder(tmp_path: Path) -> None:
    missing = tmp_path / "not-mounted"
    config = write_config(tmp_path / "c.yaml", {"watch": {"base_output_directory": str(missing)}})
    live = cli("check", "--config", str(config))
    assert live.returncode == 0, live.stdout + live.stderr
    assert "warning: no API key: $BRAZE_API_KEY is not set here" in live.stdout
    assert f"warning: watch.base_output_directory {missing} does not exist" in live.stdout
    dry = cli("check", "--config", str(config), "--dry-run")
    assert "API key" not in dry.stdout  # a dry run needs none
    missing.mkdir()
    with_key = cli(
        "check", "--config", str(config), env={**env_without_key(), "BRAZE_API_KEY": "k"}
    )
    assert "warning" not in with_key.stdout, with_key.stdout


async def run_cli(*args: str, env: dict[str, str]) -> tuple[int, str]:
    """The console script without blocking the loop that serves the fake Braze."""
    proc = await asyncio.create_subprocess_exec(
        str(SCRIPT), *args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    out, _ = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode()


async def test_check_online_tries_the_key_with_an_empty_request(
    tmp_path: Path, fake_braze: FakeBraze
) -> None:
    config = write_config(tmp_path / "c.yaml", {"braze": {"api_url": fake_braze.url}})
    config_arg = ("check", "--config", str(config), "--online")
    status, out = await run_cli(*config_arg, env={**env_without_key(), "BRAZE_API_KEY": API_KEY})
    assert status == 0, out
    assert f"Braze at {fake_braze.url}/users/track accepts the API key (HTTP 400" in out
    assert fake_braze.statuses == [400]
    assert fake_braze.objects() == []  # nothing was sent to any profile
    status, out = await run_cli(*config_arg, env={**env_without_key(), "BRAZE_API_KEY": "wrong"})
    assert status == 77, out
    assert "Braze refuses the API key (HTTP 401" in out
    assert "wrong" not in out  # the key itself is never printed
    status, out = await run_cli(*config_arg, env=env_without_key())
    assert status == EXIT_CONFIG
    assert "--online: no API key to try" in out
    unreachable = write_config(tmp_path / "u.yaml", {"braze": {"api_url": "http://127.0.0.1:9"}})
    status, out = await run_cli(
        "check", "--config", str(unreachable), "--online",
        env={**env_without_key(), "BRAZE_API_KEY": API_KEY},
    )  # fmt: skip
    assert status == 69, out
    assert "cannot reach Braze at http://127.0.0.1:9/users/track" in out


def test_wrong_types_are_said_in_yaml_terms(tmp_path: Path) -> None:
    text = SHIPPED_CONFIG.read_text()
    text = text.replace("  settle_seconds: 10", "  settle_seconds: soon\n  settle_minutes: 1")
    text = text.replace("    mode: append", "    mode: apend")
    text = text.replace("  listen: 127.0.0.1:9464", "  listen: 9464")
    config = tmp_path / "broken.yaml"
    config.write_text(text)
    lines = text.splitlines()

    def line_of(needle: str) -> int:
        return next(i for i, line in enumerate(lines, 1) if needle in line)

    result = cli("check", "--config", str(config))
    assert result.returncode == EXIT_CONFIG
    problems = result.stderr.splitlines()
    assert (
        f"configuration error: {config}:{line_of('settle_seconds: soon')}:19: watch.settle_seconds: expects a number (e.g. 10 or 2.5); got the text 'soon'"
        in problems
    )
    assert (
        f"configuration error: {config}:{line_of('settle_minutes')}:3: watch.settle_minutes: unknown key (allowed: base_output_directory, settle_seconds, observer, backfill, poll_interval_seconds, rescan_interval_seconds, path_pattern, archive_directory, file_attempts, file_retry_seconds)"
        in problems
    )
    assert (
        f"configuration error: {config}:{line_of('mode: apend')}:11: channels.'Braze Append'.mode: 'apend' is not one of upsert, append"
        in problems
    )
    assert (
        f"configuration error: {config}:{line_of('listen: 9464')}:11: http.listen: expects host:port, e.g. 127.0.0.1:9464 or 0.0.0.0:9464; got the number 9464"
        in problems
    )


def test_a_yaml_slip_in_the_shipped_file_points_at_the_edited_line(tmp_path: Path) -> None:
    shipped = SHIPPED_CONFIG.read_text()
    lines = shipped.splitlines()
    edited = next(i for i, line in enumerate(lines, 1) if line == "  settle_seconds: 10")
    slips = {
        "missing colon": ("  settle_seconds 10", "a key without ':'"),
        "indented too far": ("    settle_seconds: 10", "indented differently"),
        "indented too little": (" settle_seconds: 10", "indented differently"),
        "a tab": ("\tsettle_seconds: 10", "YAML indents with spaces only"),
        "unclosed list": ("  settle_seconds: [10", "expected ',' or ']'"),
    }
    for name, (line, words) in slips.items():
        config = tmp_path / f"{name}.yaml"
        config.write_text(shipped.replace("  settle_seconds: 10", line, 1))
        result = cli("check", "--config", str(config))
        assert result.returncode == EXIT_CONFIG, name
        (problem,) = result.stderr.splitlines()
        assert problem.startswith(f"configuration error: {config}:{edited}:"), (name, problem)
        assert words in problem, (name, problem)


def test_help_and_readme_list_the_same_exit_statuses() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    table = readme[readme.index("### Exit statuses") :]
    documented = re.findall(
        r"^\| (\d+) \|", table[: table.index("\n\n", table.index("| status"))], re.M
    )
    shown = re.findall(r"^  (\d+) ", cli("--help").stdout, re.M)
    assert documented == shown
    assert {"0", "64", "65", "66", "69", "73", "74", "77", "78"} <= set(shown)


def test_preview_and_check_of_what_is_not_a_regular_file_say_what_it_is(tmp_path: Path) -> None:
    """A FIFO (never opened: it would block), a folder named like an export, a device: each
    named for what it is, not "no such file"."""
    folder = export(tmp_path, UPSERT, "external_id\nu1\n").parent
    os.mkfifo(folder / "fifo.txt")
    (folder / "dir.txt").mkdir()
    for path, kind in ((folder / "fifo.txt", "fifo"), (folder / "dir.txt", "directory")):
        for command in ("preview", "check"):
            result = cli(command, "--config", str(SHIPPED_CONFIG), str(path))
            assert result.returncode == EXIT_DATA, (command, result.stderr)
            said = result.stdout + result.stderr  # (check reports files on stdout)
            assert f"{path}: a {kind}, not a regular file: not read" in said
    device = cli("preview", "--config", str(SHIPPED_CONFIG), "--channel", UPSERT, "/dev/null")
    assert device.returncode == EXIT_DATA
    assert "/dev/null: a device, not a regular file" in device.stderr


def test_preview_and_check_reject_a_quote_left_open_at_the_end(tmp_path: Path) -> None:
    path = export(tmp_path, UPSERT, 'external_id,first_name\nu1,Ann\nu2,"cut')
    preview = cli("preview", "--config", str(SHIPPED_CONFIG), str(path))
    assert preview.returncode == 0, preview.stderr
    assert [json.loads(line)["external_id"] for line in preview.stdout.splitlines()] == ["u1"]
    assert "line 3: rejected: line 3: quoted field not closed before end of file" in (
        preview.stderr
    )
    check = cli("check", "--config", str(SHIPPED_CONFIG), "--dry-run", str(path))
    assert "1 of the first 1000 rows would be rejected" in check.stdout, check.stderr
