"""A genome as a hand-written-looking ``Network`` class, and the whole standalone ``model.py`` around it.

``Network`` gives every module the attribute name the compiler gives it, so a compiled model's state dict loads into
it unchanged; with a :class:`Folding` the folded BatchNorms are left out and the layers they fold into get a bias.
Each node's constructor source comes from its op's registry entry (``Op.source``).
"""
from __future__ import annotations

import keyword
from collections import Counter

from search_space.codegen.folding import Folding
from search_space.codegen.library import layer_library_source, library_names
from search_space.codegen.names import MERGES, module_names
from search_space.compiler import module_name
from search_space.genome import Genome, NodeInfo
from search_space.ops import get_op, layer_call

RESERVED = {"self", "torch", "nn", "F", "math", "x"}


class _Variables:
    """Names for the values in ``forward``: a chain keeps its variable, a branch gets one named after it."""

    def __init__(self, consumers: Counter):
        self.consumers, self.pending = consumers, Counter(consumers)
        self.holds: dict[str, str] = {}   # variable -> value node it holds
        self.of: dict[str, str] = {}      # value node -> variable

    def free(self, name: str) -> bool:
        return name not in self.holds or self.pending[self.holds[name]] == 0

    def assign(self, node: str, sources: list[str], merge: bool) -> str:
        for s in sources:
            self.pending[s] -= 1
        if not sources:
            name = "x"
        elif not merge and self.consumers[sources[0]] == 1:
            name = self.of[sources[0]]
        elif merge and self.free("x"):
            name = "x"
        else:
            name = self._fresh(node)
        self.holds[name], self.of[node] = node, name
        return name

    def _fresh(self, node: str) -> str:
        full = module_name(node).lower()
        for candidate in (full.split("_")[0], full):
            if candidate.isidentifier() and not keyword.iskeyword(candidate) and candidate not in RESERVED \
                    and self.free(candidate):
                return candidate
        n = 2
        while not self.free(f"{full}{n}"):
            n += 1
        return f"{full}{n}"


def _attribute(attr: str) -> str:
    return f"self.{attr}" if attr.isidentifier() and not keyword.iskeyword(attr) else f"getattr(self, {attr!r})"


def _shape_comment(shape: tuple) -> str:
    return "# (N, " + ", ".join(map(str, shape)) + ")"


def network_source(genome: Genome, folding: Folding, doc: str = "") -> tuple[str, set[str]]:
    """The ``Network`` class's source and the layer-library names it uses; ``folding`` says which norm nodes
    vanish, which layers gain a bias and which ``reduce`` nodes lose their inner BatchNorm."""
    info = genome.analyze()
    attrs = module_names(genome)
    alias: dict[str, str] = {}       # node that is the identity at inference -> the node whose value it passes on
    init: list[str] = []
    steps: list[tuple[NodeInfo, list[str]]] = []  # (node, modules it runs, in order)
    used_names: set[str] = set()
    taken = set(attrs.values())
    for name, node in info.items():
        sources = [alias.get(p, p) for p in node.inputs]
        if node.op == "input" or node.op == "output" or node.op in MERGES:
            steps.append((node, []))
            continue
        if name in folding.after:
            alias[name] = sources[0]
            continue
        ins = [info[p].shape for p in node.inputs]
        bias = bool(node.attrs.get("bias", True)) or name in folding.producers
        modules = []
        if node.op == "reduce" and name in folding.inside:
            source = layer_call("Reduce1x1", len(node.shape) - 1, ins[0][0], node.shape[0], order="conv")
            modules.append((attrs[name], source))
            if node.attrs["order"] == "conv-bn-act" and node.attrs["act"] != "none":
                act = attrs[name] + "_act"
                while act in taken:
                    act += "_"
                taken.add(act)
                modules.append((act, get_op("act").source({"fn": node.attrs["act"]}, ins, node.shape, bias)))
        else:
            source = get_op(node.op, name).source(node.attrs, ins, node.shape, bias)
            if source is None:
                alias[name] = sources[0]
                continue
            modules.append((attrs[name], source))
        for attr, source in modules:
            used_names |= library_names(source)
            init.append(f"        {_attribute(attr)} = {source}")
        steps.append((node, [attr for attr, _ in modules]))
    consumers = Counter(alias.get(p, p) for node, _ in steps for p in node.inputs)
    variables = _Variables(consumers)
    body: list[tuple[str, str]] = []
    for node, modules in steps:
        sources = [variables.of[alias.get(p, p)] for p in node.inputs]
        if node.op == "input":
            variables.assign(node.name, [], False)
            continue
        if node.op == "output":
            body.append((f"return {sources[0]}", ""))
            continue
        raw = [alias.get(p, p) for p in node.inputs]
        if node.op in MERGES:
            expr = f"torch.cat([{', '.join(sources)}], dim=1)" if node.op == "concat" else " + ".join(sources)
        else:
            expr = sources[0]
            for attr in modules:
                expr = f"{_attribute(attr)}({expr})"
        target = variables.assign(node.name, raw, node.op in MERGES)
        body.append((f"{target} = {expr}", _shape_comment(node.shape)))
    width = max(len(code) for code, _ in body)
    forward = [f"        {code.ljust(width)}  {comment}".rstrip() for code, comment in body]
    in_shape, out_shape = genome.input_shape, info[genome.output_node].shape
    lines = ["class Network(nn.Module):", f'    """{doc or genome.summary()}"""', "",
             "    def __init__(self):", "        super().__init__()", *init, "",
             "    def forward(self, x: torch.Tensor) -> torch.Tensor:",
             f'        """{_shape_comment(in_shape)[2:]} inputs -> {_shape_comment(out_shape)[2:]} logits."""',
             *forward]
    return "\n".join(lines), used_names


LOAD_SOURCE = '''
def load(weights_path: str = "weights.pt") -> nn.Module:
    """The trained network in eval mode; a relative path not found here is looked up next to this file."""
    path = Path(weights_path)
    if not path.is_absolute() and not path.exists():
        path = Path(__file__).resolve().parent / path
    net = Network()
    net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return net.eval()
'''


def model_source(genome: Genome, folding: Folding, doc: str, header: str) -> str:
    """The whole ``model.py``: header docstring, imports, layer classes, ``Network`` and ``load``."""
    network, needed = network_source(genome, folding, doc=doc)
    library = layer_library_source(needed)
    return "\n".join([f'"""{header}"""', "from __future__ import annotations", "", library, "", "", network, "",
                      LOAD_SOURCE])
