"""The layer library's source for an exported ``model.py``: the classes of ``search_space/layers.py`` a network
uses, copied verbatim with the module-level helpers and constants they reference, so the math is the one trained."""
from __future__ import annotations

import ast
import inspect

from search_space import layers


def layer_library_source(needed: set[str]) -> str:
    """Imports and top-level definitions of ``layers.py`` that ``needed`` reach, in file order."""
    tree = ast.parse(inspect.getsource(layers))
    lines = inspect.getsource(layers).splitlines()
    blocks = []  # (bound names, referenced names, source, is a constant)
    for stmt in tree.body:
        if isinstance(stmt, ast.Expr) or isinstance(stmt, ast.ImportFrom) and stmt.module == "__future__":
            continue
        if isinstance(stmt, (ast.Import, ast.ImportFrom)):
            bound = {(a.asname or a.name).split(".")[0] for a in stmt.names}
        elif isinstance(stmt, (ast.FunctionDef, ast.ClassDef)):
            bound = {stmt.name}
        elif isinstance(stmt, (ast.Assign, ast.AnnAssign)):
            targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
            bound = {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
        else:
            continue
        start = min([stmt.lineno] + [d.lineno for d in getattr(stmt, "decorator_list", [])])
        used = {n.id for n in ast.walk(stmt) if isinstance(n, ast.Name)}
        constant = isinstance(stmt, (ast.Assign, ast.AnnAssign))
        blocks.append((bound, used, "\n".join(lines[start - 1:stmt.end_lineno]), constant))
    wanted, frontier = set(), set(needed) | {"torch", "nn"}
    while frontier:
        name = frontier.pop()
        wanted.add(name)
        for bound, used, _, _ in blocks:
            if name in bound:
                frontier |= used - wanted
    missing = set(needed) - {n for bound, *_ in blocks for n in bound}
    if missing:
        raise ValueError(f"layers.py defines no {sorted(missing)}")
    chosen = [(src, constant) for bound, _, src, constant in blocks if bound & wanted]
    imports = [src for src, _ in chosen if src.startswith(("import", "from"))]
    stdlib = [line for line in imports if not line.split()[1].startswith("torch")]
    torch_imports = [line for line in imports if line not in stdlib]
    text = "\n".join(["from pathlib import Path", *stdlib]) + "\n\n" + "\n".join(torch_imports)
    previous_constant = False
    for src, constant in chosen:
        if src.startswith(("import", "from")):
            continue
        text += ("\n" if constant and previous_constant else "\n\n\n") + src
        previous_constant = constant
    return text




def library_names(source: str) -> set[str]:
    """Layer-library names a constructor's source calls (``PermutedGroupConv(...)`` -> that class)."""
    return {n.id for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Name) and hasattr(layers, n.id)}
