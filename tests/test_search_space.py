"""Every op and every zoo genome: analytic params/FLOPs/shapes equal what the built torch model does."""
from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from search_space import Genome, build_model, get_zoo
from search_space.compiler import module_name
from search_space.zoo import ZOO

ZOO_PARAMS = {
    "dense-baseline": 4_484_452, "perm-cnn": 87_332, "multi-perm-cnn": 285_028, "all-cnn-c": 1_369_738,
    "strided-cnn-c": 954_730, "lenet5": 61_684, "mnist1d-cnn": 5_210, "mnist1d-mlp": 15_210,
    # convtwist-block by hand: stem 3*64*9=1728, bn 128, reduce 64*32+2*32=2112,
    # twist W 32*8*9=2304 + coeffs 2*32*8=512, bn 64, expand 32*64=2048, bn 128, dense 64*10+10=650
    "convtwist-block": 1728 + 128 + 2112 + 2304 + 512 + 64 + 2048 + 128 + 650,
    # decomposeme by hand: fconv0 (1*32*3+32)+(32*32*3+32), bn 64, fconv1 (32*64*3+64)+(64*64*3+64), bn 128,
    # fconv2 2*(64*64*3+64), bn 128, dense 650
    # the 28x28 All-CNN-C / Strided-CNN-C by hand: a 3x3 conv c_in -> c_out has 9*c_in*c_out + c_out,
    # then the 1x1 64 -> 64 (4,160) and the 1x1 classifier 64 -> 10 (650)
    "all-cnn-c-28": (9 * 32 + 32) + 2 * (9 * 32 * 32 + 32) + (9 * 32 * 64 + 64) + 3 * (9 * 64 * 64 + 64) + 4160 + 650,
    "strided-cnn-c-28": (9 * 32 + 32) + (9 * 32 * 32 + 32) + (9 * 32 * 64 + 64) + 2 * (9 * 64 * 64 + 64) + 4160 + 650,
    "decomposeme": 128 + 3104 + 64 + 6208 + 12352 + 128 + 2 * 12352 + 128 + 650,
}


def single_op(input_shape, op, classes=3, pre=(), **attrs) -> Genome:
    """input -> [pre ops] -> op -> (flatten) -> dense(classes) -> output."""
    g = Genome()
    x = g.add("input", "input", shape=list(input_shape))
    for i, (pre_op, pre_attrs) in enumerate(pre):
        x = g.add(f"pre{i}", pre_op, [x], **pre_attrs)
    x = g.add("op", op, [x], **attrs)
    x = g.add("flatten", "flatten", [x])
    g.add("output", "output", [g.add("logits", "dense", [x], out_features=classes)])
    return g


OP_CASES = {
    "reshape": ((24,), "reshape", {"shape": [4, -1]}),
    "reshape-2d": ((48,), "reshape", {"shape": [3, 4, 4]}),
    "permute-flat": ((24,), "permute", {"seed": 3}),
    "permute-1d": ((4, 10), "permute", {"seed": 1}),
    "permute-2d": ((2, 5, 5), "permute", {"seed": 2}),
    "reorder-flat": ((6,), "reorder", {"order": [3, 0, 5, 1, 4, 2], "method": "chain"}),
    "reorder-2d": ((2, 2, 3), "reorder", {"order": [5, 4, 3, 2, 1, 0], "method": "grid"}),
    "conv1d": ((4, 20), "conv", {"out_channels": 8, "kernel": 5, "stride": 2}),
    "conv1d-valid-dilated": ((4, 20), "conv", {"out_channels": 6, "kernel": 3, "padding": "valid", "dilation": 2}),
    "conv2d-nobias": ((3, 9, 9), "conv", {"out_channels": 8, "kernel": 3, "stride": 2, "bias": False}),
    "conv2d-groups": ((8, 6, 6), "conv", {"out_channels": 16, "groups": 4}),
    "conv2d-shuffle": ((8, 6, 6), "conv", {"out_channels": 8, "groups": 4, "pattern": "shuffle"}),
    "conv2d-cycle4": ((16, 6, 6), "conv", {"out_channels": 16, "groups": 8, "pattern": "cycle", "cycle": 4}),
    "conv1d-cycle2": ((8, 12), "conv", {"out_channels": 8, "groups": 4, "pattern": "cycle", "cycle": 2}),
    "twist2d": ((4, 8, 8), "twist_conv", {"out_channels": 6}),
    "twist2d-stride-cycle": ((16, 8, 8), "twist_conv", {"out_channels": 16, "stride": 2, "groups": 4,
                                                        "pattern": "cycle", "cycle": 4}),
    "twist2d-iters": ((8, 6, 6), "twist_conv", {"out_channels": 8, "groups": 2, "pattern": "shuffle", "iters": 3}),
    "twist1d": ((4, 16), "twist_conv", {"out_channels": 8, "bias": True}),
    "twist1d-iters": ((4, 16), "twist_conv", {"out_channels": 4, "iters": 2}),
    "factorized": ((3, 9, 9), "factorized_conv", {"out_channels": 8, "kernel": 3, "stride": 2}),
    "factorized-mid": ((3, 9, 9), "factorized_conv", {"out_channels": 8, "kernel": 5, "mid_channels": 4}),
    "separable1d": ((4, 20), "separable_conv", {"out_channels": 8, "kernel": 5, "stride": 2}),
    "separable2d": ((4, 9, 9), "separable_conv", {"out_channels": 8, "kernel": 3, "bias": False}),
    "lowrank2d": ((4, 9, 9), "lowrank_conv", {"out_channels": 8, "kernel": 3, "rank": 2}),
    "lowrank1d": ((4, 12), "lowrank_conv", {"out_channels": 8, "kernel": 5, "rank": 3, "stride": 3}),
    "reduce-cba": ((8, 5, 5), "reduce", {"out_channels": 4, "order": "conv-bn-act"}),
    "reduce-bac": ((8, 10), "reduce", {"out_channels": 4, "order": "bn-act-conv", "act": "gelu"}),
    "reduce-conv": ((8, 5, 5), "reduce", {"out_channels": 4, "order": "conv"}),
    "norm-flat": ((10,), "norm", {"kind": "batch"}),
    "norm-1d": ((4, 10), "norm", {}),
    "norm-2d": ((4, 5, 5), "norm", {}),
    "act-selu": ((4, 10), "act", {"fn": "selu"}),
    "dropout": ((10,), "dropout", {"p": 0.3}),
    "maxpool1d": ((4, 11), "pool", {"kind": "max", "kernel": 2}),
    "avgpool2d": ((4, 9, 9), "pool", {"kind": "avg", "kernel": 3, "stride": 2}),
    "gap": ((4, 5, 5), "global_pool", {"kind": "avg"}),
    "gmp1d": ((4, 9), "global_pool", {"kind": "max"}),
    "dense": ((12,), "dense", {"out_features": 7, "bias": False}),
    "flatten": ((2, 3, 4), "flatten", {}),
}


def assert_genome_matches_model(genome: Genome, batch: int = 2) -> None:
    """Analytic params, FLOPs and every node's shape agree with the built model."""
    info = genome.analyze()
    model = build_model(genome).eval()
    assert genome.params == sum(p.numel() for p in model.parameters())
    shapes: dict[str, tuple] = {}
    modules = dict(model.named_children())
    hooks = [modules[module_name(n)].register_forward_hook(
        lambda _m, _i, out, n=n: shapes.__setitem__(n, tuple(out.shape[1:])))
        for n in info if module_name(n) in modules]
    x = torch.randn(batch, *genome.input_shape)
    with FlopCounterMode(display=False) as counter:
        y = model(x)
    for h in hooks:
        h.remove()
    assert counter.get_total_flops() == 2 * batch * genome.flops
    assert tuple(y.shape) == (batch, genome.num_classes)
    for node, shape in shapes.items():
        assert shape == info[node].shape, node


@pytest.mark.parametrize("case", sorted(OP_CASES))
def test_op_params_flops_and_shapes_match_torch(case):
    shape, op, attrs = OP_CASES[case]
    genome = single_op(shape, op, **attrs).validate()
    assert_genome_matches_model(genome)


@pytest.mark.parametrize("name", sorted(ZOO))
def test_zoo_genome_counts(name):
    genome = get_zoo(name).build()
    assert genome.params == ZOO_PARAMS[name]
    assert_genome_matches_model(genome)


def test_zoo_rebuilds_for_other_shapes():
    genome = get_zoo("perm-cnn").build((40,), 10)
    assert genome.input_shape == (40,) and genome.num_classes == 10
    assert_genome_matches_model(genome)
    twist = get_zoo("convtwist-block").build((1, 8, 8), 4)
    assert_genome_matches_model(twist)


def test_compiled_model_code_is_readable():
    model = build_model(get_zoo("multi-perm-cnn").build((256,), 10))
    code = model.code
    assert "torch.cat" in code and "b0_conv0" in code and "def forward(self, x)" in code
