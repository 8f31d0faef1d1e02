"""The layout's rules, read from the source with ``ast``: which package may import which, no cycles, small modules.

Every import counts, also one inside a function (a lazy import is still a dependency). The rules are those the
packages' docstrings and README's "Code map" state; a change that breaks one fails here, not in a review.
"""
from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx
import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("search_space", "evaluators", "reports", "nas")
MAX_LINES = 350

# package -> the packages of ours it may import (itself always allowed); "nas.x" means the subpackage and below
MAY_IMPORT = {
    "nas": ("search_space", "evaluators"),  # nas/__init__, nas/errors.py
    "search_space": (),
    "evaluators": ("search_space",),
    "reports": ("search_space", "evaluators", "nas.errors", "nas.study", "nas.scheduling", "nas.search"),
    "nas.study": ("search_space", "evaluators", "nas.errors", "nas.search", "nas.scheduling"),
    "nas.search": ("search_space", "nas.errors", "nas.study.config"),
    "nas.scheduling": ("nas.study.config", "nas.study.records", "nas.study.ledger"),
    "nas.execution": ("search_space", "evaluators", "nas.errors", "nas.study", "nas.search", "nas.scheduling"),
    "nas.export": ("search_space", "evaluators", "nas.errors", "nas.study"),
    "nas.cli": ("search_space", "evaluators", "reports", "nas"),
}
FORBIDDEN = {"nas.execution.ray": ("nas.execution.local",)}


def module_files() -> dict[str, Path]:
    files = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return files


MODULES = module_files()


def ours(name: str) -> str | None:
    """The module of ours that ``name`` is, or is inside (a name imported from a module)."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def imports_of(module: str, top_level_only: bool = False) -> set[str]:
    """Modules of ours that ``module`` imports (``from pkg import submodule`` counts the submodule)."""
    tree = ast.parse(MODULES[module].read_text())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found |= {ours(alias.name) for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found |= {ours(f"{node.module}.{alias.name}") for alias in node.names}
    return found - {None, module}


def rule_for(module: str) -> str:
    return max((p for p in MAY_IMPORT if module == p or module.startswith(p + ".")), key=len)


def allowed(target: str, prefixes: tuple[str, ...]) -> bool:
    return any(target == p or target.startswith(p + ".") for p in prefixes)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_each_module_imports_only_what_its_package_may(module):
    package = rule_for(module)
    broken = sorted(t for t in imports_of(module) if not allowed(t, (package, *MAY_IMPORT[package])))
    broken += sorted(t for p, banned in FORBIDDEN.items() if allowed(module, (p,))
                     for t in imports_of(module) if allowed(t, banned))
    assert not broken, f"{module} ({package}) may not import {broken}"


def test_no_import_cycles():
    graph = nx.DiGraph()
    for module in MODULES:
        graph.add_node(module)
        # a package's __init__ importing its own submodules is how it re-exports them, not a cycle
        graph.add_edges_from((module, t) for t in imports_of(module, top_level_only=True)
                             if not t.startswith(module + "."))
    assert list(nx.simple_cycles(graph)) == []


@pytest.mark.parametrize("module", sorted(MODULES))
def test_modules_stay_small(module):
    lines = len(MODULES[module].read_text().splitlines())
    assert lines <= MAX_LINES, f"{MODULES[module].relative_to(ROOT)} has {lines} lines; split it along its seams"


def test_the_rules_see_the_imports():
    """The walker itself: known arrows are found, so an empty result above means something."""
    assert "search_space.ops.base" in imports_of("search_space.ops.conv")
    assert "nas.study.plan" in imports_of("nas.execution.local")
    assert "nas.cli.run" in imports_of("nas.cli.main")  # from nas.cli import run
    assert not allowed("nas.execution.local", MAY_IMPORT["nas.study"])
