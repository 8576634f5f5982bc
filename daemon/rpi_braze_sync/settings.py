"""The configuration's shape: frozen pydantic models, the single source of the JSON schema.

Pure: no file or environment access here (config.py loads YAML and applies overrides).
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

# The channel's sections live in channelsettings.py; named here too, as before the split.
from .channelsettings import AliasSpec as AliasSpec
from .channelsettings import ArraySpec as ArraySpec
from .channelsettings import ChannelSettings as ChannelSettings
from .channelsettings import FieldType as FieldType
from .channelsettings import FormatSettings as FormatSettings
from .channelsettings import IdentifierSpec as IdentifierSpec
from .channelsettings import MappingSpec as MappingSpec
from .channelsettings import NestedSpec as NestedSpec
from .channelsettings import OriginSpec as OriginSpec
from .channelsettings import RecordCountSpec as RecordCountSpec
from .channelsettings import Scalar as Scalar
from .channelsettings import StrictModel
from .channelsettings import ValueSpec as ValueSpec


class RateLimitSettings(StrictModel):
    requests: Annotated[int, Field(ge=1, description="request starts allowed per window")] = 2400
    seconds: Annotated[float, Field(gt=0, description="sliding window length")] = 3.0


class BrazeSettings(StrictModel):
    api_url: str = Field(
        "https://rest.iad-01.braze.com",
        description="REST endpoint of the Braze instance (env BRAZE_API_URL overrides)",
    )
    api_key_env: str = Field("BRAZE_API_KEY", description="environment variable holding the key")
    api_key_file: str | None = Field(
        None,
        description="file holding the key; relative paths resolve against $CREDENTIALS_DIRECTORY;"
        " wins over api_key_env",
    )
    dry_run: bool = Field(False, description="write request bodies to the outbox, send nothing")
    batch_size: Annotated[int, Field(ge=1, le=75)] = 75
    request_timeout_seconds: Annotated[float, Field(gt=0)] = 30.0
    rate_limit: RateLimitSettings = RateLimitSettings()
    retry_max_delay_seconds: Annotated[float, Field(gt=0)] = 60.0
    auth_retry_seconds: Annotated[float, Field(gt=0)] = 60.0
    append_delay_seconds: Annotated[float, Field(ge=0)] = Field(
        10.0,
        description="an append file waits for the upsert files seen no later than it, then this"
        " long after the last one sent: Braze says dependent calls are usually consistent"
        " within 100 ms but may take up to five minutes",
    )
    max_in_flight: Annotated[int, Field(ge=1, description="upper bound on concurrent requests")] = (
        512
    )

    @field_validator("api_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not re.match(r"^https?://[^/\s]+", value):
            raise ValueError(f"{value!r} is not an http(s) URL")
        return value.rstrip("/")


class WatchSettings(StrictModel):
    base_output_directory: str = Field(
        "./var/exports", description="RPI's shared export folder (env BASE_OUTPUT_DIRECTORY)"
    )
    settle_seconds: Annotated[float, Field(ge=0)] = 10.0
    observer: Literal["auto", "native", "polling"] = "auto"
    backfill: bool = Field(
        False, description="on the very first start, also send the files already there"
    )
    poll_interval_seconds: Annotated[float, Field(gt=0)] = 1.0
    rescan_interval_seconds: Annotated[float, Field(gt=0)] = 30.0
    path_pattern: str = Field(
        "{channel}/{offer}/{workflow_id}", description="folders between the base and the file"
    )
    archive_directory: str | None = Field(
        None,
        description="where after_done: archive moves files (same relative path);"
        " default <base_output_directory>/.archive",
    )
    file_attempts: Annotated[int, Field(ge=1)] = Field(
        5,
        description="tries of a file that cannot be read or sent (the share being available)"
        " before it is parked as failed; `retry` brings it back",
    )
    file_retry_seconds: Annotated[float, Field(gt=0)] = Field(
        30.0,
        description="wait before the second try of such a file, doubled at each try (at most"
        " 15 min); other files go meanwhile",
    )

    @field_validator("path_pattern")
    @classmethod
    def _pattern_names_channel(cls, value: str) -> str:
        parts = value.strip("/").split("/")
        names = [p[1:-1] for p in parts if re.fullmatch(r"\{[a-z_][a-z0-9_]*\}", p)]
        if "channel" not in names:
            raise ValueError("the pattern must contain a {channel} part")
        if len(names) != len(set(names)):
            raise ValueError("a part name appears twice")
        return value.strip("/")


def host_port_problem(value: str) -> str | None:
    """What is wrong with a listen address, in words; None when it is host:port."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        return f"expects host:port, e.g. 127.0.0.1:9464 or 0.0.0.0:9464; got {value!r}"
    return None


class HttpSettings(StrictModel):
    listen: str = Field(
        "127.0.0.1:9464",
        description="host:port of /metrics, /healthz, /readyz ($RPI_BRAZE_SYNC_LISTEN and"
        " --listen override it)",
    )

    @field_validator("listen")
    @classmethod
    def _host_port(cls, value: str) -> str:
        problem = host_port_problem(value)
        if problem is not None:
            raise ValueError(problem)
        return value


class HookSettings(StrictModel):
    """POST /rpi/post-execution: RPI says a channel run finished writing its export."""

    token_env: str | None = Field(None, description="environment variable holding the shared token")
    token_file: str | None = Field(
        None, description="file holding the token (relative: in $CREDENTIALS_DIRECTORY); wins"
    )
    recheck_seconds: Annotated[float, Field(ge=0)] = Field(
        2.0, description="after a call, a matching file is complete once stable this long"
    )
    call_ttl_seconds: Annotated[float, Field(gt=0)] = Field(
        900.0, description="how long a call keeps matching files that appear after it"
    )


class StatusPageSettings(StrictModel):
    """GET / and GET /status.json: loopback callers only, unless a token is set."""

    token_env: str | None = Field(
        None, description="environment variable holding the token that opens the page to others"
    )
    token_file: str | None = Field(
        None, description="file holding that token (relative: in $CREDENTIALS_DIRECTORY); wins"
    )


class PerformanceSettings(StrictModel):
    mapping_process: bool = Field(
        True,
        description="read and map files in a second process, so reading and sending use two"
        " cores; false keeps it all in one process (one core, about 20 MB less)",
    )


class DeltaSettings(StrictModel):
    """Send only what changed (README: Paying only for what changed)."""

    enabled: bool = Field(
        False, description="leave out values Braze acknowledged before (channels may override)"
    )
    max_age_days: Annotated[float, Field(gt=0)] = Field(
        30.0, description="a value last sent longer ago than this is sent again"
    )


class JournalSettings(StrictModel):
    retention_days: Annotated[float, Field(gt=0)] = Field(
        30.0, description="how long a finished file's record outlives the file itself"
    )
    url: str | None = Field(
        None,
        description="postgresql://user@host:5432/db: the journal lives in PostgreSQL, shared by"
        " an active/standby pair (the README's 'Two machines'); unset: SQLite in state_directory",
    )
    password_file: str | None = Field(
        None,
        description="file holding the database password (relative: in $CREDENTIALS_DIRECTORY);"
        " else libpq's PGPASSWORD or ~/.pgpass",
    )

    @field_validator("url")
    @classmethod
    def _postgresql_url(cls, url: str | None) -> str | None:
        if url is None:
            return None
        if not url.startswith(("postgresql://", "postgres://")):
            raise ValueError("must start with postgresql:// (a libpq connection URI)")
        if _url_password(url):
            raise ValueError(
                "holds a password: put it in journal.password_file (or .pgpass), never in the"
                " configuration"
            )
        return url


def _url_password(url: str) -> bool:
    """Whether a connection URI carries a password (user:password@, or ?password=)."""
    authority = url.split("://", 1)[1].split("/", 1)[0].split("?", 1)[0]
    query = url.split("?", 1)[1] if "?" in url else ""
    in_query = any(part.split("=", 1)[0] == "password" for part in query.split("&"))
    return in_query or ("@" in authority and ":" in authority.rsplit("@", 1)[0])


class HaSettings(StrictModel):
    """Active/standby on a shared PostgreSQL journal (journal.url)."""

    lease_seconds: Annotated[float, Field(ge=1, le=600)] = Field(
        15.0,
        description="the leader renews its lease every third of this; the standby takes over"
        " within about this long after the leader stops",
    )


class LoggingSettings(StrictModel):
    format: Literal["text", "json"] | None = Field(
        None, description="text lines for journald (default) or JSON lines; --log-format overrides"
    )
    progress_seconds: Annotated[float, Field(gt=0)] = Field(
        15.0, description="while a file is sent, a progress line this often"
    )


class Settings(StrictModel):
    braze: BrazeSettings = BrazeSettings()
    watch: WatchSettings = WatchSettings()
    state_directory: str | None = Field(
        None, description="journal, rejects and outbox; default $STATE_DIRECTORY or ./var/state"
    )
    http: HttpSettings = HttpSettings()
    journal: JournalSettings = JournalSettings()
    ha: HaSettings = HaSettings()
    delta: DeltaSettings = DeltaSettings()
    hook: HookSettings = HookSettings()
    status_page: StatusPageSettings = StatusPageSettings()
    performance: PerformanceSettings = PerformanceSettings()
    logging: LoggingSettings = LoggingSettings()
    log_format: Literal["text", "json"] | None = Field(
        None,
        description="the older spelling of logging.format, still accepted",
        json_schema_extra={"deprecated": True},
    )
    shutdown_grace_seconds: Annotated[float, Field(ge=0)] = Field(
        20.0, description="on SIGTERM, how long requests in flight may take to finish"
    )
    channels: Annotated[dict[str, ChannelSettings], Field(min_length=1)]

    @model_validator(mode="after")
    def _one_log_format(self) -> Settings:
        given = {self.log_format, self.logging.format} - {None}
        if len(given) > 1:
            raise ValueError(
                f"log_format: {self.log_format} and logging.format: {self.logging.format}"
                " disagree; keep logging.format only"
            )
        return self

    def delta_for(self, channel: str) -> bool:
        """Whether the channel sends only what changed."""
        own = self.channels[channel].delta
        return self.delta.enabled if own is None else own

    @property
    def log_format_in_use(self) -> str:
        return self.logging.format or self.log_format or "text"


def json_schema() -> dict[str, object]:
    """The configuration's JSON Schema, for editors (config/rpi-braze-sync.schema.json)."""
    return {
        **Settings.model_json_schema(),
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "rpi-braze-sync configuration",
    }
