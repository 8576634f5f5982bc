"""countries.py reads pycountry's ISO 3166-1 file itself: it must give what pycountry's own
API gives, so that a change in pycountry's layout fails here rather than in the mapping."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pycountry
import pytest

from rpi_braze_sync import countries
from rpi_braze_sync.countries import country_index
from rpi_braze_sync.parsers import parse_country


def test_the_table_is_the_one_pycountry_gives() -> None:
    expected: dict[str, str] = {}
    for country in pycountry.countries:
        for attr in ("name", "official_name", "common_name", "alpha_3", "alpha_2"):
            text = getattr(country, attr, None)
            if text:
                expected[text.lower()] = country.alpha_2
    assert len(expected) > 600
    assert country_index() == expected
    assert parse_country("France") == parse_country("fra") == "FR"
    assert parse_country("Bolivia, Plurinational State of") == "BO"  # (its official form)


def test_a_pycountry_without_its_file_is_read_through_its_api(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A copy laid out otherwise (a distribution's, patched to read the system's iso-codes)."""
    expected = country_index()
    monkeypatch.setattr(countries, "table_path", lambda: tmp_path / "absent.json")
    assert country_index() == expected


def test_the_mapping_process_imports_neither_pycountry_nor_hashlib() -> None:
    """pycountry reads every installed package's metadata (importlib.metadata, email: 3.7 MB
    of the mapping process); hashlib loads OpenSSL (about 3.5 MB), which only the daemon's
    calls use."""
    modules = "'pycountry', 'importlib.metadata', 'email', 'hashlib', '_hashlib'"
    code = (
        "import sys, rpi_braze_sync.mapchild\n"
        f"print(sorted(m for m in ({modules}) if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
