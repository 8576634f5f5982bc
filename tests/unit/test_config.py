"""Loading the YAML configuration: validation messages with file:line, env overrides, the key."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel

from rpi_braze_sync.config import load_config, parse_settings
from rpi_braze_sync.errors import ConfigError
from rpi_braze_sync.secret import Secret
from rpi_braze_sync.settings import FormatSettings, Settings, ValueSpec, WatchSettings

SHIPPED = Path(__file__).resolve().parents[2] / "config" / "rpi-braze-sync.yaml"
KEY = "braze-key-0123456789abcdef"
CHANNEL = """channels:
  Braze Append:
    mode: append
    mapping:
      identifier:
        external_id: {column: external_id}
"""
# What `path:` may name: the default path pattern's parts, then what every file has.
PATHS = "channel, offer, workflow_id, file_name, rpi_channel_execution_id"
BRAZE_KEYS = (
    "api_url, api_key_env, api_key_file, dry_run, batch_size, request_timeout_seconds, "
    "rate_limit, retry_max_delay_seconds, auth_retry_seconds, append_delay_seconds, max_in_flight"
)


def at(text: str, needle: str, offset: int = 0) -> str:
    """'cfg.yaml:LINE:COL' of the first `needle` in `text` (plus `offset` characters)."""
    index = text.index(needle) + offset
    line = text.count("\n", 0, index) + 1
    column = index - (text.rfind("\n", 0, index) + 1) + 1
    return f"cfg.yaml:{line}:{column}"


def problems(text: str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_settings(text, "cfg.yaml", env or {})
    assert str(info.value) == "\n".join(info.value.problems)
    return info.value.problems


def write_config(tmp_path: Path, braze: str = "", extra: str = "") -> Path:
    path = tmp_path / "cfg.yaml"
    path.write_text(f"braze:\n  api_url: https://rest.fra-01.braze.eu\n{braze}{extra}{CHANNEL}")
    return path


def test_shipped_config_loads() -> None:
    config = load_config(SHIPPED, env={}, dry_run=True)
    assert config.dry_run is True
    assert config.api_key is None
    assert config.settings.braze.api_url == "https://rest.iad-01.braze.com"
    assert config.settings.braze.batch_size == 75
    assert config.settings.braze.rate_limit.requests == 2400
    assert config.settings.watch.settle_seconds == 10
    assert config.settings.http.listen == "127.0.0.1:9464"
    assert list(config.channels) == ["Braze Onboarding and Upsert", "Braze Append"]
    assert [c.plan.mapping.mode for c in config.channels.values()] == ["upsert", "append"]
    assert config.base_output_directory == Path("var/exports").absolute()
    assert config.state_directory == Path("var/state").absolute()


def test_minimal_config_takes_the_defaults() -> None:
    settings = parse_settings(CHANNEL, "cfg.yaml", {})
    assert settings.braze.api_url == "https://rest.iad-01.braze.com"
    assert settings.braze.api_key_env == "BRAZE_API_KEY"
    assert settings.braze.dry_run is False
    assert settings.watch.path_pattern == "{channel}/{offer}/{workflow_id}"
    assert settings.channels["Braze Append"].format.delimiter == "auto"
    assert settings.state_directory is None


def allowed(model: type[BaseModel]) -> str:
    return f"unknown key (allowed: {', '.join(model.model_fields)})"


CH = "channels.'Braze Append'"
ONE_PROBLEM = [
    ("braze:\n  api_urll: https://x\n" + CHANNEL, "api_urll",
     f"braze.api_urll: unknown key (allowed: {BRAZE_KEYS})"),
    ("brazee: {}\n" + CHANNEL, "brazee", "brazee: " + allowed(Settings)),
    ("braze:\n  rate_limit:\n    request: 10\n" + CHANNEL, "request",
     "braze.rate_limit.request: unknown key (allowed: requests, seconds)"),
    (CHANNEL.replace("{column: external_id}", "{colum: external_id}"), "colum:",
     f"{CH}.mapping.identifier.external_id.colum: " + allowed(ValueSpec)),
    (CHANNEL + "      attributes:\n        dob: {column: dob, typ: date}\n", "typ:",
     f"{CH}.mapping.attributes.dob.typ: " + allowed(ValueSpec)),
    (CHANNEL.replace("    mapping:", "    format: {delimitr: ';'}\n    mapping:"), "delimitr",
     f"{CH}.format.delimitr: " + allowed(FormatSettings)),
    ("braze:\n  batch_size: lots\n" + CHANNEL, "lots",
     "braze.batch_size: expects a whole number; got the text 'lots'"),
    ("braze:\n  batch_size: 100\n" + CHANNEL, "100",
     "braze.batch_size: must be at most 75; got 100"),
    ("braze:\n  dry_run: maybe\n" + CHANNEL, "maybe",
     "braze.dry_run: expects true or false; got the text 'maybe'"),
    ("braze:\n  api_url: rest.braze.com\n" + CHANNEL, "rest.braze.com",
     "braze.api_url: 'rest.braze.com' is not an http(s) URL"),
    (CHANNEL.replace("mode: append", "mode: apend"), "apend",
     f"{CH}.mode: 'apend' is not one of upsert, append"),
    (CHANNEL.replace("    mode: append\n", ""), "Braze Append", f"{CH}.mode: required key is missing"),
    ("watch:\n  observer: sometimes\n" + CHANNEL, "sometimes",
     "watch.observer: 'sometimes' is not one of auto, native, polling"),
    ("watch:\n  path_pattern: '{offer}/{workflow_id}'\n" + CHANNEL, "'{offer}",
     "watch.path_pattern: the pattern must contain a {channel} part"),
    ("http:\n  listen: localhost\n" + CHANNEL, "localhost", "http.listen: expects host:port, e.g. 127.0.0.1:9464 or 0.0.0.0:9464; got 'localhost'"),
    ("http:\n  listen: 9464\n" + CHANNEL, "9464",
     "http.listen: expects host:port, e.g. 127.0.0.1:9464 or 0.0.0.0:9464; got the number 9464"),
    ("braze:\n  rate_limit: 2400\n" + CHANNEL, "2400",
     "braze.rate_limit: expects a mapping (key: value lines, indented below the key); got the number 2400"),
    ("braze: {}\n", "braze", "channels: required key is missing"),
    ("channels: {}\n", "{}", "channels: needs at least 1 entry"),
    (CHANNEL + "      attributes:\n        src: {path: workflow}\n", "workflow",
     f"{CH}.mapping.attributes.src.path: 'workflow' is not one of {PATHS}"),
    (CHANNEL + "      attributes:\n        g: {value: q, type: gender}\n", "q,",
     f"{CH}.mapping.attributes.g.value: 'q' is not a gender (M, F, O, N, P, male, female, other)"),
    (CHANNEL.replace("{column: external_id}", "{path: offer}"), "{path: offer}",
     f"{CH}.mapping.identifier.external_id: the identifier must come from a column"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "needle", "message"), ONE_PROBLEM)
def test_one_problem(text: str, needle: str, message: str) -> None:
    assert problems(text) == [f"{at(text, needle)}: {message}"]


def test_mapping_error_in_a_list_item_points_at_the_item() -> None:
    text = CHANNEL + (
        "      arrays:\n        offers:\n          add:\n"
        "            - {path: offer}\n            - {path: campaign}\n"
    )
    assert problems(text) == [
        f"{at(text, 'campaign')}: channels.'Braze Append'.mapping.arrays.offers.add[1].path: "
        f"'campaign' is not one of {PATHS}"
    ]


def test_every_problem_is_reported_at_once() -> None:
    text = "braze:\n  batch_size: lots\n  dry_run: maybe\nwatch:\n  settle: 3\n" + CHANNEL.replace(
        "mode: append", "mode: apend"
    )
    assert sorted(problems(text)) == sorted(
        [
            f"{at(text, 'lots')}: braze.batch_size: expects a whole number; got the text 'lots'",
            f"{at(text, 'maybe')}: braze.dry_run: expects true or false; got the text 'maybe'",
            f"{at(text, 'settle')}: watch.settle: " + allowed(WatchSettings),
            f"{at(text, 'apend')}: channels.'Braze Append'.mode: 'apend' is not one of upsert, "
            "append",
        ]
    )


@pytest.mark.parametrize(
    ("text", "needle", "offset", "message"),
    [
        ("braze:\n  dry_run: true\n   batch_size: 5\n", "batch_size", 10,
         "a ':' where no value can start: a key indented under a value, or text with ': ' that"
         " needs quotes (YAML: mapping values are not allowed here)"),
        # The unclosed '[' is the slip, though the parser notices it three lines later.
        ("braze:\n  api_url: [\n" + CHANNEL, "[", 0,
         "expected ',' or ']', but got ':'; noticed at line 4"),
        ("braze:\n\tdry_run: true\n", "\t", 0,
         "a tab: YAML indents with spaces only (YAML: found character '\\t' that cannot start any token)"),
    ],
)  # fmt: skip
def test_broken_yaml(text: str, needle: str, offset: int, message: str) -> None:
    assert problems(text) == [f"{at(text, needle, offset)}: invalid YAML: {message}"]


@pytest.mark.parametrize("text", ["- a\n- b\n", "just text\n"])
def test_top_level_must_be_a_mapping(text: str) -> None:
    assert problems(text) == ["cfg.yaml:1:1: the top level must be a mapping of keys"]


DUPLICATE = "braze:\n  api_url: https://a.example\n  api_url: https://b.example\n" + CHANNEL


def test_duplicate_key_is_reported() -> None:
    (problem,) = problems(DUPLICATE)
    line_col = at(DUPLICATE, "api_url: https://b").removeprefix("cfg.yaml")
    assert problem.endswith(
        f"{line_col}: braze.api_url: key appears twice (YAML would keep only the last)"
    )


def test_duplicate_key_names_the_file() -> None:
    assert problems(DUPLICATE) == [
        f"{at(DUPLICATE, 'api_url: https://b')}: braze.api_url: "
        "key appears twice (YAML would keep only the last)"
    ]


def test_duplicate_key_in_a_loaded_file_names_that_file(tmp_path: Path) -> None:
    path = tmp_path / "cfg.yaml"
    path.write_text(DUPLICATE)
    with pytest.raises(ConfigError) as info:
        load_config(path, env={}, dry_run=True)
    line_col = at(DUPLICATE, "api_url: https://b").removeprefix("cfg.yaml")
    assert info.value.problems == [
        f"{path}{line_col}: braze.api_url: key appears twice (YAML would keep only the last)"
    ]


@pytest.mark.parametrize(
    ("env", "api_url", "base"),
    [
        ({}, "https://rest.iad-01.braze.com", "./var/exports"),
        ({"BRAZE_API_URL": "", "BASE_OUTPUT_DIRECTORY": ""}, "https://rest.iad-01.braze.com",
         "./var/exports"),
        ({"BRAZE_API_URL": "https://rest.fra-01.braze.eu/", "BASE_OUTPUT_DIRECTORY": "/srv/rpi"},
         "https://rest.fra-01.braze.eu", "/srv/rpi"),
    ],
)  # fmt: skip
def test_env_overrides_the_yaml(env: dict[str, str], api_url: str, base: str) -> None:
    text = "braze:\n  api_url: https://rest.iad-01.braze.com\nwatch:\n  backfill: true\n" + CHANNEL
    settings = parse_settings(text, "cfg.yaml", env)
    assert (settings.braze.api_url, settings.watch.base_output_directory) == (api_url, base)


def test_bad_env_override_names_the_variable() -> None:
    text = "braze:\n  api_url: https://rest.iad-01.braze.com\n" + CHANNEL
    assert problems(text, {"BRAZE_API_URL": "nope"}) == [
        f"{at(text, 'https://rest')}: braze.api_url (from $BRAZE_API_URL): 'nope' is not an http(s) URL"
    ]


def test_load_config_applies_env_overrides() -> None:
    env = {"BRAZE_API_URL": "https://rest.fra-01.braze.eu", "BASE_OUTPUT_DIRECTORY": "/srv/rpi"}
    config = load_config(SHIPPED, env=env, dry_run=True)
    assert config.settings.braze.api_url == "https://rest.fra-01.braze.eu"
    assert config.base_output_directory == Path("/srv/rpi")


NO_KEY = ": braze: no API key: set ${}, or braze.api_key_file, or run with braze.dry_run: true"


MY_KEY = "  api_key_env: MY_BRAZE_KEY\n"


@pytest.mark.parametrize(
    ("key_env", "env"),
    [("", {"BRAZE_API_KEY": f" {KEY}\n"}), (MY_KEY, {"MY_BRAZE_KEY": KEY, "BRAZE_API_KEY": "x"})],
)
def test_live_run_key_from_env(tmp_path: Path, key_env: str, env: dict[str, str]) -> None:
    config = load_config(write_config(tmp_path, key_env), env=env)
    assert config.dry_run is False
    assert config.api_key is not None
    assert config.api_key.reveal() == KEY


@pytest.mark.parametrize(
    ("key_env", "env", "variable"),
    [
        ("", {"OTHER": KEY}, "BRAZE_API_KEY"),
        ("", {"BRAZE_API_KEY": "  "}, "BRAZE_API_KEY"),
        (MY_KEY, {"BRAZE_API_KEY": KEY}, "MY_BRAZE_KEY"),
    ],
)
def test_live_run_without_a_key_is_refused(
    tmp_path: Path, key_env: str, env: dict[str, str], variable: str
) -> None:
    path = write_config(tmp_path, key_env)
    with pytest.raises(ConfigError) as info:
        load_config(path, env=env)
    assert info.value.problems == [f"{path}{NO_KEY.format(variable)}"]


def test_shipped_config_live_run_needs_a_key() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(SHIPPED, env={"OTHER": KEY}, dry_run=False)
    assert info.value.problems == [f"{SHIPPED}{NO_KEY.format('BRAZE_API_KEY')}"]


@pytest.mark.parametrize("relative", [True, False])
def test_key_file_wins_over_env(tmp_path: Path, relative: bool) -> None:
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "braze-api-key").write_text(f"{KEY}\n", encoding="utf-8")
    name = "braze-api-key" if relative else str(credentials / "braze-api-key")
    path = write_config(tmp_path, f"  api_key_file: {name}\n")
    env = {"BRAZE_API_KEY": "env-key", "CREDENTIALS_DIRECTORY": str(credentials)}
    config = load_config(path, env=env if relative else {"BRAZE_API_KEY": "env-key"})
    assert config.api_key is not None
    assert config.api_key.reveal() == KEY


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("missing", None, "cannot read '{file}': No such file or directory"),
        ("folder", "<dir>", "cannot read '{file}': Is a directory"),
        ("empty", "  \n", "'{file}' is empty"),
        ("latin1", b"cl\xe9", "cannot read '{file}': not UTF-8 text"),
    ],
)
def test_unusable_key_file(
    tmp_path: Path, name: str, content: str | bytes | None, reason: str
) -> None:
    key_file = tmp_path / name
    if content == "<dir>":
        key_file.mkdir()
    elif isinstance(content, bytes):
        key_file.write_bytes(content)
    elif content is not None:
        key_file.write_text(content, encoding="utf-8")
    path = write_config(tmp_path, f"  api_key_file: {name}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, env={"BRAZE_API_KEY": KEY, "CREDENTIALS_DIRECTORY": str(tmp_path)})
    assert info.value.problems == [f"{path}: braze.api_key_file: " + reason.format(file=key_file)]


def test_relative_key_file_needs_credentials_directory(tmp_path: Path) -> None:
    path = write_config(tmp_path, "  api_key_file: braze-api-key\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, env={"BRAZE_API_KEY": KEY})
    assert info.value.problems == [
        f"{path}: braze.api_key_file: 'braze-api-key' is relative "
        "and $CREDENTIALS_DIRECTORY is not set"
    ]


def test_secret_never_shows_the_key(tmp_path: Path) -> None:
    secret = Secret(KEY)
    shown = [repr(secret), str(secret), f"{secret}", f"{secret!r}", "%s %r" % (secret, secret)]  # noqa: UP031
    assert shown == ["Secret('********')"] * 4 + ["Secret('********') Secret('********')"]
    config = load_config(write_config(tmp_path), env={"BRAZE_API_KEY": KEY})
    assert KEY not in repr(config)
    assert KEY not in str(config)
    assert config.api_key is not None
    assert config.api_key.reveal() == KEY


@pytest.mark.parametrize(
    ("yaml_value", "argument", "env", "expected"),
    [
        (None, None, {}, Path("var/state").absolute()),
        (None, None, {"STATE_DIRECTORY": "/var/lib/rpi-braze-sync"}, Path("/var/lib/rpi-braze-sync")),
        ("/srv/state", None, {"STATE_DIRECTORY": "/var/lib/x"}, Path("/srv/state")),
        ("/srv/state", "/opt/state", {"STATE_DIRECTORY": "/var/lib/x"}, Path("/opt/state")),
    ],
)  # fmt: skip
def test_state_directory(
    tmp_path: Path,
    yaml_value: str | None,
    argument: str | None,
    env: dict[str, str],
    expected: Path,
) -> None:
    extra = f"state_directory: {yaml_value}\n" if yaml_value else ""
    path = write_config(tmp_path, extra=extra)
    config = load_config(path, env=env, dry_run=True, state_directory=argument)
    assert config.state_directory == expected


def test_mapping_compile_error_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "cfg.yaml"
    text = CHANNEL + "      attributes:\n        src: {path: workflow}\n"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path, env={}, dry_run=True)
    assert info.value.problems == [
        f"{path}{at(text, 'workflow}').removeprefix('cfg.yaml')}: channels.'Braze Append'.mapping"
        f".attributes.src.path: 'workflow' is not one of {PATHS}"
    ]


def test_unreadable_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "nope.yaml", env={})
    assert info.value.problems == [
        f"{tmp_path / 'nope.yaml'}: cannot read the configuration: No such file or directory"
    ]


@pytest.mark.parametrize(
    ("text", "in_use"),
    [
        ("", "text"),
        ("log_format: json\n", "json"),  # the older key keeps working
        ("logging:\n  format: json\n", "json"),
        ("log_format: json\nlogging:\n  format: json\n", "json"),
    ],
)
def test_log_format_from_either_key(text: str, in_use: str) -> None:
    settings = parse_settings(text + CHANNEL, "cfg.yaml", {})
    assert settings.log_format_in_use == in_use
    assert settings.logging.progress_seconds == 15


def test_log_formats_that_disagree_are_refused() -> None:
    (problem,) = problems("log_format: text\nlogging:\n  format: json\n" + CHANNEL)
    assert problem.endswith(
        "log_format: text and logging.format: json disagree; keep logging.format only"
    )


def test_listen_address_from_the_environment_wins_over_the_yaml() -> None:
    text = "http:\n  listen: 127.0.0.1:9464\n" + CHANNEL
    settings = parse_settings(text, "cfg.yaml", {"RPI_BRAZE_SYNC_LISTEN": "0.0.0.0:9500"})
    assert settings.http.listen == "0.0.0.0:9500"
    assert problems(text, {"RPI_BRAZE_SYNC_LISTEN": "9500"}) == [
        f"{at(text, '127.0.0.1')}: http.listen (from $RPI_BRAZE_SYNC_LISTEN): expects host:port,"
        " e.g. 127.0.0.1:9464 or 0.0.0.0:9464; got '9500'"
    ]
