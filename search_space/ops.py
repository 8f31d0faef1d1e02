"""The op registry: for every node kind, its attributes, shape rule, parameter and FLOP count, and module.

FLOPs are multiply-adds of convolutions and dense layers (what ``torch.utils.flop_counter`` counts, halved);
element-wise work (norms, activations, pooling, Twist's coordinate products) is not counted.
"""
from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

from torch import nn

from search_space import layers
from search_space.errors import GenomeError

Shape = tuple[int, ...]


@dataclass(frozen=True)
class Attr:
    """One typed attribute of an op: its kind, default (``None`` = required) and allowed values."""

    kind: type
    default: Any = None
    choices: tuple | None = None
    minimum: float | None = None
    maximum: float | None = None


class Op(ABC):
    """A node kind. ``arity`` is 0 (input), 1, or -1 (a merge of two or more)."""

    name: str = ""
    arity: int = 1
    attrs: dict[str, Attr] = {}

    @abstractmethod
    def out_shape(self, node: str, a: dict, ins: list[Shape]) -> Shape:
        """The output shape, or a GenomeError naming the node and attribute that make it impossible."""

    def params(self, a: dict, ins: list[Shape], out: Shape) -> int:
        return 0

    def flops(self, a: dict, ins: list[Shape], out: Shape) -> int:
        return 0

    def build(self, a: dict, ins: list[Shape], out: Shape) -> nn.Module | None:
        return None

    def short(self, a: dict) -> str:
        return self.name


REGISTRY: dict[str, Op] = {}


def register(cls: type[Op]) -> type[Op]:
    REGISTRY[cls.name] = cls()
    return cls


def get_op(name: str, node: str = "?") -> Op:
    """The op called ``name``; an unknown name is a GenomeError that lists the valid ones."""
    if not isinstance(name, str) or name not in REGISTRY:
        raise GenomeError(f"node {node!r}: unknown op {name!r}; valid ops: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name]


def spatial_dims(node: str, shape: Shape, attr: str = "input") -> int:
    """1 for a (C, L) map, 2 for (C, H, W); a flat input is an error for spatial ops."""
    if len(shape) not in (2, 3):
        raise GenomeError(f"node {node!r}: {attr} needs a (C, L) or (C, H, W) map, got shape {list(shape)}; "
                          "add a reshape node first")
    return len(shape) - 1


def resolve_padding(node: str, padding: Any, kernel: int, dilation: int = 1) -> int:
    """``same`` (odd kernels), ``valid`` or an explicit integer."""
    if padding == "valid":
        return 0
    if padding == "same":
        if kernel % 2 == 0:
            raise GenomeError(f"node {node!r}: attribute 'padding'='same' needs an odd kernel, got kernel={kernel}")
        return dilation * (kernel - 1) // 2
    try:
        value = int(padding)
    except (TypeError, ValueError):
        raise GenomeError(f"node {node!r}: attribute 'padding' must be 'same', 'valid' or an integer, got {padding!r}")
    if value < 0:
        raise GenomeError(f"node {node!r}: attribute 'padding' must be >= 0, got {value}")
    return value


def conv_out_size(node: str, size: int, kernel: int, stride: int, padding: int, dilation: int = 1,
                  attr: str = "stride") -> int:
    out = (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1
    if out < 1:
        raise GenomeError(f"node {node!r}: attribute {attr!r} empties a spatial dimension "
                          f"(size {size}, kernel {kernel}, stride {stride}, padding {padding})")
    return out


ACTS = tuple(layers.ACTIVATIONS)


@register
class Input(Op):
    name, arity = "input", 0
    attrs = {"shape": Attr(list)}

    def out_shape(self, node, a, ins):
        shape = tuple(int(s) for s in a["shape"])
        if not 1 <= len(shape) <= 3 or min(shape) < 1:
            raise GenomeError(f"node {node!r}: attribute 'shape' must be (F,), (C, L) or (C, H, W) of positive "
                              f"sizes, got {list(a['shape'])}")
        return shape

    def short(self, a):
        return "in" + "x".join(map(str, a["shape"]))


@register
class Output(Op):
    name = "output"

    def out_shape(self, node, a, ins):
        if len(ins[0]) != 1:
            raise GenomeError(f"node {node!r}: the output must be flat logits (K,), got shape {list(ins[0])}; "
                              "end with global_pool or flatten + dense")
        return ins[0]

    def short(self, a):
        return ""


@register
class Reshape(Op):
    name = "reshape"
    attrs = {"shape": Attr(list)}

    def out_shape(self, node, a, ins):
        total, target = math.prod(ins[0]), [int(s) for s in a["shape"]]
        if not 1 <= len(target) <= 3 or target.count(-1) > 1 or any(s == 0 or s < -1 for s in target):
            raise GenomeError(f"node {node!r}: attribute 'shape' must have 1-3 positive sizes (one may be -1), "
                              f"got {target}")
        known = math.prod(s for s in target if s != -1)
        if total % known or (-1 not in target and known != total):
            raise GenomeError(f"node {node!r}: attribute 'shape' {target} does not divide the {total} features")
        return tuple(total // known if s == -1 else s for s in target)

    def build(self, a, ins, out):
        return layers.Reshape(out)

    def short(self, a):
        return "r" + "x".join("*" if d == -1 else str(d) for d in a["shape"])


@register
class Flatten(Op):
    name = "flatten"

    def out_shape(self, node, a, ins):
        return (math.prod(ins[0]),)

    def build(self, a, ins, out):
        return layers.Flatten()

    def short(self, a):
        return "fl"


@register
class Permute(Op):
    name = "permute"
    attrs = {"seed": Attr(int, 0, minimum=0, maximum=2**63 - 1)}  # torch.Generator seeds are 64-bit

    def out_shape(self, node, a, ins):
        return ins[0]

    def build(self, a, ins, out):
        size = ins[0][0] if len(ins[0]) == 1 else math.prod(ins[0][1:])
        return layers.Permute(size, a["seed"])

    def short(self, a):
        return f"p{a['seed']}"


@register
class Reduce(Op):
    name = "reduce"
    attrs = {"out_channels": Attr(int, minimum=1), "order": Attr(str, "conv-bn-act", ("conv-bn-act", "bn-act-conv", "conv")),
             "act": Attr(str, "relu", ACTS)}

    def out_shape(self, node, a, ins):
        spatial_dims(node, ins[0])
        return (a["out_channels"], *ins[0][1:])

    def params(self, a, ins, out):
        cin, cout = ins[0][0], out[0]
        extra = {"conv-bn-act": 2 * cout, "bn-act-conv": 2 * cin + cout, "conv": cout}[a["order"]]
        return cin * cout + extra

    def flops(self, a, ins, out):
        return math.prod(out) * ins[0][0]

    def build(self, a, ins, out):
        return layers.Reduce1x1(len(out) - 1, ins[0][0], out[0], a["order"], a["act"])

    def short(self, a):
        return f"red{''.join(p[0] for p in a['order'].split('-'))}c{a['out_channels']}"


@register
class Norm(Op):
    name = "norm"
    attrs = {"kind": Attr(str, "batch", ("batch", "none"))}

    def out_shape(self, node, a, ins):
        return ins[0]

    def params(self, a, ins, out):
        return 2 * out[0] if a["kind"] == "batch" else 0

    def build(self, a, ins, out):
        return layers.make_batchnorm(out) if a["kind"] == "batch" else nn.Identity()

    def short(self, a):
        return "bn" if a["kind"] == "batch" else ""


@register
class Act(Op):
    name = "act"
    attrs = {"fn": Attr(str, "relu", ACTS)}

    def out_shape(self, node, a, ins):
        return ins[0]

    def build(self, a, ins, out):
        return layers.make_activation(a["fn"])

    def short(self, a):
        return "" if a["fn"] == "none" else a["fn"]


@register
class Dropout(Op):
    name = "dropout"
    attrs = {"p": Attr(float, 0.0, minimum=0.0)}

    def out_shape(self, node, a, ins):
        if a["p"] >= 1.0:
            raise GenomeError(f"node {node!r}: attribute 'p' must be in [0, 1), got {a['p']}")
        return ins[0]

    def build(self, a, ins, out):
        return nn.Dropout(a["p"])

    def short(self, a):
        return f"do{round(a['p'] * 100)}" if round(a["p"] * 100) else ""


@register
class Pool(Op):
    name = "pool"
    attrs = {"kind": Attr(str, "max", ("max", "avg")), "kernel": Attr(int, 2, minimum=1), "stride": Attr(int, 0, minimum=0)}

    def out_shape(self, node, a, ins):
        spatial_dims(node, ins[0])
        stride = a["stride"] or a["kernel"]
        return (ins[0][0], *(conv_out_size(node, s, a["kernel"], stride, 0, attr="kernel") for s in ins[0][1:]))

    def build(self, a, ins, out):
        return layers.make_pool(len(out) - 1, a["kind"], a["kernel"], a["stride"] or a["kernel"])

    def short(self, a):
        return f"{a['kind']}{a['kernel']}"


@register
class GlobalPool(Op):
    name = "global_pool"
    attrs = {"kind": Attr(str, "avg", ("avg", "max"))}

    def out_shape(self, node, a, ins):
        spatial_dims(node, ins[0])
        return (ins[0][0],)

    def build(self, a, ins, out):
        return layers.GlobalPool(a["kind"])

    def short(self, a):
        return "g" + a["kind"]


@register
class Dense(Op):
    name = "dense"
    attrs = {"out_features": Attr(int, minimum=1), "bias": Attr(bool, True)}

    def out_shape(self, node, a, ins):
        if len(ins[0]) != 1:
            raise GenomeError(f"node {node!r}: dense needs flat input, got shape {list(ins[0])}; "
                              "add a flatten or global_pool node first")
        return (a["out_features"],)

    def params(self, a, ins, out):
        return ins[0][0] * out[0] + (out[0] if a["bias"] else 0)

    def flops(self, a, ins, out):
        return ins[0][0] * out[0]

    def build(self, a, ins, out):
        return nn.Linear(ins[0][0], out[0], bias=a["bias"])

    def short(self, a):
        return f"d{a['out_features']}"


@register
class Concat(Op):
    name, arity = "concat", -1

    def out_shape(self, node, a, ins):
        if len({s[1:] for s in ins}) != 1:
            raise GenomeError(f"node {node!r}: concat needs inputs of equal spatial size, got "
                              f"{[list(s) for s in ins]}")
        return (sum(s[0] for s in ins), *ins[0][1:])

    def short(self, a):
        return "cat"


@register
class Add(Op):
    name, arity = "add", -1

    def out_shape(self, node, a, ins):
        if len(set(ins)) != 1:
            raise GenomeError(f"node {node!r}: add needs inputs of one shape, got {[list(s) for s in ins]}")
        return ins[0]

    def short(self, a):
        return "add"


def normalize_attrs(node: str, op: Op, raw: dict) -> dict:
    """Attributes with defaults filled and types checked; unknown or missing ones are GenomeErrors."""
    unknown = set(raw) - set(op.attrs)
    if unknown:
        raise GenomeError(f"node {node!r}: unknown attribute {sorted(unknown)[0]!r} for op {op.name!r}; "
                          f"valid: {', '.join(op.attrs) or 'none'}")
    out = {}
    for key, spec in op.attrs.items():
        value = raw.get(key, spec.default)
        if value is None:
            raise GenomeError(f"node {node!r}: op {op.name!r} needs attribute {key!r}")
        out[key] = _coerce(node, key, spec, value)
    return out


def _coerce(node: str, key: str, spec: Attr, value: Any) -> Any:
    bad = GenomeError(f"node {node!r}: attribute {key!r} must be {spec.kind.__name__}"
                      f"{' in ' + str(list(spec.choices)) if spec.choices else ''}, got {value!r}")
    if spec.kind is object:
        return value
    if spec.kind is bool:
        if not isinstance(value, bool):
            raise bad
        return value
    if spec.kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad
    elif spec.kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise bad
        value = float(value)
    elif spec.kind is list:
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            raise bad
        return [int(v) for v in value]
    elif not isinstance(value, spec.kind):
        raise bad
    if spec.choices is not None and value not in spec.choices:
        raise bad
    if spec.minimum is not None and value < spec.minimum:
        raise GenomeError(f"node {node!r}: attribute {key!r} must be >= {spec.minimum}, got {value!r}")
    if spec.maximum is not None and value > spec.maximum:
        raise GenomeError(f"node {node!r}: attribute {key!r} must be <= {spec.maximum}, got {value!r}")
    return value


# The convolution family registers itself on import (kept apart to keep modules small).
from search_space import conv_ops  # noqa: E402,F401
