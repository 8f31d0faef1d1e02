"""A genome as standalone PyTorch source: the layer classes it uses and a hand-written-looking ``Network``.

The layer classes are copied verbatim from ``search_space/layers.py`` (with the module-level helpers and
constants they reference), so their math is the one the search trained. ``Network`` gives every module the
attribute name the compiler gives it, so a compiled model's state dict loads into it unchanged; with a
:class:`Folding` the folded BatchNorms are left out and the layers they fold into get a bias
(:func:`fold_state_dict` turns the compiled state dict into the folded network's).
"""
from __future__ import annotations

import ast
import inspect
import json
import keyword
import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from search_space import layers
from search_space.compiler import module_name
from search_space.genome import Genome, NodeInfo
from search_space.ops import resolve_padding

MERGES = ("concat", "add")
RESERVED = {"self", "torch", "nn", "F", "math", "x"}


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


# -- the layer library's source ------------------------------------------------------------------
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


# -- one constructor per op ----------------------------------------------------------------------
def call(target: str, *args, **kwargs) -> str:
    """Source of a call; keyword arguments equal to the layer class's defaults are left out."""
    cls = getattr(layers, target, None)
    if inspect.isclass(cls):
        defaults = {k: p.default for k, p in inspect.signature(cls).parameters.items()}
        kwargs = {k: v for k, v in kwargs.items() if defaults.get(k, inspect.Parameter.empty) != v}
    parts = [_literal(a) for a in args] + [f"{k}={_literal(v)}" for k, v in kwargs.items()]
    return f"{target}({', '.join(parts)})"


def _literal(value) -> str:
    """Python source of a constructor argument, strings in double quotes."""
    return json.dumps(value) if isinstance(value, str) else repr(value)


def _conv_padding(a: dict) -> int:
    return resolve_padding("", a["padding"], a["kernel"], a.get("dilation", 1))


# Each takes (attrs, input shape, output shape, bias) and returns the constructor's source, or None when the
# node is the identity at inference and needs no module (norm kind none, act none, dropout 0).
Constructor = Callable[[dict, tuple, tuple, bool], "str | None"]
CONSTRUCTORS: dict[str, Constructor] = {
    "reshape": lambda a, i, o, b: call("Reshape", tuple(o)),
    "flatten": lambda a, i, o, b: call("Flatten"),
    "permute": lambda a, i, o, b: call("Permute", i[0] if len(i) == 1 else math.prod(i[1:]), seed=a["seed"]),
    "conv": lambda a, i, o, b: call("PermutedGroupConv", len(o) - 1, i[0], o[0], a["kernel"], stride=a["stride"],
                                    padding=_conv_padding(a), dilation=a["dilation"], groups=a["groups"],
                                    pattern=a["pattern"], cycle=a["cycle"], bias=b),
    "twist_conv": lambda a, i, o, b: call("TwistConv", len(o) - 1, i[0], o[0], out_size=tuple(o[1:]),
                                          stride=a["stride"], groups=a["groups"], pattern=a["pattern"],
                                          cycle=a["cycle"], iters=a["iters"], bias=b),
    "factorized_conv": lambda a, i, o, b: call("FactorizedConv2d", i[0], o[0], a["kernel"], stride=a["stride"],
                                               padding=_conv_padding(a), mid_channels=a["mid_channels"] or None,
                                               act=a["act"], bias=b),
    "separable_conv": lambda a, i, o, b: call("SeparableConv", len(o) - 1, i[0], o[0], a["kernel"],
                                              stride=a["stride"], padding=_conv_padding(a), bias=b),
    "lowrank_conv": lambda a, i, o, b: call("LowRankConv", len(o) - 1, i[0], o[0], a["kernel"], a["rank"],
                                            stride=a["stride"], padding=_conv_padding(a), bias=b),
    "reduce": lambda a, i, o, b: call("Reduce1x1", len(o) - 1, i[0], o[0], order=a["order"], act=a["act"]),
    "norm": lambda a, i, o, b: None if a["kind"] == "none" else f"nn.BatchNorm{1 if len(o) < 3 else 2}d({o[0]})",
    "act": lambda a, i, o, b: None if a["fn"] == "none" else f"nn.{layers.ACTIVATIONS[a['fn']].__name__}()",
    "dropout": lambda a, i, o, b: f"nn.Dropout({a['p']!r})" if a["p"] else None,
    "pool": lambda a, i, o, b: _pool(a, len(o) - 1),
    "global_pool": lambda a, i, o, b: call("GlobalPool", kind=a["kind"]),
    "dense": lambda a, i, o, b: f"nn.Linear({i[0]}, {o[0]}{'' if b else ', bias=False'})",
}


def _pool(a: dict, dim: int) -> str:
    stride = a["stride"] or a["kernel"]
    kind = {"max": "Max", "avg": "Avg"}[a["kind"]]
    return f"nn.{kind}Pool{dim}d({a['kernel']}{'' if stride == a['kernel'] else f', stride={stride}'})"


def _library_names(source: str) -> set[str]:
    """Layer-library names a constructor's source calls (``PermutedGroupConv(...)`` -> that class)."""
    return {n.id for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Name) and hasattr(layers, n.id)}


# -- BatchNorm folding ---------------------------------------------------------------------------
BN_EPS = 1e-5  # every BatchNorm the layer library builds has torch's default eps


@dataclass(frozen=True)
class Folding:
    """Which BatchNorms fold away; at inference a BN is the per-channel affine map ``y = s*x + t`` with
    ``s = gamma / sqrt(running_var + eps)``, ``t = beta - running_mean * s``.

    ``after``: norm node -> the node it directly follows, whose last op is a conv or linear layer and whose only
    consumer is that norm: ``s*(W x + b) + t = (s W) x + (s b + t)``, W scaled per output channel (this covers
    grouped and gathered convs, and a one-step Twist, whose coordinate coefficients scale with W).
    ``inside``: reduce nodes whose own BN folds: conv-bn-act always; bn-act-conv only when its act is none,
    into the 1x1 conv after it: ``W (s x + t) + b = (W s) x + (W t + b)`` (exact: a 1x1 conv has no padding).
    ``kept``: nodes holding a BN that cannot fold (after an activation, a merge, pooling, an iterated Twist).
    """

    after: dict[str, str] = field(default_factory=dict)
    inside: frozenset[str] = frozenset()
    kept: tuple[str, ...] = ()

    @property
    def producers(self) -> set[str]:
        return set(self.after.values())


def output_layer(node: NodeInfo, inner_folded: bool) -> tuple[str, tuple[str, ...]] | None:
    """Where the conv/linear that makes the node's output lives in its module (a state-dict prefix), with the
    other per-output-channel tensors scaled with it; None when the output is not that layer's (an act)."""
    a = node.attrs
    if node.op == "reduce":
        if a["order"] == "conv-bn-act" and a["act"] != "none":
            return None
        return ("block.0" if a["order"] == "conv" or inner_folded else "block.2"), ()
    if node.op == "twist_conv":
        return ("conv", ("coeff_x", "coeff_y")[:len(node.shape) - 1]) if a["iters"] == 1 else None
    where = {"conv": "conv", "factorized_conv": "horizontal", "separable_conv": "pointwise",
             "lowrank_conv": "mix", "dense": ""}
    return (where[node.op], ()) if node.op in where else None


def plan_folding(genome: Genome) -> Folding:
    """Every BatchNorm that can fold into the conv or linear layer next to it (see :class:`Folding`)."""
    info = genome.analyze()
    inside = frozenset(n for n, i in info.items() if i.op == "reduce" and (
        i.attrs["order"] == "conv-bn-act" or i.attrs["order"] == "bn-act-conv" and i.attrs["act"] == "none"))
    consumers = Counter(p for node in info.values() for p in node.inputs)
    after, kept = {}, []
    for name, node in info.items():
        if node.op == "reduce" and node.attrs["order"] == "bn-act-conv" and name not in inside:
            kept.append(name)
        if node.op != "norm" or node.attrs["kind"] != "batch":
            continue
        source = node.inputs[0]
        if consumers[source] == 1 and output_layer(info[source], source in inside) is not None:
            after[name] = source
        else:
            kept.append(name)
    return Folding(after, inside, tuple(kept))


def folded_elements(genome: Genome, folding: Folding) -> int:
    """Per-sample values the folded BatchNorms no longer scale and shift (one multiply-add each)."""
    info = genome.analyze()
    inner = [info[n].shape if info[n].attrs["order"] == "conv-bn-act" else info[info[n].inputs[0]].shape
             for n in folding.inside]
    return sum(math.prod(info[n].shape) for n in folding.after) + sum(math.prod(s) for s in inner)


def _pop_batchnorm(state: dict, prefix: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Removes a BN's tensors from ``state``; returns its (scale, shift) in float64."""
    gamma, beta, mean, var = (state.pop(f"{prefix}.{k}").double()
                              for k in ("weight", "bias", "running_mean", "running_var"))
    state.pop(f"{prefix}.num_batches_tracked", None)
    scale = gamma / torch.sqrt(var + BN_EPS)
    return scale, beta - mean * scale


def _scale_outputs(state: dict, prefix: str, extra: list[str], scale: torch.Tensor, shift: torch.Tensor) -> None:
    """``W <- s W`` per output channel (and the ``extra`` tensors), ``b <- s b + t`` (b = 0 when absent)."""
    weight = state[f"{prefix}.weight"]
    for key in [f"{prefix}.weight", *extra]:
        tensor = state[key]
        state[key] = (tensor.double() * scale.view(-1, *[1] * (tensor.dim() - 1))).to(tensor.dtype)
    bias = state.get(f"{prefix}.bias")
    bias = torch.zeros(weight.shape[0], dtype=torch.float64) if bias is None else bias.double()
    state[f"{prefix}.bias"] = (bias * scale + shift).to(weight.dtype)


def _join(*parts: str) -> str:
    return ".".join(p for p in parts if p)


def fold_state_dict(genome: Genome, state: dict, folding: Folding) -> dict:
    """The compiled model's state dict turned into the folded network's (math in float64)."""
    info, names = genome.analyze(), module_names(genome)
    out = {k: v.detach().clone() for k, v in state.items()}
    for node in sorted(folding.inside):
        m = names[node]
        if info[node].attrs["order"] == "conv-bn-act":
            _scale_outputs(out, f"{m}.block.0", [], *_pop_batchnorm(out, f"{m}.block.1"))
            continue
        scale, shift = _pop_batchnorm(out, f"{m}.block.0")
        weight, bias = out.pop(f"{m}.block.2.weight"), out.pop(f"{m}.block.2.bias")
        wide = weight.double()
        out[f"{m}.block.0.weight"] = (wide * scale.view(1, -1, *[1] * (wide.dim() - 2))).to(weight.dtype)
        out[f"{m}.block.0.bias"] = (bias.double() + wide.flatten(1) @ shift).to(bias.dtype)
    for norm, producer in folding.after.items():
        scale, shift = _pop_batchnorm(out, names[norm])
        rel, extra = output_layer(info[producer], producer in folding.inside)
        m = names[producer]
        _scale_outputs(out, _join(m, rel), [_join(m, e) for e in extra], scale, shift)
        vertical = f"{m}.vertical"
        if info[producer].op == "factorized_conv" and f"{vertical}.bias" not in out:  # bias=True adds it: zeros
            weight = out[f"{vertical}.weight"]
            out[f"{vertical}.bias"] = torch.zeros(weight.shape[0], dtype=weight.dtype)
    return out


# -- the network class ---------------------------------------------------------------------------
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
        ins = info[node.inputs[0]].shape
        bias = bool(node.attrs.get("bias", True)) or name in folding.producers
        modules = []
        if node.op == "reduce" and name in folding.inside:
            source = call("Reduce1x1", len(node.shape) - 1, ins[0], node.shape[0], order="conv")
            modules.append((attrs[name], source))
            if node.attrs["order"] == "conv-bn-act" and node.attrs["act"] != "none":
                act = attrs[name] + "_act"
                while act in taken:
                    act += "_"
                taken.add(act)
                modules.append((act, CONSTRUCTORS["act"]({"fn": node.attrs["act"]}, ins, node.shape, bias)))
        else:
            if node.op not in CONSTRUCTORS:
                raise ValueError(f"node {name!r}: op {node.op!r} has no constructor in nas.codegen.CONSTRUCTORS")
            source = CONSTRUCTORS[node.op](node.attrs, ins, node.shape, bias)
            if source is None:
                alias[name] = sources[0]
                continue
            modules.append((attrs[name], source))
        for attr, source in modules:
            used_names |= _library_names(source)
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
