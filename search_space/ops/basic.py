"""The non-convolution ops: input/output, reshapes, permutation, 1x1 reduction, norm, activation, pooling, dense, merges."""
from __future__ import annotations

import math

from torch import nn

from search_space import layers
from search_space.errors import GenomeError
from search_space.ops.base import ACTS, Attr, Op, conv_out_size, layer_call, register, spatial_dims


@register
class InputOp(Op):
    name, arity = "input", 0
    attrs = {"shape": Attr(list)}

    def out_shape(self, node, a, ins):
        shape = tuple(int(s) for s in a["shape"])
        if not 1 <= len(shape) <= 3 or min(shape) < 1:
            raise GenomeError(f"node {node!r}: attribute 'shape' must be (F,), (C, L) or (C, H, W) of positive "
                              f"sizes, got {list(a['shape'])}")
        return shape

    def source(self, a, ins, out, bias):
        return None  # written by the network itself

    def short(self, a):
        return "in" + "x".join(map(str, a["shape"]))


@register
class OutputOp(Op):
    name = "output"

    def out_shape(self, node, a, ins):
        if len(ins[0]) != 1:
            raise GenomeError(f"node {node!r}: the output must be flat logits (K,), got shape {list(ins[0])}; "
                              "end with global_pool or flatten + dense")
        return ins[0]

    def source(self, a, ins, out, bias):
        return None  # written by the network itself

    def short(self, a):
        return ""


@register
class ReshapeOp(Op):
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

    def source(self, a, ins, out, bias):
        return layer_call("Reshape", tuple(out))

    def short(self, a):
        return "r" + "x".join("*" if d == -1 else str(d) for d in a["shape"])


@register
class FlattenOp(Op):
    name = "flatten"

    def out_shape(self, node, a, ins):
        return (math.prod(ins[0]),)

    def build(self, a, ins, out):
        return layers.Flatten()

    def source(self, a, ins, out, bias):
        return layer_call("Flatten")

    def short(self, a):
        return "fl"


@register
class PermuteOp(Op):
    name, design = "permute", "permutation"
    attrs = {"seed": Attr(int, 0, minimum=0, maximum=2**63 - 1)}  # torch.Generator seeds are 64-bit

    def out_shape(self, node, a, ins):
        return ins[0]

    def build(self, a, ins, out):
        size = ins[0][0] if len(ins[0]) == 1 else math.prod(ins[0][1:])
        return layers.Permute(size, a["seed"])

    def source(self, a, ins, out, bias):
        return layer_call("Permute", ins[0][0] if len(ins[0]) == 1 else math.prod(ins[0][1:]), seed=a["seed"])

    def short(self, a):
        return f"p{a['seed']}"


@register
class ReorderOp(Op):
    """Positions put in an order recovered from the training data (``evaluators.ordering``), stored as data."""

    name, design = "reorder", "reordered"
    attrs = {"order": Attr(list), "method": Attr(str, "given")}  # method: how the order was found (a label)

    def out_shape(self, node, a, ins):
        size = ins[0][0] if len(ins[0]) == 1 else math.prod(ins[0][1:])
        if sorted(a["order"]) != list(range(size)):
            raise GenomeError(f"node {node!r}: attribute 'order' must be a permutation of the {size} positions "
                              f"0..{size - 1}, got {len(a['order'])} values")
        return ins[0]

    def build(self, a, ins, out):
        return layers.Reorder(a["order"])

    def source(self, a, ins, out, bias):
        return layer_call("Reorder", list(a["order"]))

    def short(self, a):
        return f"ro-{a['method']}"


@register
class ReduceOp(Op):
    name, design = "reduce", "plain"
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

    def source(self, a, ins, out, bias):
        return layer_call("Reduce1x1", len(out) - 1, ins[0][0], out[0], order=a["order"], act=a["act"])

    def short(self, a):
        return f"red{''.join(p[0] for p in a['order'].split('-'))}c{a['out_channels']}"


@register
class NormOp(Op):
    name = "norm"
    attrs = {"kind": Attr(str, "batch", ("batch", "none"))}

    def out_shape(self, node, a, ins):
        return ins[0]

    def params(self, a, ins, out):
        return 2 * out[0] if a["kind"] == "batch" else 0

    def build(self, a, ins, out):
        return layers.make_batchnorm(out) if a["kind"] == "batch" else nn.Identity()

    def source(self, a, ins, out, bias):
        return None if a["kind"] == "none" else f"nn.BatchNorm{1 if len(out) < 3 else 2}d({out[0]})"

    def short(self, a):
        return "bn" if a["kind"] == "batch" else ""


@register
class ActOp(Op):
    name = "act"
    attrs = {"fn": Attr(str, "relu", ACTS)}

    def out_shape(self, node, a, ins):
        return ins[0]

    def build(self, a, ins, out):
        return layers.make_activation(a["fn"])

    def source(self, a, ins, out, bias):
        return None if a["fn"] == "none" else f"nn.{layers.ACTIVATIONS[a['fn']].__name__}()"

    def short(self, a):
        return "" if a["fn"] == "none" else a["fn"]


@register
class DropoutOp(Op):
    name = "dropout"
    attrs = {"p": Attr(float, 0.0, minimum=0.0)}

    def out_shape(self, node, a, ins):
        if a["p"] >= 1.0:
            raise GenomeError(f"node {node!r}: attribute 'p' must be in [0, 1), got {a['p']}")
        return ins[0]

    def build(self, a, ins, out):
        return nn.Dropout(a["p"])

    def source(self, a, ins, out, bias):
        return f"nn.Dropout({a['p']!r})" if a["p"] else None

    def short(self, a):
        return f"do{round(a['p'] * 100)}" if round(a["p"] * 100) else ""


@register
class PoolOp(Op):
    name = "pool"
    attrs = {"kind": Attr(str, "max", ("max", "avg")), "kernel": Attr(int, 2, minimum=1), "stride": Attr(int, 0, minimum=0)}

    def out_shape(self, node, a, ins):
        spatial_dims(node, ins[0])
        stride = a["stride"] or a["kernel"]
        return (ins[0][0], *(conv_out_size(node, s, a["kernel"], stride, 0, attr="kernel") for s in ins[0][1:]))

    def build(self, a, ins, out):
        return layers.make_pool(len(out) - 1, a["kind"], a["kernel"], a["stride"] or a["kernel"])

    def source(self, a, ins, out, bias):
        stride = a["stride"] or a["kernel"]
        kind = {"max": "Max", "avg": "Avg"}[a["kind"]]
        return f"nn.{kind}Pool{len(out) - 1}d({a['kernel']}{'' if stride == a['kernel'] else f', stride={stride}'})"

    def short(self, a):
        return f"{a['kind']}{a['kernel']}"


@register
class GlobalPoolOp(Op):
    name = "global_pool"
    attrs = {"kind": Attr(str, "avg", ("avg", "max"))}

    def out_shape(self, node, a, ins):
        spatial_dims(node, ins[0])
        return (ins[0][0],)

    def build(self, a, ins, out):
        return layers.GlobalPool(a["kind"])

    def source(self, a, ins, out, bias):
        return layer_call("GlobalPool", kind=a["kind"])

    def short(self, a):
        return "g" + a["kind"]


@register
class DenseOp(Op):
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

    def source(self, a, ins, out, bias):
        return f"nn.Linear({ins[0][0]}, {out[0]}{'' if bias else ', bias=False'})"

    def short(self, a):
        return f"d{a['out_features']}"


@register
class ConcatOp(Op):
    name, arity = "concat", -1

    def out_shape(self, node, a, ins):
        if len({s[1:] for s in ins}) != 1:
            raise GenomeError(f"node {node!r}: concat needs inputs of equal spatial size, got "
                              f"{[list(s) for s in ins]}")
        return (sum(s[0] for s in ins), *ins[0][1:])

    def source(self, a, ins, out, bias):
        return None  # written by the network itself

    def short(self, a):
        return "cat"


@register
class AddOp(Op):
    name, arity = "add", -1

    def out_shape(self, node, a, ins):
        if len(set(ins)) != 1:
            raise GenomeError(f"node {node!r}: add needs inputs of one shape, got {[list(s) for s in ins]}")
        return ins[0]

    def source(self, a, ins, out, bias):
        return None  # written by the network itself

    def short(self, a):
        return "add"
