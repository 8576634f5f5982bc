"""The shape of a channel's configuration: how its files are read (format) and mapped
(mapping), and what becomes of them. Frozen pydantic models, part of the JSON schema
(settings.py holds the daemon-wide sections and the whole).

Pure: no file or environment access here.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Scalar = str | int | float | bool


class StrictModel(BaseModel):
    """Unknown keys are errors: a typo in a key must not be silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


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


class OriginSpec(StrictModel):
    """Where a value comes from: exactly one of a column, a path part or a constant."""

    column: str | None = Field(None, description="header name (compared normalised)")
    path: str | None = Field(
        None,
        description="a named part of watch.path_pattern (channel, offer, workflow_id…)"
        " or file_name",
    )
    value: Scalar | None = Field(None, description="a constant")

    @model_validator(mode="after")
    def _exactly_one(self) -> OriginSpec:
        given = [k for k in ("column", "path", "value") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of column, path, value")
        return self


class ValueSpec(OriginSpec):
    """A source and what to do with its text, applied in this order: trim, empty, case,
    values, type, max_length."""

    if_column_missing: OriginSpec | None = Field(
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
