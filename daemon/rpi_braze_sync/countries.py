"""The ISO 3166-1 table the `country` type maps names and codes with, read from pycountry's
own data file rather than through `import pycountry`: that import reads every installed
package's metadata (for its __version__) and pulls in importlib.metadata, email and zipfile:
3.7 MB of the mapping process's 26 at rest (issue 16's memory budget), for 249 countries.
pycountry stays the dependency that supplies and updates the table (mapping_version names it).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import orjson

_NAMES = ("name", "official_name", "common_name", "alpha_3", "alpha_2")


def table_path() -> Path:
    """pycountry's ISO 3166-1 file, found without running the package's __init__."""
    spec = importlib.util.find_spec("pycountry")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("pycountry is not installed (pip install pycountry)")
    return Path(next(iter(spec.submodule_search_locations))) / "databases" / "iso3166-1.json"


def country_index() -> dict[str, str]:
    """Each country's names and codes, lowercased, to its alpha-2 code."""
    index: dict[str, str] = {}
    for country in _countries():
        for attr in _NAMES:
            text = country.get(attr)
            if text:
                index[text.lower()] = country["alpha_2"]
    return index


def _countries() -> list[dict[str, str]]:
    """The table's entries; through pycountry's API where its file is not where PyPI's
    package has it (a copy patched to read a system's iso-codes, say): the 3.7 MB above,
    the same table."""
    try:
        entries: list[dict[str, str]] = orjson.loads(table_path().read_bytes())["3166-1"]
        return entries
    except (OSError, KeyError, TypeError, orjson.JSONDecodeError):
        import pycountry

        return [dict(country) for country in pycountry.countries]
