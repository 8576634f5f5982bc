"""How configuration problems read: pydantic's and PyYAML's errors, said in YAML's terms to
the person who edits the file ("expects a number; got the text 'soon'").

Pure: error records in, sentences out. config.py adds the file, line and key path.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import yaml
from pydantic import BaseModel

from .settings import Settings

KeyPath = tuple[str | int, ...]

_MAPPING = "a mapping (key: value lines, indented below the key)"
# What a value of each kind should have been, by pydantic error type.
_EXPECTS = {
    "string_type": "text",
    "int_type": "a whole number",
    "int_parsing": "a whole number",
    "int_from_float": "a whole number",
    "float_type": "a number (e.g. 10 or 2.5)",
    "float_parsing": "a number (e.g. 10 or 2.5)",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "dict_type": _MAPPING,
    "model_type": _MAPPING,
    "model_attributes_type": _MAPPING,
    "list_type": "a list (- item lines, or [a, b])",
}
# The same, short, for a field that takes one of several kinds.
_KIND_WORDS = {
    "string": "text",
    "integer": "a number",
    "number": "a number",
    "boolean": "true/false",
    "dictionary": "a mapping",
    "list": "a list",
}
_BOUNDS = {
    "greater_than": ("gt", "more than"),
    "greater_than_equal": ("ge", "at least"),
    "less_than": ("lt", "less than"),
    "less_than_equal": ("le", "at most"),
}
# Keys whose value has a form of its own, said instead of the bare type.
_FIELD_FORMS: dict[KeyPath, str] = {
    ("http", "listen"): "host:port, e.g. 127.0.0.1:9464 or 0.0.0.0:9464",
    ("braze", "api_url"): "the instance's REST URL, e.g. https://rest.iad-01.braze.com",
}


def _got(value: object) -> str:
    """The value as the YAML showed it."""
    if value is None:
        return "nothing (the value is empty)"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int | float):
        return f"the number {value}"
    if isinstance(value, str):
        return f"the text {value!r}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping of keys"
    return repr(value)


def _allowed_keys(model: type[BaseModel], loc: KeyPath) -> list[str] | None:
    """The keys a model accepts at `loc`'s parent, to say what is allowed after a typo."""
    current: Any = model
    for part in loc[:-1]:
        if isinstance(current, type) and issubclass(current, BaseModel):
            info = current.model_fields.get(str(part))
            if info is None:
                return None
            current = info.annotation
        else:  # dict[str, Model] or Optional[Model]: take the model argument
            args = [a for a in getattr(current, "__args__", ()) if isinstance(a, type)]
            models = [a for a in args if issubclass(a, BaseModel)]
            if not models:
                return None
            current = models[0]
            if str(part) in current.model_fields:
                current = current.model_fields[str(part)].annotation
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    args = [a for a in getattr(current, "__args__", ()) if isinstance(a, type)]
    models = [a for a in args if issubclass(a, BaseModel)]
    return list(models[0].model_fields) if models else None


def describe(error: Mapping[str, Any], loc: KeyPath) -> str:
    """One pydantic error as a sentence about the YAML value at `loc`."""
    kind, ctx = error["type"], error.get("ctx") or {}
    if kind == "extra_forbidden":
        allowed = _allowed_keys(Settings, loc)
        hint = f" (allowed: {', '.join(allowed)})" if allowed else ""
        return f"unknown key{hint}"
    if kind == "missing":
        return "required key is missing"
    if kind == "literal_error":
        expected = str(ctx.get("expected", "")).replace("'", "")
        return f"{error['input']!r} is not one of {expected.replace(' or ', ', ')}"
    if kind in _EXPECTS:
        return f"expects {_FIELD_FORMS.get(loc, _EXPECTS[kind])}; got {_got(error['input'])}"
    if kind == "union_kinds":
        return f"expects {ctx['kinds']}; got {_got(error['input'])}"
    if kind in _BOUNDS:
        bound, words = _BOUNDS[kind]
        return f"must be {words} {ctx[bound]}; got {error['input']}"
    if kind in ("too_short", "string_too_short"):
        return f"needs at least {ctx['min_length']} {_unit(kind, ctx['min_length'])}"
    if kind in ("too_long", "string_too_long"):
        return f"takes at most {ctx['max_length']} {_unit(kind, ctx['max_length'])}"
    return str(error["msg"]).removeprefix("Value error, ")


def _unit(kind: str, count: int) -> str:
    unit = "character" if kind.startswith("string") else "entry"
    if count == 1:
        return unit
    return "characters" if unit == "character" else "entries"


def _is_branch_tag(part: str | int) -> bool:
    """pydantic names the alternative of a union field in the error's location."""
    return isinstance(part, str) and (
        "[" in part or part in ("str", "int", "float", "bool", "list", "dict")
    )


def _kinds(errors: list[Mapping[str, Any]]) -> str:
    """'text, a number or true/false': what the alternatives of a field accept."""
    words: list[str] = []
    for error in errors:
        if error["type"] == "literal_error":
            words.append(str((error.get("ctx") or {}).get("expected", "")))
            continue
        kind = re.sub(r" or instance of \w+", "", str(error["msg"]))
        kind = kind.removeprefix("Input should be a valid ").split(",")[0]
        word = _KIND_WORDS.get(kind, kind)
        if word not in words:
            words.append(word)
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} or {words[-1]}"


def without_union_branches(errors: list[Any]) -> list[tuple[KeyPath, Mapping[str, Any]]]:
    """One problem per place, in the YAML's own terms.

    A field that accepts several forms (one value or a list; text, number or boolean) gets one
    error per form from pydantic, each under the form's internal name. Keep, per field, the
    form that got furthest into the input (the deepest location), and drop the names.
    """
    plain: list[tuple[KeyPath, Mapping[str, Any]]] = []
    branches: dict[KeyPath, list[tuple[KeyPath, Mapping[str, Any]]]] = {}
    for error in errors:
        loc = tuple(error["loc"])
        cut = next((i for i, part in enumerate(loc) if _is_branch_tag(part)), None)
        if cut is None:
            plain.append((loc, error))
            continue
        clean = tuple(p for p in loc if not _is_branch_tag(p))
        branches.setdefault(loc[:cut], []).append((clean, error))
    for field_loc, found in branches.items():
        deepest = max(len(clean) for clean, _ in found)
        kept = [(clean, e) for clean, e in found if len(clean) == deepest]
        own_rule = [(clean, e) for clean, e in kept if e["type"] == "value_error"]
        if own_rule:  # a form's own rule (a model validator) says more than a type mismatch
            kept = own_rule
        if deepest == len(field_loc) and len(kept) > 1:
            ctx = {"kinds": _kinds([e for _, e in kept])}
            kept = [(field_loc, dict(kept[0][1], type="union_kinds", ctx=ctx))]
        seen: set[tuple[KeyPath, str]] = set()
        for clean, error in kept:
            if (clean, str(error["msg"])) not in seen:
                seen.add((clean, str(error["msg"])))
                plain.append((clean, error))
    return plain


# --- YAML syntax ----------------------------------------------------------------------------

# PyYAML's words for the usual slips, and what to do about them.
_YAML_PROBLEMS = {
    "could not find expected ':'": "a key without ':' (write `key: value`)",
    "mapping values are not allowed here": (
        "a ':' where no value can start: a key indented under a value, or text with ': '"
        " that needs quotes"
    ),
    "expected <block end>, but found '<block mapping start>'": (
        "this line is indented differently from the keys beside it"
    ),
    "found character '\\t' that cannot start any token": "a tab: YAML indents with spaces only",
}


def yaml_problem(exc: yaml.MarkedYAMLError, file_name: str) -> str:
    """file:line:col and what is wrong, at the line most likely edited.

    PyYAML gives two places: the problem (where it gave up) and a context (what it was
    reading). While scanning one token (a key without ':', a quoted string, a flow list) the
    context is where that token starts, the line with the slip, and the problem is later. In
    a block (bad indentation), the context is where the block began, far above, and the
    problem is the line itself.
    """
    problem, context = exc.problem_mark, exc.context_mark
    scanning = exc.context is not None and (
        exc.context.startswith("while scanning") or "flow" in exc.context
    )
    at, other = (context, problem) if scanning and context is not None else (problem, context)
    what = str(exc.problem or exc)
    words = _YAML_PROBLEMS.get(what)
    text = f"{words} (YAML: {what})" if words else what
    if at is None:
        return f"{file_name}: invalid YAML: {text}"
    if other is not None and other.line != at.line:
        if at is context:
            text += f"; noticed at line {other.line + 1}"
        elif exc.context:
            text += f"; {exc.context.removeprefix('while ')} that starts at line {other.line + 1}"
    return f"{file_name}:{at.line + 1}:{at.column + 1}: invalid YAML: {text}"
