"""Genome -> ``torch.fx.GraphModule``: one submodule per node, run in topological order.

``print(model.code)`` shows a forward that reads like a hand-written one.
"""
from __future__ import annotations

import keyword
import operator
import re

import torch
from torch import fx, nn

from search_space import layers
from search_space.genome import Genome
from search_space.ops import get_op

# Names a submodule must not take: a GraphModule's own attributes (``training``, ``forward``, ``code``, ...) and
# ``self``, which the generated forward's local variable of that name would shadow.
_TAKEN = frozenset(dir(fx.GraphModule(nn.Module(), fx.Graph()))) | {"self"}


def module_name(node: str) -> str:
    """A Python identifier for a node name that is no keyword or GraphModule attribute (``conv-1`` -> ``conv_1``)."""
    name = re.sub(r"\W", "_", node)
    clash = not name or name[0].isdigit() or name.startswith("_") or keyword.iskeyword(name) or name in _TAKEN
    return f"n_{name}" if clash else name


def build_model(genome: Genome, init: str = "default", batch: torch.Tensor | None = None) -> fx.GraphModule:
    """Compiles a valid genome; ``init='lsuv'`` needs a data ``batch`` shaped like the dataset's inputs."""
    info = genome.analyze()
    root = nn.Module()
    graph = fx.Graph()
    values: dict[str, fx.Node] = {}
    used: set[str] = set()
    for name, node in info.items():
        if node.op == "input":
            values[name] = graph.placeholder("x")
            continue
        args = [values[p] for p in node.inputs]
        if node.op == "output":
            graph.output(args[0])
            continue
        if node.op == "concat":
            values[name] = graph.call_function(torch.cat, (args, 1))
            continue
        if node.op == "add":
            total = args[0]
            for other in args[1:]:
                total = graph.call_function(operator.add, (total, other))
            values[name] = total
            continue
        ins = [info[p].shape for p in node.inputs]
        module = get_op(node.op).build(node.attrs, ins, node.shape)
        target = module_name(name)
        while target in used:
            target += "_"
        used.add(target)
        root.add_module(target, module)
        values[name] = graph.call_module(target, (args[0],))
    model = fx.GraphModule(root, graph, class_name="GenomeNet")
    if init == "lsuv":
        if batch is None:
            raise ValueError("init='lsuv' needs a data batch")
        layers.lsuv_init(model, batch)
    elif init != "default":
        raise ValueError(f"init must be 'default' or 'lsuv', got {init!r}")
    return model
