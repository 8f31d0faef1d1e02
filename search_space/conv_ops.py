"""The convolution ops of the registry: plain/grouped (with group patterns), Twist, factorized, separable, low-rank."""
from __future__ import annotations

import math

from search_space import layers
from search_space.errors import GenomeError
from search_space.ops import ACTS, Attr, Op, conv_out_size, register, resolve_padding, spatial_dims


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


class ConvLike(Op):
    """Shared shape rule of the k-kernel convolutions: ``(C, *S) -> (out_channels, *S')``."""

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
class Conv(ConvLike):
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

    def short(self, a):
        g = f"g{a['groups']}{a['pattern'][0] if a['pattern'] != 'none' else ''}" if a["groups"] > 1 else ""
        return f"c{a['kernel']}s{a['stride']}{g}c{a['out_channels']}"


@register
class TwistConv(Conv):
    name = "twist_conv"
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

    def short(self, a):
        g = f"g{a['groups']}{a['pattern'][0] if a['pattern'] != 'none' else ''}" if a["groups"] > 1 else ""
        return f"t3s{a['stride']}{g}c{a['out_channels']}" + (f"i{a['iters']}" if a["iters"] > 1 else "")


@register
class FactorizedConv(ConvLike):
    name = "factorized_conv"
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

    def build(self, a, ins, out):
        return layers.FactorizedConv2d(ins[0][0], out[0], a["kernel"], a["stride"], self.padding("", a),
                                       a["mid_channels"] or None, a["act"], a["bias"])

    def short(self, a):
        return f"f{a['kernel']}s{a['stride']}c{a['out_channels']}"


@register
class SeparableConv(ConvLike):
    name = "separable_conv"
    attrs = dict(CONV_BASE)

    def params(self, a, ins, out):
        return ins[0][0] * a["kernel"] ** (len(out) - 1) + out[0] * ins[0][0] + (out[0] if a["bias"] else 0)

    def flops(self, a, ins, out):
        positions = math.prod(out[1:])
        return positions * ins[0][0] * (a["kernel"] ** (len(out) - 1) + out[0])

    def build(self, a, ins, out):
        return layers.SeparableConv(len(out) - 1, ins[0][0], out[0], a["kernel"], a["stride"], self.padding("", a),
                                    a["bias"])

    def short(self, a):
        return f"sep{a['kernel']}s{a['stride']}c{a['out_channels']}"


@register
class LowRankConv(ConvLike):
    name = "lowrank_conv"
    attrs = {**CONV_BASE, "rank": Attr(int, minimum=1)}

    def params(self, a, ins, out):
        r = a["rank"]
        return r * ins[0][0] * a["kernel"] ** (len(out) - 1) + out[0] * r + (out[0] if a["bias"] else 0)

    def flops(self, a, ins, out):
        positions = math.prod(out[1:])
        return positions * a["rank"] * (ins[0][0] * a["kernel"] ** (len(out) - 1) + out[0])

    def build(self, a, ins, out):
        return layers.LowRankConv(len(out) - 1, ins[0][0], out[0], a["kernel"], a["rank"], a["stride"],
                                  self.padding("", a), a["bias"])

    def short(self, a):
        return f"lr{a['kernel']}s{a['stride']}r{a['rank']}c{a['out_channels']}"
