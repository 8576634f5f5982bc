"""A secret (the API key, the hook token, a database password) as a value that never prints
itself. A leaf module: braze.py and server.py take secrets without importing the configuration.
"""

from __future__ import annotations


class Secret:
    """A string that never prints itself: repr, str and format all show a mask."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('********')"

    __str__ = __repr__
