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
        10.0, description="pause between an upsert file and a following append file"
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


class HttpSettings(StrictModel):
    listen: str = Field("127.0.0.1:9464", description="host:port of /metrics, /healthz, /readyz")

    @field_validator("listen")
    @classmethod
    def _host_port(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"{value!r} is not host:port")
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


FieldType = Literal["string", "integer", "float", "boolean", "date", "email", "gender", "country"]


class SourceSpec(StrictModel):
    """Where a value comes from: exactly one of a column, a path part or a constant."""

    column: str | None = None
    path: str | None = None
    value: Scalar | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> SourceSpec:
        given = [k for k in ("column", "path", "value") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of column, path, value")
        return self


class FieldSpec(SourceSpec):
    type: FieldType = "string"
    required: bool = Field(False, description="an empty or missing value rejects the row")
    on_invalid: Literal["drop", "reject"] = Field(
        "drop", description="a bad value drops the field (default) or rejects the row"
    )


class IdentifierSpec(StrictModel):
    external_id: SourceSpec | None = None

    @model_validator(mode="after")
    def _one_identifier(self) -> IdentifierSpec:
        if self.external_id is None:
            raise ValueError("name the identifier: external_id")
        return self


class ArraySpec(StrictModel):
    add: SourceSpec | None = None
    remove: SourceSpec | None = None
    warn_if_missing: bool = Field(
        False, description="log a warning when a file lacks the source column"
    )

    @model_validator(mode="after")
    def _has_operation(self) -> ArraySpec:
        if self.add is None and self.remove is None:
            raise ValueError("give add, remove or both")
        return self


class NestedSpec(StrictModel):
    columns: Literal["remaining"] | list[str] = Field(
        "remaining", description="'remaining': every column no other rule uses"
    )
    merge: bool = Field(True, description="send _merge_objects: true (deep merge)")


class MappingSpec(StrictModel):
    identifier: IdentifierSpec
    attributes: dict[str, FieldSpec] = {}
    arrays: dict[str, ArraySpec] = {}
    nested: dict[str, NestedSpec] = {}

    @model_validator(mode="after")
    def _one_home_per_attribute(self) -> MappingSpec:
        names = [*self.attributes, *self.arrays, *self.nested]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"attribute(s) mapped twice: {', '.join(twice)}")
        if len([n for n in self.nested if self.nested[n].columns == "remaining"]) > 1:
            raise ValueError("only one nested object can take the remaining columns")
        return self


class ChannelSettings(StrictModel):
    mode: Literal["upsert", "append"]
    format: FormatSettings = FormatSettings()
    mapping: MappingSpec


class Settings(StrictModel):
    braze: BrazeSettings = BrazeSettings()
    watch: WatchSettings = WatchSettings()
    state_directory: str | None = Field(
        None, description="journal, rejects and outbox; default $STATE_DIRECTORY or ./var/state"
    )
    http: HttpSettings = HttpSettings()
    log_format: Literal["text", "json"] = "text"
    shutdown_grace_seconds: Annotated[float, Field(ge=0)] = Field(
        20.0, description="on SIGTERM, how long requests in flight may take to finish"
    )
    channels: Annotated[dict[str, ChannelSettings], Field(min_length=1)]
