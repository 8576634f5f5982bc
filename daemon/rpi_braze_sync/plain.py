"""Settings as plain objects, for the mapping process.

The daemon validates its configuration with pydantic; the mapping process only reads it.
Sent these copies (SimpleNamespace, dict, list, read the same way), it never imports pydantic
or builds the settings models: 20 MB less in a process whose memory counts in the budget.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any


def detached(value: Any) -> Any:
    """`value` with every settings model in it turned into a SimpleNamespace of its fields."""
    if hasattr(type(value), "model_fields"):  # a pydantic model (told without importing it)
        return SimpleNamespace(**{k: detached(v) for k, v in vars(value).items()})
    if isinstance(value, dict):
        return {k: detached(v) for k, v in value.items()}
    if isinstance(value, list):
        return [detached(v) for v in value]
    return value
