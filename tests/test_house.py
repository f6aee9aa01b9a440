"""The house's rules, read from the code: floors, no import circle, modules of one idea.

- ``serving`` (the floor without torch) imports nothing from ``training``, the command
  (``cacaomap``), torch or lightning; ``training`` imports nothing from the command.
- No import circle between the project's modules (imports inside functions count: a
  circle hidden in a function is a circle all the same).
- No module over 500 lines.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.service_helpers import REPO

PACKAGES = ("cacaomap", "training", "serving")
MAX_LINES = 500


def modules() -> dict[str, Path]:
    """Every module of the packages, by dotted name."""
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            parts = path.relative_to(REPO).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def imports_of(path: Path, known: set[str]) -> set[str]:
    """The project modules (and top-level packages) a file imports, anywhere in it."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
            names |= {f"{node.module}.{a.name}" for a in node.names
                      if f"{node.module}.{a.name}" in known}
    return names


def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    return {name: {n for n in imports_of(path, known) if n in known and n != name}
            for name, path in mods.items()}


@pytest.mark.parametrize(("floor", "forbidden"), [
    ("serving", ("training", "cacaomap", "torch", "lightning", "torchgeo")),
    ("training", ("cacaomap",)),
])
def test_a_floor_imports_nothing_from_above(floor: str, forbidden: tuple[str, ...]) -> None:
    mods = modules()
    known = set(mods)
    wrong = {name: sorted(n for n in imports_of(path, known)
                          if n.split(".")[0] in forbidden)
             for name, path in mods.items() if name.split(".")[0] == floor}
    assert {k: v for k, v in wrong.items() if v} == {}


def test_no_import_circle() -> None:
    edges = graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles: list[list[str]] = []

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in edges[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for node in edges:
        if node not in index:
            visit(node)
    assert circles == []


def test_no_module_over_500_lines() -> None:
    long = {name: n for name, path in modules().items()
            if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert long == {}
