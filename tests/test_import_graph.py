"""The package's import graph has no circle: errors and helpers sit below the registries,
and configuration imports the registries, never the other way round."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("harness", "analysis")
REGISTRIES = ("harness.data", "harness.models", "harness.optim", "harness.samplers", "harness.sharpness",
              "harness.theory", "harness.errors")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _runtime_imports(path: Path, modules: set[str]) -> set[str]:
    """Every project module imported anywhere in the file (function bodies too), except
    under ``if TYPE_CHECKING:``, which never runs."""
    tree = ast.parse(path.read_text())
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(child) for stmt in node.body for child in ast.walk(stmt))
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        for name in names:
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name:
                found.add(name)
    return found


def _graph() -> dict[str, set[str]]:
    files = {_module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}
    modules = set(files)
    graph = {name: _runtime_imports(path, modules) - {name} for name, path in files.items()}
    for name in modules:  # a package's __init__ runs before its submodules: that edge is no circle
        graph[name] = {dep for dep in graph[name] if not name.startswith(dep + ".")}
    return graph


def test_registries_never_import_configuration():
    graph = _graph()
    for name, deps in graph.items():
        if name.startswith(REGISTRIES):
            assert "harness.config" not in deps, f"{name} imports harness.config"


def test_import_graph_has_no_cycle():
    graph = _graph()
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                pytest.fail("import cycle: " + " -> ".join(path[path.index(dep):] + [node, dep]) if dep in path
                            else f"import cycle through {node} -> {dep}")
            if dep not in state:
                visit(dep, path + [node])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [])
