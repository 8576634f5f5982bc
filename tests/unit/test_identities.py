"""A row's user identity (the sender's "same user", delta's store key): two different users
never share one, whatever the identifier's kind or the characters of its values."""

from __future__ import annotations

import pytest

from rpi_braze_sync.config import compile_channels, parse_settings
from rpi_braze_sync.deltarecord import user_key
from rpi_braze_sync.mapper import bind
from rpi_braze_sync.mapping import Rejection


def identity_of(identifier: str, header: list[str], row: list[str]) -> str:
    text = f"""
channels:
  C:
    mode: upsert
    mapping:
      identifier:
        {identifier}
      attributes:
        first_name: {{column: name}}
"""
    plan = compile_channels(parse_settings(text, "cfg.yaml", {}))["C"].plan.mapping
    mapped = bind(plan, [*header, "name"], {}).map_row([*row, "Ann"], 2)
    assert not isinstance(mapped, Rejection), mapped
    return mapped.user


EXTERNAL_ID = "external_id: {column: id}"
EMAIL = "email: {column: id, type: email}"
PHONE = "phone: {column: id, type: phone, phone_region: FR}"
ALIAS = "user_alias: {name: {column: n}, label: {column: l}}"


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ((EXTERNAL_ID, ["id"], ["email:a@b.example"]), (EMAIL, ["id"], ["a@b.example"])),
        ((EXTERNAL_ID, ["id"], ["phone:+33123456789"]), (PHONE, ["id"], ["+33123456789"])),
        ((EXTERNAL_ID, ["id"], ["alias:l:n"]), (ALIAS, ["n", "l"], ["n", "l"])),
        ((ALIAS, ["n", "l"], ["c", "a:b"]), (ALIAS, ["n", "l"], ["b:c", "a"])),
    ],
    ids=["external_id-email", "external_id-phone", "external_id-alias", "alias-alias"],
)
def test_two_users_never_share_an_identity(
    one: tuple[str, list[str], list[str]], other: tuple[str, list[str], list[str]]
) -> None:
    first, second = identity_of(*one), identity_of(*other)
    assert first != second
    assert user_key(first) != user_key(second)


def test_an_external_id_is_its_own_identity() -> None:
    """(Its store key keeps the order of ids: an export sorted by id reads few blocks.)"""
    assert identity_of(EXTERNAL_ID, ["id"], [" u-1 "]) == "u-1"
