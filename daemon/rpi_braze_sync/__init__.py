"""rpi-braze-sync: sends Redpoint Interaction exports to Braze /users/track.

The version has one source, pyproject.toml: `__version__` reads the installed package's
metadata when first asked for (not at import: the mapping process never needs it).
"""

from __future__ import annotations

import functools


@functools.cache
def package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("rpi-braze-sync")
    except PackageNotFoundError:  # a checkout on sys.path that was never installed
        return "0+unknown"


# What the mapping process loads besides the standard library: an upgrade of one of them can
# change a mapped value (phonenumbers' metadata, pycountry's names, orjson's numbers).
MAPPING_LIBRARIES = ("orjson", "phonenumbers", "pycountry", "xxhash")


@functools.cache
def mapping_version() -> str:
    """The versions a row's mapped values depend on: this package's, the libraries' the
    mapping uses, Python's (its standard library: unicodedata, datetime, csv). In each raw
    fingerprint's seed (deltaprefilter.plan_seed, given with the FileRequest: the mapping
    process does not read packages' metadata), so that an upgrade of any maps rows again."""
    import platform
    from importlib.metadata import PackageNotFoundError, version

    def of(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "unknown"

    libraries = (f"{name} {of(name)}" for name in MAPPING_LIBRARIES)
    python = f"Python {platform.python_version()}"
    return "; ".join((f"rpi-braze-sync {package_version()}", *libraries, python))


def __getattr__(name: str) -> str:
    if name == "__version__":
        return package_version()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
