"""The configuration's shape: frozen pydantic models, the single source of the JSON schema.

Pure: no file or environment access here (config.py loads YAML and applies overrides).
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Scalar = str | int | float | bool


class StrictModel(BaseModel):
    """Unknown keys are errors: a typo in a key must not be silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


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


class RecordCountSpec(StrictModel):
    line: Annotated[int, Field(ge=1, description="line (among format.skip_lines) with the count")]
    pattern: str = Field(r"(\d+)", description="regular expression; its first group is the count")

    @field_validator("pattern")
    @classmethod
    def _one_group(cls, value: str) -> str:
        try:
            compiled = re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a regular expression: {exc}") from None
        if compiled.groups < 1:
            raise ValueError("the pattern needs a group around the count, e.g. '(\\d+)'")
        return value


class FormatSettings(StrictModel):
    delimiter: Literal["auto", ",", "\t", "|", ";"] = Field(
        "auto", description="'auto' picks among comma, tab, pipe and semicolon from the header"
    )
    quote_char: Annotated[str, Field(min_length=1, max_length=1)] = '"'
    encoding: str = "utf-8"
    fallback_encoding: str | None = Field(
        None, description="used for the whole file when it is not valid in `encoding`"
    )
    skip_lines: Annotated[int, Field(ge=0)] = Field(0, description="lines before the header")
    record_count: RecordCountSpec | None = Field(
        None, description="a line that states the number of records, checked at the end"
    )
    max_record_bytes: Annotated[int, Field(ge=1024, le=1 << 30)] = Field(
        1 << 20,
        description="the longest record read (1 MiB): a longer line is rejected with its line"
        " number; a longer record of several lines fails the file. Memory depends on it",
    )

    @model_validator(mode="after")
    def _count_line_skipped(self) -> FormatSettings:
        if self.record_count is not None and self.record_count.line > self.skip_lines:
            raise ValueError("record_count.line must be one of the skip_lines before the header")
        return self

    @field_validator("encoding", "fallback_encoding")
    @classmethod
    def _known_codec(cls, value: str | None) -> str | None:
        import codecs  # a lookup table, not I/O

        if value is not None:
            try:
                codecs.lookup(value)
            except LookupError:
                raise ValueError(f"unknown encoding {value!r}") from None
        return value


FieldType = Literal[
    "string", "integer", "float", "boolean", "date", "time", "email", "gender", "country", "phone"
]  # fmt: skip


class SourceSpec(StrictModel):
    """Where a value comes from: exactly one of a column, a path part or a constant."""

    column: str | None = Field(None, description="header name (compared normalised)")
    path: str | None = Field(
        None,
        description="a named part of watch.path_pattern (channel, offer, workflow_id…)"
        " or file_name",
    )
    value: Scalar | None = Field(None, description="a constant")

    @model_validator(mode="after")
    def _exactly_one(self) -> SourceSpec:
        given = [k for k in ("column", "path", "value") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of column, path, value")
        return self


class ValueSpec(SourceSpec):
    """A source and what to do with its text, applied in this order: trim, empty, case,
    values, type, max_length."""

    if_column_missing: SourceSpec | None = Field(
        None,
        description="used for files without the column, e.g. {path: rpi_channel_execution_id}"
        " (from RPI's post-execution call)",
    )
    trim: bool = Field(True, description="strip surrounding spaces")
    empty: Literal["skip", "null"] = Field(
        "skip", description="an empty cell sends nothing (skip) or null, which clears the attribute"
    )
    default: Scalar | None = Field(None, description="used when the cell is empty")
    required: bool = Field(False, description="an empty value is invalid (see on_invalid)")
    case: Literal["lower", "upper"] | None = None
    values: dict[str, Scalar] | None = Field(
        None, description="replace these values (after case); others pass unchanged"
    )
    type: FieldType = "string"
    input_formats: list[str] | None = Field(
        None, description="strptime formats for type date or time, e.g. '%d/%m/%Y'"
    )
    phone_region: str | None = Field(
        None,
        description="type phone: the region (ISO alpha-2) of national numbers (without +), to"
        " send them in E.164; with phone_region_column, for rows without a usable region",
    )
    phone_region_column: str | None = Field(
        None,
        description="type phone: a column naming each row's region, read like type country"
        " ('France', 'FRA', 'fr'); rows where it is empty or unknown use phone_region",
    )
    max_length: Annotated[int, Field(ge=1, le=255)] | None = None
    too_long: Literal["drop", "truncate"] = "drop"
    on_invalid: Literal["drop", "reject"] = Field(
        "drop", description="a bad value drops the field (default) or rejects the row"
    )

    @model_validator(mode="after")
    def _consistent(self) -> ValueSpec:
        if self.if_column_missing is not None and self.column is None:
            raise ValueError("if_column_missing needs a column")
        if self.input_formats and self.type not in ("date", "time"):
            raise ValueError("input_formats needs type date or time")
        if self.phone_region_column is not None and self.type != "phone":
            raise ValueError("phone_region_column needs type phone")
        if self.phone_region is not None:
            if self.type != "phone":
                raise ValueError("phone_region needs type phone")
            if not re.fullmatch(r"[A-Z]{2}", self.phone_region):
                raise ValueError(f"phone_region {self.phone_region!r} is not an ISO alpha-2 code")
        return self


class AliasSpec(StrictModel):
    name: ValueSpec = Field(description="alias_name")
    label: ValueSpec = Field(description="alias_label")


class IdentifierSpec(StrictModel):
    """Exactly one: external_id (default in RPI), email, phone or user_alias."""

    external_id: ValueSpec | None = None
    email: ValueSpec | None = None
    phone: ValueSpec | None = None
    user_alias: AliasSpec | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> IdentifierSpec:
        given = [k for k in ("external_id", "email", "phone", "user_alias") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError(
                "give exactly one identifier of external_id, email, phone, user_alias"
                + (f" (got {', '.join(given)})" if given else "")
            )
        return self

    @property
    def kind(self) -> str:
        return next(k for k in ("external_id", "email", "phone", "user_alias") if getattr(self, k))


class ArraySpec(StrictModel):
    add: ValueSpec | list[ValueSpec] = Field([], description="values added: a source or a list")
    remove: ValueSpec | list[ValueSpec] = Field(
        [], description="values removed: a source or a list"
    )
    warn_if_missing: bool = Field(
        False, description="log a warning when a file lacks a source column"
    )

    @model_validator(mode="after")
    def _has_operation(self) -> ArraySpec:
        if not self.add and not self.remove:
            raise ValueError("give add, remove or both")
        return self

    def operations(self) -> list[tuple[str, list[ValueSpec], bool]]:
        """(add|remove, its values, whether the YAML gave a list)."""
        return [
            (op, values, True) if isinstance(values, list) else (op, [values], False)
            for op, values in (("add", self.add), ("remove", self.remove))
        ]


class NestedSpec(StrictModel):
    columns: Literal["remaining"] | list[str] | None = Field(
        None, description="'remaining': every column no other rule uses; or a list of columns"
    )
    keys: dict[str, ValueSpec] = Field({}, description="explicit keys, each with its source")
    merge: bool = Field(True, description="send _merge_objects: true (deep merge)")

    @model_validator(mode="after")
    def _has_content(self) -> NestedSpec:
        if self.columns is None and not self.keys:
            raise ValueError("give columns, keys or both")
        return self


class MappingSpec(StrictModel):
    identifier: IdentifierSpec
    attributes: dict[str, ValueSpec] = {}
    arrays: dict[str, ArraySpec] = {}
    nested: dict[str, NestedSpec] = {}

    @model_validator(mode="after")
    def _one_home_per_attribute(self) -> MappingSpec:
        names = [*self.attributes, *self.arrays, *self.nested]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"attribute(s) mapped twice: {', '.join(twice)}")
        if len([n for n in self.nested.values() if n.columns == "remaining"]) > 1:
            raise ValueError("only one nested object can take the remaining columns")
        if len({n.merge for n in self.nested.values()}) > 1:
            raise ValueError(
                "nested objects must agree on merge (_merge_objects applies to the whole row)"
            )
        return self


class ChannelSettings(StrictModel):
    mode: Literal["upsert", "append"]
    delta: bool | None = Field(
        None, description="send only values Braze does not hold from us; default delta.enabled"
    )
    after_done: Literal["keep", "archive", "delete"] = Field(
        "keep", description="what becomes of a file once every row is sent or rejected"
    )
    format: FormatSettings = FormatSettings()
    mapping: MappingSpec


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
