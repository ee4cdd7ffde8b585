"""The package's import graph (module-level imports, read from the source) has no cycle."""

from __future__ import annotations

import ast
import configparser
import importlib.util
import pkgutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def modules() -> dict[str, Path]:
    """Every module of every package setup.cfg ships, found without importing the optional ones."""
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    packages = config["options"]["packages"].split()
    found = {}
    for package in packages:
        (location,) = importlib.util.find_spec(package).submodule_search_locations  # imports its parent only
        found[package] = Path(location) / "__init__.py"
        for info in pkgutil.iter_modules([location]):
            if not info.ispkg and info.name != "__main__":
                found[f"{package}.{info.name}"] = Path(location) / f"{info.name}.py"
    return found


def imported(path: Path, known: dict[str, Path]) -> set[str]:
    """The package's modules ``path`` imports when it is imported (not inside functions)."""
    out: set[str] = set()

    def visit(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, ast.Import):
                out.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                out.update(f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in known else node.module
                           for a in node.names)
            elif isinstance(node, (ast.If, ast.Try)):
                visit(node.body)
                visit(node.orelse)
                for handler in getattr(node, "handlers", []):
                    visit(handler.body)

    visit(ast.parse(path.read_text()).body)
    return {name for name in out if name in known}


def cycle(graph: dict[str, set[str]]) -> list[str]:
    """One cycle of ``graph`` as a path of modules, or [] when there is none."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(module: str) -> list[str]:
        state[module] = 1
        path.append(module)
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                return path[path.index(target):] + [target]
            if target not in state and (found := visit(target)):
                return found
        state[module] = 2
        path.pop()
        return []

    for module in sorted(graph):
        if module not in state and (found := visit(module)):
            return found
    return []


def test_the_package_imports_no_circle():
    known = modules()
    graph = {name: imported(path, known) - {name} for name, path in known.items()}
    assert {"gradleak.attacks.dlg", "gradleak.defenses.secagg.client", "gradleak.flower.mods"} <= set(graph)
    assert sum(map(len, graph.values())) > 300  # the graph was read, not empty
    assert cycle(graph) == []


def test_a_planted_circle_is_found():
    assert cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
