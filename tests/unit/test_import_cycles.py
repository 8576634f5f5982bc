"""No import cycle in the package: a module's imports (at run time, for annotations only, or
inside a function) never lead back to it. A cycle means two concerns that cannot be read,
tested or replaced one without the other."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "daemon" / "rpi_braze_sync"


def sibling_imports(source: str) -> set[str]:
    """The package's modules that `source` imports, wherever the import statement is."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            found.update([node.module] if node.module else [a.name for a in node.names])
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("rpi_braze_sync."):
            found.add(node.module.split(".")[1])  # type: ignore[union-attr]
        elif isinstance(node, ast.ImportFrom) and node.module == "rpi_braze_sync":
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(
                alias.name.split(".")[1]
                for alias in node.names
                if alias.name.startswith("rpi_braze_sync.")
            )
    return found


def import_graph(package: Path) -> dict[str, set[str]]:
    modules = {path.stem for path in package.glob("*.py")}
    return {
        module: sibling_imports((package / f"{module}.py").read_text()) & modules - {module}
        for module in sorted(modules)
    }


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def test_the_finder_sees_a_cycle_through_annotations_and_functions(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("from .b import x\n")
    (tmp_path / "b.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .c import y\n"
    )
    (tmp_path / "c.py").write_text("def f():\n    from . import a\n")
    (tmp_path / "d.py").write_text("from .a import x\nimport os\n")
    # Imports by the package's absolute name count too.
    (tmp_path / "e.py").write_text("import rpi_braze_sync.f\n")
    (tmp_path / "f.py").write_text("def f():\n    from rpi_braze_sync import e\n")
    assert cycles(import_graph(tmp_path)) == [["a", "b", "c"], ["e", "f"]]


def test_the_package_has_no_import_cycle() -> None:
    graph = import_graph(PACKAGE)
    assert len(graph) > 40  # it read the package
    assert graph["app"]
    assert cycles(graph) == []
