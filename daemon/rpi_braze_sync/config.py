"""Load the YAML configuration: environment overrides, validation, errors with file:line.

Everything wrong is reported at once, each problem naming the file, line, column and key path.
The API key is read here (environment or file) and never comes from the YAML.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from pydantic import ValidationError

from .configerrors import describe, without_union_branches, yaml_problem
from .errors import ConfigError, MappingError
from .plan import ChannelPlan, compile_channel_plan
from .secret import Secret
from .settings import ChannelSettings, Settings
from .yamllimits import check_yaml_limits

KeyPath = tuple[str | int, ...]
LISTEN_ENV = "RPI_BRAZE_SYNC_LISTEN"
BASE_ENV = "BASE_OUTPUT_DIRECTORY"
VALUE = "\0value"  # appended to a key path: where that key's value starts

# Environment variables named as the RPDM automation names them; they win over the YAML.
ENV_OVERRIDES: dict[str, KeyPath] = {
    "BRAZE_API_URL": ("braze", "api_url"),
    BASE_ENV: ("watch", "base_output_directory"),
    LISTEN_ENV: ("http", "listen"),  # `run --listen` sets it, so the flag wins over both
}


@dataclass(frozen=True)
class Channel:
    name: str
    settings: ChannelSettings
    plan: ChannelPlan  # how its files are read and mapped


@dataclass(frozen=True)
class LoadedConfig:
    path: Path
    settings: Settings
    state_directory: Path
    base_output_directory: Path
    api_key: Secret | None
    channels: dict[str, Channel] = field(default_factory=dict)
    hook_token: Secret | None = None
    journal_password: Secret | None = None  # journal.password_file's; None: libpq's own ways
    status_page_token: Secret | None = None

    @property
    def dry_run(self) -> bool:
        return self.settings.braze.dry_run

    @property
    def uses_delta(self) -> bool:
        """Some channel sends only what changed (never in a dry run: nothing is acknowledged).
        Asked before delta's modules are imported (lead.py): off, the daemon never loads them."""
        return not self.dry_run and self._asks_delta()

    @property
    def delta_unused(self) -> bool:
        """Delta is turned on, but this is a dry run: it is not used (said in the log)."""
        return self.dry_run and self._asks_delta()

    def _asks_delta(self) -> bool:
        settings = self.settings
        return any(settings.delta_for(name) for name in settings.channels)

    @property
    def journal_url(self) -> str | None:
        """The PostgreSQL journal's URL when this run uses it: a dry run keeps its SQLite
        journal in state_directory (it must never mark a file done for the live pair)."""
        return None if self.dry_run else self.settings.journal.url


def format_key_path(path: KeyPath) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
            continue
        text = part if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", part) else f"'{part}'"
        out += f".{text}" if out else text
    return out or "(top level)"


def _index_marks(node: yaml.Node, path: KeyPath, marks: dict[KeyPath, yaml.Mark]) -> list[str]:
    """Record where each key path starts in the file; report duplicate keys on the way."""
    problems: list[str] = []
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                problems += _index_marks(value_node, path, marks)
                continue
            key = str(key_node.value)
            child = (*path, key)
            if key in seen:
                m = key_node.start_mark
                problems.append(
                    f"{{file}}:{m.line + 1}:{m.column + 1}: {format_key_path(child)}: "
                    "key appears twice (YAML would keep only the last)"
                )
            seen.add(key)
            marks.setdefault(child, key_node.start_mark)
            marks.setdefault((*child, VALUE), value_node.start_mark)
            problems += _index_marks(value_node, child, marks)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            marks.setdefault((*path, i), item.start_mark)
            problems += _index_marks(item, (*path, i), marks)
    return problems


def _locate(
    marks: Mapping[KeyPath, yaml.Mark], path: KeyPath, file_name: str, at_value: bool
) -> str:
    """file:line:col of the value at `path` (or of its key), else of its nearest parent."""
    candidates = [(*path, VALUE)] if at_value else []
    candidates += [path[:end] for end in range(len(path), 0, -1)]
    for candidate in candidates:
        mark = marks.get(candidate)
        if mark is not None:
            return f"{file_name}:{mark.line + 1}:{mark.column + 1}"
    return f"{file_name}:1:1"


def parse_settings(text: str, file_name: str, env: Mapping[str, str]) -> Settings:
    """YAML text -> validated settings; raises ConfigError listing every problem."""
    return _parse(text, file_name, env)[0]


def _parse(
    text: str, file_name: str, env: Mapping[str, str]
) -> tuple[Settings, dict[KeyPath, yaml.Mark]]:
    try:
        check_yaml_limits(text, file_name)  # first: composing a bomb is what costs
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        raw = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        raise ConfigError([yaml_problem(exc, file_name)]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([f"{file_name}: invalid YAML: {exc}"]) from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError([f"{file_name}:1:1: the top level must be a mapping of keys"])
    marks: dict[KeyPath, yaml.Mark] = {}
    problems = [
        p.replace("{file}", file_name, 1)
        for p in (_index_marks(root, (), marks) if root is not None else [])
    ]

    overridden: dict[KeyPath, str] = {}
    for var, key_path in ENV_OVERRIDES.items():
        if env.get(var):
            section = raw.setdefault(key_path[0], {})
            if isinstance(section, dict):
                section[key_path[1]] = env[var]
                overridden[key_path] = var

    settings: Settings | None = None
    try:
        settings = Settings.model_validate(raw)
    except ValidationError as exc:
        for loc, error in without_union_branches(exc.errors()):
            where = _locate(marks, loc, file_name, at_value=error["type"] != "extra_forbidden")
            source = f" (from ${overridden[loc]})" if loc in overridden else ""
            problems.append(f"{where}: {format_key_path(loc)}{source}: {describe(error, loc)}")
    if settings is not None:
        try:
            compile_channels(settings)
        except MappingError as exc:
            for path, message in exc.problems:
                where = _locate(marks, path, file_name, at_value=True)
                problems.append(f"{where}: {format_key_path(path)}: {message}")
    if problems or settings is None:
        raise ConfigError(problems)
    return settings, marks


def compile_channels(settings: Settings) -> dict[str, Channel]:
    """Compile every channel's mapping; MappingError lists problems with full key paths."""
    channels: dict[str, Channel] = {}
    problems: list[tuple[tuple[str | int, ...], str]] = []
    for name, channel in settings.channels.items():
        try:
            compiled = compile_channel_plan(channel, settings.watch.path_pattern)
        except MappingError as exc:
            problems += [(("channels", name, "mapping", *path), msg) for path, msg in exc.problems]
            continue
        channels[name] = Channel(name, channel, compiled)
    if problems:
        raise MappingError(problems)
    return channels


def _read_secret_file(
    name: str, env: Mapping[str, str], file_name: str, key_path_text: str
) -> Secret:
    path = Path(name)
    if not path.is_absolute():
        base = env.get("CREDENTIALS_DIRECTORY")
        if not base:
            why = f"{name!r} is relative and $CREDENTIALS_DIRECTORY is not set"
            raise ConfigError([f"{file_name}: {key_path_text}: {why}"])
        path = Path(base) / path
    try:
        value = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigError(
            [f"{file_name}: {key_path_text}: cannot read {str(path)!r}: {reason}"]
        ) from None
    if not value:
        raise ConfigError([f"{file_name}: {key_path_text}: {str(path)!r} is empty"])
    return Secret(value)


def load_api_key(settings: Settings, env: Mapping[str, str], file_name: str) -> Secret | None:
    """The key from braze.api_key_file (wins) or the named environment variable, or None."""
    braze = settings.braze
    if braze.api_key_file:
        return _read_secret_file(braze.api_key_file, env, file_name, "braze.api_key_file")
    value = env.get(braze.api_key_env, "").strip()
    return Secret(value) if value else None


def load_hook_token(settings: Settings, env: Mapping[str, str], file_name: str) -> Secret | None:
    """The post-execution hook's shared token (file wins over the environment), or None."""
    return _load_token("hook", settings.hook.token_env, settings.hook.token_file, env, file_name)


def load_status_page_token(
    settings: Settings, env: Mapping[str, str], file_name: str
) -> Secret | None:
    """The status page's token (file wins over the environment), or None: loopback only."""
    page = settings.status_page
    return _load_token("status_page", page.token_env, page.token_file, env, file_name)


def _load_token(
    section: str,
    token_env: str | None,
    token_file: str | None,
    env: Mapping[str, str],
    file_name: str,
) -> Secret | None:
    if token_file:
        return _read_secret_file(token_file, env, file_name, f"{section}.token_file")
    if token_env:
        value = env.get(token_env, "").strip()
        if not value:
            why = f"${token_env} is not set or empty"
            raise ConfigError([f"{file_name}: {section}.token_env: {why}"])
        return Secret(value)
    return None


def load_journal_password(
    settings: Settings, env: Mapping[str, str], file_name: str, strict: bool
) -> Secret | None:
    """journal.password_file's password. `strict` (the daemon): a file that cannot be read is
    a configuration error. Otherwise (status, retry from an operator's shell, where
    $CREDENTIALS_DIRECTORY is not set) None: libpq's PGPASSWORD or ~/.pgpass apply."""
    name = settings.journal.password_file
    if not name or not settings.journal.url:
        return None
    try:
        return _read_secret_file(name, env, file_name, "journal.password_file")
    except ConfigError:
        if strict:
            raise
        return None


def load_config(
    path: str | os.PathLike[str],
    env: Mapping[str, str] | None = None,
    *,
    dry_run: bool | None = None,
    state_directory: str | None = None,
    secrets: bool = True,
) -> LoadedConfig:
    """Read, validate and compile a config file; ConfigError names file, line and key path.

    `secrets=False` skips the API key and the tokens (commands that only read files).
    """
    env = os.environ if env is None else env
    config_path = Path(path)
    file_name = str(config_path)
    try:
        text = config_path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigError([f"{file_name}: cannot read the configuration: {reason}"]) from None
    settings = parse_settings(text, file_name, env)
    if dry_run is not None and dry_run != settings.braze.dry_run:
        braze = settings.braze.model_copy(update={"dry_run": dry_run})
        settings = settings.model_copy(update={"braze": braze})
    channels = compile_channels(settings)
    api_key = load_api_key(settings, env, file_name) if secrets else None
    hook_token = load_hook_token(settings, env, file_name) if secrets else None
    page_token = load_status_page_token(settings, env, file_name) if secrets else None
    if secrets and api_key is None and not settings.braze.dry_run:
        raise ConfigError(
            [
                f"{file_name}: braze: no API key: set ${settings.braze.api_key_env}, or "
                "braze.api_key_file, or run with braze.dry_run: true"
            ]
        )
    state = state_directory or settings.state_directory or env.get("STATE_DIRECTORY")
    return LoadedConfig(
        path=config_path,
        settings=settings,
        state_directory=Path(state or "./var/state").absolute(),
        base_output_directory=Path(settings.watch.base_output_directory).absolute(),
        api_key=api_key,
        channels=channels,
        hook_token=hook_token,
        journal_password=load_journal_password(settings, env, file_name, strict=secrets),
        status_page_token=page_token,
    )
