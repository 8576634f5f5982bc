"""Pure: a FilePlan (fileplan.py) written out as one plain Python function, `map_row`.

Straight-line code, with column indexes and keys inlined and the common text check done in
place. The tests' oracle (tests/oracle.py) walks the same plan generically; they compare both
on random rows of every test mapping.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import orjson

from .chunks import Drop
from .fileplan import MERGE_OBJECTS, UPDATE_EXISTING_ONLY, FilePlan, ValuePlan
from .identifiers import identifier_problem, identity, might_be_unusable
from .mapping import Mapped, Rejection
from .parsers import (
    MAX_STRING_CHARS,
    OPERATIONS,
    SKIP,
    FieldValueError,
    infer_value,
    too_long,
)
from .transforms import MAX_NESTED_BYTES, nested_too_large

RowFunction = Callable[[list[str], int], Mapped | Rejection]
# A row's user and the identifier's keys of its object, or why it is rejected.
Identify = Callable[[list[str], int], tuple[str, dict[str, Any]] | Rejection]
# Beyond this many inferred columns in a nested object, the row function loops over them
# instead of writing each out: compiling held about 30 KB a line (300 MB for 10,000 columns).
UNROLLED_COLUMNS = 200


class _Writer:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.names: dict[str, Any] = {}

    def emit(self, depth: int, line: str) -> None:
        self.lines.append("    " * depth + line)

    def constant(self, value: Any) -> str:
        """A name in the generated function's globals, bound to `value`."""
        name = f"K{len(self.names)}"
        self.names[name] = value
        return name

    def bad(self, depth: int, drop_name: str, reject: str | None, show_value: bool) -> None:
        """A bad value, its text in `_v` and its reason in `_r`: reject the row or drop it."""
        if reject is not None:
            tail = ' + ": " + repr(_v) + " is " + _r' if show_value else ' + ": " + _r'
            self.emit(depth, f"return Rejection(line_no, {self.constant(reject)}{tail})")
        else:
            self.emit(depth, "if drops is None: drops = []")
            self.emit(depth, f"drops.append(Drop(line_no, {self.constant(drop_name)}, _v, _r))")

    def value(
        self, depth: int, v: ValuePlan, store: Callable[[str], str], skip_none: bool = False
    ) -> None:
        """The plan's cell converted; `store(expr)` is the statement that keeps it."""
        d, index, kind = depth, v.column, v.kind
        assert index is not None

        def bad(at: int) -> None:
            self.bad(at, v.name, v.reject, v.show_value)

        if kind == "text":  # the common case: text within Braze's 255 characters
            self.emit(d, f"v = cells[{index}].strip()")
            self.emit(d, "if v:")
            self.emit(d + 1, f"if len(v) <= {MAX_STRING_CHARS}: {store('v')}")
            self.emit(d + 1, "else:")
            self.emit(d + 2, f"_v = v; _r = {self.constant(too_long)}(len(v))")
            bad(d + 2)
        elif kind == "parse":
            parse = self.constant(OPERATIONS[v.rule.recipe.type].scalar)
            self.emit(d, f"v = cells[{index}].strip()")
            self.emit(d, "if v:")
            self.emit(d + 1, f"try: x = {parse}(v)")
            self.emit(d + 1, "except FieldValueError as e:")
            self.emit(d + 2, "_v = v; _r = str(e)")
            bad(d + 2)
            self.emit(d + 1, f"else: {store('x')}")
        else:
            convert = self.constant(v.converter())
            if v.region_column is not None:  # a phone, and the cell naming its region
                call = f"{convert}(cells[{index}], cells[{v.region_column}])"
            else:
                call = f"{convert}(cells[{index}])"
            self.emit(d, f"try: x = {call}")
            self.emit(d, "except FieldValueError as e:")
            self.emit(d + 1, f"_v = cells[{index}].strip(); _r = str(e)")
            bad(d + 1)
            self.emit(d, "else:")
            keep = "x is not SKIP and x is not None" if skip_none else "x is not SKIP"
            self.emit(d + 1, f"if {keep}: {store('x')}")


def compile_identify(
    plan: FilePlan,
) -> Callable[[list[str], int], tuple[str, dict[str, Any]] | Rejection]:
    """The identity of a row (its user, and the identifier's part of the object)."""
    kind = plan.identifier_kind
    values = [(v, v.column, v.fixed, v.converter()) for v in plan.identifier]

    def identify(cells: list[str], line_no: int) -> tuple[str, dict[str, Any]] | Rejection:
        texts = []
        for v, index, fixed, convert in values:
            if index is None:
                value = fixed
            else:
                try:
                    value = convert(cells[index])
                except FieldValueError as exc:
                    return Rejection(line_no, f"{v.name}: {cells[index].strip()!r} is {exc}")
            if value is SKIP or value is None or value == "":
                return Rejection(line_no, f"{v.name} is empty")
            text = str(value)
            problem = identifier_problem(v.name, text, kind == "external_id")
            if problem is not None:
                return Rejection(line_no, problem)
            texts.append(text)
        if kind == "user_alias":
            name, label = texts
            alias = {"user_alias": {"alias_name": name, "alias_label": label}}
            return identity(kind, [label, name]), alias
        return identity(kind, texts), {kind: texts[0]}

    return identify


def compile_row_function(plan: FilePlan) -> RowFunction:
    """The plan as one generated function (cells, line_no) -> Mapped | Rejection."""
    w = _Writer()
    w.emit(0, "def map_row(cells, line_no):")
    w.emit(1, f"if len(cells) != {plan.width}:")
    w.emit(
        2,
        "return Rejection(line_no, f'the row has {len(cells)} fields where the header has"
        f" {plan.width}')",
    )
    index = plan.id_column_as_written
    if index is not None:  # the usual identifier, inlined
        w.emit(1, f"user = cells[{index}].strip()")
        w.emit(1, "if not user: return Rejection(line_no, 'external_id is empty')")
        w.emit(1, f"if {w.constant(might_be_unusable)}(user) and (")
        w.emit(2, f"_r := {w.constant(identifier_problem)}('external_id', user, True)")
        w.emit(1, "): return Rejection(line_no, _r)")
        w.emit(1, "a = {'external_id': user}")
    else:
        w.emit(1, f"identity = {w.constant(compile_identify(plan))}(cells, line_no)")
        w.emit(1, "if identity.__class__ is Rejection: return identity")
        w.emit(1, "user, a = identity")
    w.emit(1, "drops = None")
    w.emit(1, "merge = False")

    for v in plan.fields:
        key = w.constant(v.name)
        w.value(1, v, lambda x, key=key: f"a[{key}] = {x}")  # type: ignore[misc]
    if plan.fixed:
        w.emit(1, f"a.update({w.constant(plan.fixed)})")

    operations_of = Counter(array.name for array in plan.arrays)
    for array in plan.arrays:
        name, v = array.name, array.value
        slot, operation = w.constant(name), w.constant(array.op)

        def append(
            x: str,
            slot: str = slot,
            operation: str = operation,
            alone: bool = operations_of[name] == 1,
        ) -> str:
            if alone:  # the only value of this array: no need to merge with others
                return f"a[{slot}] = {{{operation}: [{x}]}}"
            return f"a.setdefault({slot}, {{}}).setdefault({operation}, []).append({x})"

        if v.column is None:
            w.emit(1, append(w.constant(v.fixed)))
        else:
            w.value(1, v, append, skip_none=True)

    for nested in plan.nested:
        w.emit(1, "o = {}")
        inferred = nested.inferred
        if len(inferred) > UNROLLED_COLUMNS:
            w.emit(1, f"for k, i in {w.constant(inferred)}:")
            w.emit(2, "v = cells[i].strip()")
            w.emit(2, "if v:")
            w.emit(3, "try: o[k] = infer_value(v)")
            w.emit(3, "except FieldValueError as e:")
            w.emit(4, "_v = v; _r = str(e)")
            w.emit(4, "if drops is None: drops = []")
            w.emit(4, f"drops.append(Drop(line_no, {w.constant(nested.name)} + '.' + k, _v, _r))")
            inferred = ()
        for key, index in inferred:
            w.emit(1, f"v = cells[{index}].strip()")
            w.emit(1, "if v:")
            w.emit(2, f"try: o[{w.constant(key)}] = infer_value(v)")
            w.emit(2, "except FieldValueError as e:")
            w.emit(3, "_v = v; _r = str(e)")
            w.bad(3, f"{nested.name}.{key}", None, False)
        for key, v in nested.explicit:
            slot = w.constant(key)
            if v.column is None:
                w.emit(1, f"o[{slot}] = {w.constant(v.fixed)}")
            else:
                w.value(1, v, lambda x, slot=slot: f"o[{slot}] = {x}")  # type: ignore[misc]
        w.emit(1, "if o:")
        w.emit(2, "s = len(dumps(o))")
        w.emit(2, f"if s > {MAX_NESTED_BYTES}:")  # Braze would drop it silently
        w.emit(3, "_v = ''; _r = nested_too_large(s)")
        w.bad(3, nested.name, None, False)
        w.emit(2, "else:")
        w.emit(3, f"a[{w.constant(nested.name)}] = o")
        if nested.merge:
            w.emit(3, "merge = True")
    w.emit(1, f"if merge: a[{MERGE_OBJECTS!r}] = True")
    w.emit(1, f"a[{UPDATE_EXISTING_ONLY!r}] = {plan.update_existing_only!r}")
    w.emit(1, "return Mapped(user, a, drops)")

    namespace: dict[str, Any] = {
        **w.names,
        "Rejection": Rejection,
        "Mapped": Mapped,
        "Drop": Drop,
        "SKIP": SKIP,
        "FieldValueError": FieldValueError,
        "infer_value": infer_value,
        "dumps": orjson.dumps,
        "nested_too_large": nested_too_large,
    }
    source = "\n".join(w.lines)
    exec(compile(source, "<row function>", "exec"), namespace)  # our own text, built above
    function: RowFunction = namespace["map_row"]
    function.__doc__ = source  # readable in a debugger or a failing test
    return function
