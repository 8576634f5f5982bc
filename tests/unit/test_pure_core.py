"""The pure core stays pure: modules whose docstring opens with "Pure" import no I/O, clock
or concurrency module, directly or through another module of the package. (Import cycles:
test_import_cycles.py.)"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "daemon" / "rpi_braze_sync"
FORBIDDEN = {
    "asyncio", "aiohttp", "sqlite3", "psycopg", "os", "shutil", "tempfile", "io", "time",
    "watchdog", "socket", "select", "selectors", "subprocess", "signal", "threading",
    "multiprocessing", "concurrent", "logging", "http", "urllib", "ssl", "gc",
}  # fmt: skip
# The modules the design names pure (style.md, issue 15): whatever their docstrings say.
MUST_BE_PURE = {
    "mapping", "plan", "fileplan", "identifiers", "mapper", "rowcode", "columnar", "columnforms",
    "columncache", "jsonpieces", "parsers",
    "transforms", "phones", "codec", "batching", "ratelimit", "concurrency", "lease", "filestates",
    "fileorder", "heldrows", "sendjob", "progress", "recordcount", "ratehistory", "hook", "redact",
    "watchrules", "statusdoc", "delta", "deltabody", "deltanewest", "deltaflight", "deltarecord", "deltacolumns",
    "deltasent", "deltaassembly",
    "fileidentity",
}  # fmt: skip


def imports(module: str) -> tuple[set[str], set[str]]:
    """(top-level foreign modules, sibling modules) a module imports at run time, at its top
    or inside a function."""
    foreign: set[str] = set()
    siblings: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            return  # imports for annotations only
        if isinstance(node, ast.Import):
            for alias in node.names:
                top, _, rest = alias.name.partition(".")
                if top == PACKAGE.name and rest:
                    siblings.add(rest.split(".")[0])
                else:
                    foreign.add(top)
        elif isinstance(node, ast.ImportFrom):
            top = (node.module or "").split(".")[0]
            if node.level or top == PACKAGE.name:  # relative, or by the package's own name
                inner = (node.module or "").removeprefix(PACKAGE.name).lstrip(".")
                named = [inner] if inner else [a.name for a in node.names]
                siblings.update(name.split(".")[0] for name in named)
            elif top:
                foreign.add(top)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse((PACKAGE / f"{module}.py").read_text()))
    # A name of the package that is no module of its own (`from . import package_version`)
    # comes from __init__.py.
    return foreign, {s if (PACKAGE / f"{s}.py").exists() else "__init__" for s in siblings}


def pure_modules() -> list[str]:
    return sorted(
        path.stem for path in PACKAGE.glob("*.py") if path.read_text().startswith('"""Pure')
    )


def test_pure_modules_import_no_io() -> None:
    modules = pure_modules()
    assert set(modules) >= MUST_BE_PURE, sorted(MUST_BE_PURE - set(modules))
    for module in modules:
        seen, todo, reached = {module}, [module], set()
        while todo:
            foreign, siblings = imports(todo.pop())
            reached |= foreign
            for sibling in siblings - seen:
                seen.add(sibling)
                todo.append(sibling)
        assert not reached & FORBIDDEN, (module, sorted(reached & FORBIDDEN))
