"""Limits a configuration file must keep before it is composed: how deep it nests, how many
aliases it has and how many values they expand to (an alias bomb of a few lines expands to
billions). Checked on the YAML parser's event stream, which needs no recursion and no memory
beyond one number per open collection and per anchor.
"""

from __future__ import annotations

import yaml

from .errors import ConfigError

MAX_DEPTH = 50  # the shipped configuration nests 8 deep
MAX_ALIASES = 1_000
MAX_EXPANDED_VALUES = 100_000  # the shipped configuration has about 300


def _problem(file_name: str, event: yaml.Event, text: str) -> ConfigError:
    mark = event.start_mark
    where = f"{mark.line + 1}:{mark.column + 1}" if mark is not None else "1:1"
    return ConfigError([f"{file_name}:{where}: {text}"])


def check_yaml_limits(text: str, file_name: str) -> None:
    """Raise ConfigError at the first place the text goes past a limit. A YAML syntax error
    is raised as the parser's own (yaml.MarkedYAMLError), as yaml.compose would."""
    open_collections: list[tuple[str | None, int]] = []  # (anchor, values inside so far)
    anchored: dict[str, int] = {}  # anchor -> values it stands for
    aliases = 0
    expanded = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.CollectionStartEvent):
            if len(open_collections) >= MAX_DEPTH:
                raise _problem(file_name, event, f"nested more than {MAX_DEPTH} levels deep")
            open_collections.append((event.anchor, 1))
            expanded += 1
            continue
        if isinstance(event, yaml.CollectionEndEvent):
            anchor, size = open_collections.pop()
            if anchor is not None:
                anchored[anchor] = size
        elif isinstance(event, yaml.ScalarEvent):
            size = 1
            expanded += 1
            if event.anchor is not None:
                anchored[event.anchor] = 1
        elif isinstance(event, yaml.AliasEvent):
            aliases += 1
            if aliases > MAX_ALIASES:
                raise _problem(file_name, event, f"more than {MAX_ALIASES:,} aliases (*name)")
            size = anchored.get(event.anchor or "", 1)  # an unknown one: compose reports it
            expanded += size
            if expanded > MAX_EXPANDED_VALUES:
                raise _problem(
                    file_name,
                    event,
                    f"aliases expand the file to more than {MAX_EXPANDED_VALUES:,} values"
                    " (an alias bomb?); write the values out, or use fewer aliases",
                )
        else:
            continue
        if open_collections:
            anchor, inside = open_collections[-1]
            open_collections[-1] = (anchor, inside + size)
