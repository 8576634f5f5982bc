"""Pure: turn a mapping fitted to one file's header into one plain Python function.

The generic row loop (`RowMapper.map_row_generic`) walks rule tuples and calls a function per
value; this writes the same steps out as straight-line code, with column indexes and keys
inlined and the common text check done in place. The generic loop stays the reference: the
tests compare both on random rows.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import orjson

from .transforms import (
    MAX_NESTED_BYTES,
    MAX_STRING_CHARS,
    SKIP,
    FieldValueError,
    check_length,
    infer_value,
    nested_too_large,
)

MAX_EXTERNAL_ID_BYTES = 987
# 4 bytes a character at most: an id this short is always within Braze's 987 bytes.
ID_CHARS_ALWAYS_SHORT = MAX_EXTERNAL_ID_BYTES // 4

if TYPE_CHECKING:
    from .mapping import Mapped, Rejection, RowMapper, ValueRule

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")  # Unicode's Cc: C0, DEL and C1


def control_character(identifier: str) -> str | None:
    """Why an identifier cannot be used, if it holds a control character (a NUL, a tab, a
    newline...): Braze would keep it as a different user. Printable text, nearly every value,
    is answered by str.isprintable in C; only the others are searched."""
    if identifier.isprintable():
        return None
    found = _CONTROL.search(identifier)
    if found is None:
        return None  # other non-printables (a no-break space...) are ordinary characters
    code, at = ord(found.group()), found.start() + 1
    return f"holds a control character (U+{code:04X} at character {at})"


RowFunction = Callable[[list[str], int], "Mapped | Rejection"]
Reject = tuple[str, bool] | None  # (message prefix, whether the bad text is shown), or drop


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

    def bad(self, depth: int, drop_name: str, reject: Reject) -> None:
        """A bad value, its text in `_v` and its reason in `_r`: reject the row or drop it."""
        if reject is not None:
            prefix, with_value = reject
            tail = ' + ": " + repr(_v) + " is " + _r' if with_value else ' + ": " + _r'
            self.emit(depth, f"return Rejection(line_no, {self.constant(prefix)}{tail})")
        else:
            self.emit(depth, "if drops is None: drops = []")
            self.emit(depth, f"drops.append(Drop(line_no, {self.constant(drop_name)}, _v, _r))")

    def value(
        self,
        depth: int,
        rule: ValueRule,
        index: int,
        store: Callable[[str], str],
        drop_name: str,
        reject: Reject,
        skip_none: bool = False,
    ) -> None:
        """Column `index` through `rule`; `store(expr)` is the statement that keeps it."""
        d = depth
        if rule.plain is check_length:  # the common case: text within Braze's 255 characters
            self.emit(d, f"v = cells[{index}].strip()")
            self.emit(d, "if v:")
            self.emit(d + 1, f"if len(v) <= {MAX_STRING_CHARS}: {store('v')}")
            self.emit(d + 1, "else:")
            self.emit(
                d + 2, f'_v = v; _r = f"longer than {MAX_STRING_CHARS} characters ({{len(v)}})"'
            )
            self.bad(d + 2, drop_name, reject)
        elif rule.plain is not None:
            parse = self.constant(rule.plain)
            self.emit(d, f"v = cells[{index}].strip()")
            self.emit(d, "if v:")
            self.emit(d + 1, f"try: x = {parse}(v)")
            self.emit(d + 1, "except FieldValueError as e:")
            self.emit(d + 2, "_v = v; _r = str(e)")
            self.bad(d + 2, drop_name, reject)
            self.emit(d + 1, f"else: {store('x')}")
        else:
            if rule.region_index is not None:  # a phone, and the cell naming its region
                convert = self.constant(rule.convert_in_region)
                call = f"{convert}(cells[{index}], cells[{rule.region_index}])"
            else:
                call = f"{self.constant(rule.convert)}(cells[{index}])"
            self.emit(d, f"try: x = {call}")
            self.emit(d, "except FieldValueError as e:")
            self.emit(d + 1, f"_v = cells[{index}].strip(); _r = str(e)")
            self.bad(d + 1, drop_name, reject)
            self.emit(d, "else:")
            keep = "x is not SKIP and x is not None" if skip_none else "x is not SKIP"
            self.emit(d + 1, f"if {keep}: {store('x')}")


def compile_row_function(mapper: RowMapper) -> RowFunction:
    """The generated equivalent of `mapper.map_row_generic`."""
    from .chunks import Drop
    from .mapping import Mapped, Rejection  # mapping imports this module

    w = _Writer()
    w.emit(0, "def map_row(cells, line_no):")
    w.emit(1, f"if len(cells) != {mapper.width}:")
    w.emit(
        2,
        "return Rejection(line_no, f'the row has {len(cells)} fields where the header has"
        f" {mapper.width}')",
    )
    index = mapper.plain_external_id_column()
    if index is not None:  # the usual identifier, inlined
        w.emit(1, f"user = cells[{index}].strip()")
        w.emit(1, "if not user: return Rejection(line_no, 'external_id is empty')")
        limit = MAX_EXTERNAL_ID_BYTES  # only long ids can be over it: bytes counted for those
        w.emit(1, f"if len(user) > {ID_CHARS_ALWAYS_SHORT} and len(user.encode()) > {limit}:")
        w.emit(2, f"return Rejection(line_no, 'external_id is longer than {limit} bytes')")
        w.emit(1, "if not user.isprintable() and (_r := control_character(user)):")
        w.emit(2, "return Rejection(line_no, 'external_id ' + _r)")
        w.emit(1, "a = {'external_id': user}")
    else:
        w.emit(1, f"identity = {w.constant(mapper.identify)}(cells, line_no)")
        w.emit(1, "if identity.__class__ is Rejection: return identity")
        w.emit(1, "user, a = identity")
    w.emit(1, "drops = None")
    w.emit(1, "merge = False")

    for rule, index, _ in mapper.fields:
        assert index is not None
        reject: Reject = (rule.name, True) if rule.reject_invalid or rule.required else None
        key = w.constant(rule.name)

        def assign(x: str, key: str = key) -> str:
            return f"a[{key}] = {x}"

        w.value(1, rule, index, assign, rule.name, reject)
    if mapper.fixed:
        w.emit(1, f"a.update({w.constant(mapper.fixed)})")

    operations_of = Counter(name for name, _, _ in mapper.arrays)
    for name, op, (rule, index, fixed) in mapper.arrays:
        array, operation = w.constant(name), w.constant(op)

        def append(
            x: str,
            array: str = array,
            operation: str = operation,
            alone: bool = operations_of[name] == 1,
        ) -> str:
            if alone:  # the only value of this array: no need to merge with others
                return f"a[{array}] = {{{operation}: [{x}]}}"
            return f"a.setdefault({array}, {{}}).setdefault({operation}, []).append({x})"

        if index is None:
            if fixed is not SKIP and fixed is not None:
                w.emit(1, append(w.constant(fixed)))
            continue
        reject = (f"{name}.{op}", False) if rule.reject_invalid else None
        w.value(1, rule, index, append, name, reject, skip_none=True)

    for name, merge_this, inferred, explicit in mapper.nested:
        w.emit(1, "o = {}")
        for key, index in inferred:
            w.emit(1, f"v = cells[{index}].strip()")
            w.emit(1, "if v:")
            w.emit(2, f"try: o[{w.constant(key)}] = infer_value(v)")
            w.emit(2, "except FieldValueError as e:")
            w.emit(3, "_v = v; _r = str(e)")
            w.bad(3, f"{name}.{key}", None)
        for key, (rule, index, fixed) in explicit:
            slot = w.constant(key)
            if index is None:
                if fixed is not SKIP:
                    w.emit(1, f"o[{slot}] = {w.constant(fixed)}")
                continue
            reject = (f"{name}.{key}", False) if rule.reject_invalid else None

            def put(x: str, slot: str = slot) -> str:
                return f"o[{slot}] = {x}"

            w.value(1, rule, index, put, f"{name}.{key}", reject)
        w.emit(1, "if o:")
        w.emit(2, "s = len(dumps(o))")
        w.emit(2, f"if s > {MAX_NESTED_BYTES}:")  # Braze would drop it silently
        w.emit(3, "_v = ''; _r = nested_too_large(s)")
        w.bad(3, name, None)
        w.emit(2, "else:")
        w.emit(3, f"a[{w.constant(name)}] = o")
        if merge_this:
            w.emit(3, "merge = True")
    w.emit(1, "if merge: a['_merge_objects'] = True")
    w.emit(1, f"a['_update_existing_only'] = {mapper.update_existing_only!r}")
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
        "control_character": control_character,
    }
    source = "\n".join(w.lines)
    exec(compile(source, "<row function>", "exec"), namespace)  # our own text, built above
    function: RowFunction = namespace["map_row"]
    function.__doc__ = source  # readable in a debugger or a failing test
    return function
