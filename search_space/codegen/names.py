"""Attribute names of a compiled genome's modules, shared by the exporter's network writer and weight folding."""
from __future__ import annotations

from search_space.compiler import module_name
from search_space.genome import Genome

MERGES = ("concat", "add")


def module_names(genome: Genome) -> dict[str, str]:
    """Node -> attribute name, exactly as ``build_model`` assigns them (clashes get a trailing ``_``)."""
    names, used = {}, set()
    for name, node in genome.analyze().items():
        if node.op in ("input", "output", *MERGES):
            continue
        target = module_name(name)
        while target in used:
            target += "_"
        used.add(target)
        names[name] = target
    return names


