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


def __getattr__(name: str) -> str:
    if name == "__version__":
        return package_version()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
