"""The convolution ops of the registry: plain/grouped (with group patterns), Twist, factorized, separable, low-rank."""
from __future__ import annotations

import math
from typing import Any, Protocol

from search_space import layers
from search_space.errors import GenomeError
from search_space.ops.base import ACTS, Attr, Op, conv_out_size, layer_call, register, resolve_padding, spatial_dims


def check_groups(node: str, a: dict, in_ch: int) -> None:
    g, out_ch = a["groups"], a["out_channels"]
    if in_ch % g or out_ch % g:
        raise GenomeError(f"node {node!r}: attribute 'groups'={g} must divide in_channels={in_ch} "
                          f"and out_channels={out_ch}")
    if a["pattern"] != "none" and g == 1:
        raise GenomeError(f"node {node!r}: attribute 'pattern'={a['pattern']!r} needs groups > 1")
    if a["pattern"] == "cycle" and (a["cycle"] < 2 or g % a["cycle"]):
        raise GenomeError(f"node {node!r}: attribute 'cycle'={a['cycle']} must be >= 2 and divide groups={g}")


PATTERNS = ("none", "shuffle", "cycle")
PADDING = Attr(object, "same")


class StageChoices(Protocol):
    """How a conv op asks the sampler for one stage's values: ``choose(key[, name])`` draws a search-space key
    under the stage's parameter name (``s1_<name>``, ``name`` defaulting to the key); ``choose.options(key)``
    lists every value the space offers for it."""

    def __call__(self, key: str, name: str | None = None) -> Any: ...

    def options(self, key: str) -> list: ...


def sample_groups(choose: StageChoices, cin: int, cout: int) -> dict:
    """``groups`` clamped to the largest offered value that divides both channel counts, then its pattern and
    cycle; nothing is asked when no offered value above 1 fits."""
    offered = choose.options("groups")
    if not any(g > 1 and cin % g == 0 and cout % g == 0 for g in offered):
        return {}
    drawn = choose("groups")
    groups = max(g for g in [1, *offered] if g <= drawn and cin % g == 0 and cout % g == 0)
    if groups == 1:
        return {}
    attrs = {"groups": groups, "pattern": choose("pattern")}
    if attrs["pattern"] == "cycle":
        drawn = choose("cycle")
        fits = [c for c in choose.options("cycle") if 2 <= c <= drawn and groups % c == 0]
        attrs["cycle"] = max(fits) if fits else groups
    return attrs


class ConvLike(Op):
    """Shared shape rule of the k-kernel convolutions: ``(C, *S) -> (out_channels, *S')``.

    Search metadata: ``searchable`` ops are offered as a stage's ``conv_type``; ``image_only`` ones need a
    (C, H, W) map; ``design`` is the family label a genome using the op gets in plots.
    """

    searchable = True
    image_only = False
    design = "plain"

    def sample_attrs(self, choose: StageChoices, cin: int, act: str) -> dict:
        """One stage's attributes for this op, drawn define-by-run (the stage adds ``bias`` and ``stride``)."""
        return {"out_channels": choose("channels"), "kernel": choose("kernel")}


    def spatial_out(self, node, a, shape, kernel, padding, dilation=1):
        return tuple(conv_out_size(node, s, kernel, a["stride"], padding, dilation) for s in shape[1:])

    def padding(self, node, a):
        return resolve_padding(node, a["padding"], a["kernel"], a.get("dilation", 1))

    def out_shape(self, node, a, ins):
        spatial_dims(node, ins[0])
        sizes = self.spatial_out(node, a, ins[0], a["kernel"], self.padding(node, a), a.get("dilation", 1))
        return (a["out_channels"], *sizes)


CONV_BASE = {"out_channels": Attr(int, minimum=1), "kernel": Attr(int, 3, minimum=1), "stride": Attr(int, 1, minimum=1),
             "padding": PADDING, "bias": Attr(bool, True)}


@register
class ConvOp(ConvLike):
    name = "conv"
    attrs = {**CONV_BASE, "dilation": Attr(int, 1, minimum=1), "groups": Attr(int, 1, minimum=1),
             "pattern": Attr(str, "none", PATTERNS), "cycle": Attr(int, 4, minimum=2)}

    def out_shape(self, node, a, ins):
        out = super().out_shape(node, a, ins)
        check_groups(node, a, ins[0][0])
        return out

    def params(self, a, ins, out):
        dim = len(out) - 1
        return out[0] * (ins[0][0] // a["groups"]) * a["kernel"] ** dim + (out[0] if a["bias"] else 0)

    def flops(self, a, ins, out):
        return math.prod(out) * (ins[0][0] // a["groups"]) * a["kernel"] ** (len(out) - 1)

    def build(self, a, ins, out):
        return layers.PermutedGroupConv(len(out) - 1, ins[0][0], out[0], a["kernel"], a["stride"],
                                        resolve_padding("", a["padding"], a["kernel"], a["dilation"]),
                                        a["dilation"], a["groups"], a["pattern"], a["cycle"], a["bias"])

    def source(self, a, ins, out, bias):
        return layer_call("PermutedGroupConv", len(out) - 1, ins[0][0], out[0], a["kernel"], stride=a["stride"],
                          padding=self.padding("", a), dilation=a["dilation"], groups=a["groups"],
                          pattern=a["pattern"], cycle=a["cycle"], bias=bias)

    def sample_attrs(self, choose, cin, act):
        attrs = super().sample_attrs(choose, cin, act)
        return {**attrs, **sample_groups(choose, cin, attrs["out_channels"])}

    def design_of(self, a):
        return "grouped-pattern" if a.get("pattern", "none") != "none" else "plain"

    def short(self, a):
        g = f"g{a['groups']}{a['pattern'][0] if a['pattern'] != 'none' else ''}" if a["groups"] > 1 else ""
        return f"c{a['kernel']}s{a['stride']}{g}c{a['out_channels']}"


@register
class TwistConvOp(ConvOp):
    name = "twist_conv"
    design = "twist"
    attrs = {"out_channels": Attr(int, minimum=1), "stride": Attr(int, 1, minimum=1), "groups": Attr(int, 1, minimum=1),
             "pattern": Attr(str, "none", PATTERNS), "cycle": Attr(int, 4, minimum=2),
             "iters": Attr(int, 1, minimum=1), "bias": Attr(bool, False)}
    fixed = {"kernel": 3, "padding": 1, "dilation": 1}

    def out_shape(self, node, a, ins):
        out = super().out_shape(node, {**a, **self.fixed}, ins)
        if a["iters"] > 1 and out != ins[0]:
            raise GenomeError(f"node {node!r}: attribute 'iters'={a['iters']} needs equal input and output shapes "
                              f"(got {list(ins[0])} -> {list(out)}); use iters=1")
        return out

    def params(self, a, ins, out):
        coeffs = out[0] * (ins[0][0] // a["groups"]) * (len(out) - 1)
        return super().params({**a, **self.fixed}, ins, out) + coeffs

    def flops(self, a, ins, out):
        return super().flops({**a, **self.fixed}, ins, out) * len(out) * a["iters"]

    def build(self, a, ins, out):
        return layers.TwistConv(len(out) - 1, ins[0][0], out[0], out[1:], a["stride"], a["groups"], a["pattern"],
                                a["cycle"], a["iters"], a["bias"])

    def source(self, a, ins, out, bias):
        return layer_call("TwistConv", len(out) - 1, ins[0][0], out[0], out_size=tuple(out[1:]), stride=a["stride"],
                          groups=a["groups"], pattern=a["pattern"], cycle=a["cycle"], iters=a["iters"], bias=bias)

    def sample_attrs(self, choose, cin, act):
        """Iterated Twist (``iters`` > 1, offered from 8 channels) keeps the channel count and the map."""
        iters = choose("twist_iters", "iters") if cin >= 8 else 1
        cout = cin if iters > 1 else choose("channels")
        return {"out_channels": cout, **({"iters": iters} if iters > 1 else {}), **sample_groups(choose, cin, cout)}

    def design_of(self, a):
        return "twist"

    def short(self, a):
        g = f"g{a['groups']}{a['pattern'][0] if a['pattern'] != 'none' else ''}" if a["groups"] > 1 else ""
        return f"t3s{a['stride']}{g}c{a['out_channels']}" + (f"i{a['iters']}" if a["iters"] > 1 else "")


@register
class FactorizedConvOp(ConvLike):
    name = "factorized_conv"
    image_only, design = True, "decomposed"
    attrs = {**CONV_BASE, "mid_channels": Attr(int, 0, minimum=0), "act": Attr(str, "relu", ACTS)}

    def out_shape(self, node, a, ins):
        if len(ins[0]) != 3:
            raise GenomeError(f"node {node!r}: factorized_conv (k x 1 then 1 x k) needs a (C, H, W) map, "
                              f"got shape {list(ins[0])}")
        return super().out_shape(node, a, ins)

    def params(self, a, ins, out):
        mid, k, b = a["mid_channels"] or out[0], a["kernel"], a["bias"]
        return mid * ins[0][0] * k + (mid if b else 0) + out[0] * mid * k + (out[0] if b else 0)

    def flops(self, a, ins, out):
        mid, k = a["mid_channels"] or out[0], a["kernel"]
        return mid * out[1] * ins[0][2] * ins[0][0] * k + math.prod(out) * mid * k

    def inner_values(self, a, ins, out):
        return (a["mid_channels"] or out[0]) * out[1] * ins[0][2]  # the k x 1 conv's map

    def build(self, a, ins, out):
        return layers.FactorizedConv2d(ins[0][0], out[0], a["kernel"], a["stride"], self.padding("", a),
                                       a["mid_channels"] or None, a["act"], a["bias"])

    def source(self, a, ins, out, bias):
        return layer_call("FactorizedConv2d", ins[0][0], out[0], a["kernel"], stride=a["stride"],
                          padding=self.padding("", a), mid_channels=a["mid_channels"] or None, act=a["act"],
                          bias=bias)

    def sample_attrs(self, choose, cin, act):
        return {**super().sample_attrs(choose, cin, act), "act": act}

    def short(self, a):
        return f"f{a['kernel']}s{a['stride']}c{a['out_channels']}"


@register
class SeparableConvOp(ConvLike):
    name = "separable_conv"
    design = "decomposed"
    attrs = dict(CONV_BASE)

    def params(self, a, ins, out):
        return ins[0][0] * a["kernel"] ** (len(out) - 1) + out[0] * ins[0][0] + (out[0] if a["bias"] else 0)

    def flops(self, a, ins, out):
        positions = math.prod(out[1:])
        return positions * ins[0][0] * (a["kernel"] ** (len(out) - 1) + out[0])

    def inner_values(self, a, ins, out):
        return ins[0][0] * math.prod(out[1:])  # the depthwise conv's map

    def build(self, a, ins, out):
        return layers.SeparableConv(len(out) - 1, ins[0][0], out[0], a["kernel"], a["stride"], self.padding("", a),
                                    a["bias"])

    def source(self, a, ins, out, bias):
        return layer_call("SeparableConv", len(out) - 1, ins[0][0], out[0], a["kernel"], stride=a["stride"],
                          padding=self.padding("", a), bias=bias)

    def short(self, a):
        return f"sep{a['kernel']}s{a['stride']}c{a['out_channels']}"


@register
class LowRankConvOp(ConvLike):
    name = "lowrank_conv"
    design = "decomposed"
    attrs = {**CONV_BASE, "rank": Attr(int, minimum=1)}

    def params(self, a, ins, out):
        r = a["rank"]
        return r * ins[0][0] * a["kernel"] ** (len(out) - 1) + out[0] * r + (out[0] if a["bias"] else 0)

    def flops(self, a, ins, out):
        positions = math.prod(out[1:])
        return positions * a["rank"] * (ins[0][0] * a["kernel"] ** (len(out) - 1) + out[0])

    def inner_values(self, a, ins, out):
        return a["rank"] * math.prod(out[1:])  # the k conv's map, before the 1x1

    def build(self, a, ins, out):
        return layers.LowRankConv(len(out) - 1, ins[0][0], out[0], a["kernel"], a["rank"], a["stride"],
                                  self.padding("", a), a["bias"])

    def source(self, a, ins, out, bias):
        return layer_call("LowRankConv", len(out) - 1, ins[0][0], out[0], a["kernel"], a["rank"], stride=a["stride"],
                          padding=self.padding("", a), bias=bias)

    def sample_attrs(self, choose, cin, act):
        return {**super().sample_attrs(choose, cin, act), "rank": choose("rank")}

    def short(self, a):
        return f"lr{a['kernel']}s{a['stride']}r{a['rank']}c{a['out_channels']}"
