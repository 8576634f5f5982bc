"""The pure core stays pure: modules whose docstring opens with "Pure" import no I/O, clock
or concurrency module, directly or through another module of the package."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "daemon" / "rpi_braze_sync"
FORBIDDEN = {"asyncio", "aiohttp", "sqlite3", "os", "time", "watchdog", "socket", "subprocess"}


def imports(module: str) -> tuple[set[str], set[str]]:
    """(top-level foreign modules, sibling modules) a module imports at run time."""
    foreign: set[str] = set()
    siblings: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            return  # imports for annotations only
        if isinstance(node, ast.Import):
            foreign.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                siblings.update([node.module] if node.module else [a.name for a in node.names])
            elif node.module:
                foreign.add(node.module.split(".")[0])
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse((PACKAGE / f"{module}.py").read_text()))
    return foreign, siblings


def pure_modules() -> list[str]:
    return sorted(
        path.stem for path in PACKAGE.glob("*.py") if path.read_text().startswith('"""Pure')
    )


def test_pure_modules_import_no_io() -> None:
    modules = pure_modules()
    assert {"batching", "ratelimit", "progress", "recordcount"} <= set(modules)
    for module in modules:
        seen, todo, reached = {module}, [module], set()
        while todo:
            foreign, siblings = imports(todo.pop())
            reached |= foreign
            for sibling in siblings - seen:
                seen.add(sibling)
                todo.append(sibling)
        assert not reached & FORBIDDEN, (module, sorted(reached & FORBIDDEN))
