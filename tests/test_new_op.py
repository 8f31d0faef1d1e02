"""Adding an op is one registry entry: a class written here, in a test, is validated, costed, compiled, exported
and offered by the sampler with no other file touched (the README's "Adding an op" says the same)."""
from __future__ import annotations

import math

import optuna
import pytest
import torch
from torch import nn

from nas.export.bundle import write_bundle
from nas.search.genomes import genome_family, resolve_space, sample_genome
from search_space import build_model
from search_space.ops import REGISTRY, ConvLike, register
from test_search_space import assert_genome_matches_model, single_op


class PointwiseConv(ConvLike):
    """A 1x1 convolution (kernel fixed at 1): its layer is torch's own, so the layer library needs nothing new."""

    name = "pointwise_conv"
    attrs = {k: v for k, v in REGISTRY["separable_conv"].attrs.items() if k not in ("kernel", "padding")}

    def out_shape(self, node, a, ins):
        return super().out_shape(node, {**a, "kernel": 1, "padding": 0}, ins)

    def params(self, a, ins, out):
        return ins[0][0] * out[0] + (out[0] if a["bias"] else 0)

    def flops(self, a, ins, out):
        return math.prod(out) * ins[0][0]

    def build(self, a, ins, out):
        return getattr(nn, f"Conv{len(out) - 1}d")(ins[0][0], out[0], 1, stride=a["stride"], bias=a["bias"])

    def source(self, a, ins, out, bias):
        return f"nn.Conv{len(out) - 1}d({ins[0][0]}, {out[0]}, 1, stride={a['stride']}, bias={bias})"

    def sample_attrs(self, choose, cin, act):
        return {"out_channels": choose("channels")}


@pytest.fixture
def pointwise():
    register(PointwiseConv)
    try:
        yield REGISTRY["pointwise_conv"]
    finally:
        del REGISTRY["pointwise_conv"]


@pytest.mark.parametrize("shape", [(4, 12), (3, 8, 8)])
def test_a_registered_op_is_costed_and_compiled(pointwise, shape):
    genome = single_op(shape, "pointwise_conv", out_channels=6, stride=2).validate()
    assert_genome_matches_model(genome)
    assert genome_family(genome) == "plain"


def test_a_registered_op_exports_with_parity(pointwise, tmp_path):
    genome = single_op((3, 8, 8), "pointwise_conv", out_channels=6).validate()
    torch.manual_seed(0)
    bundle = write_bundle(genome, build_model(genome).state_dict(), tmp_path)
    assert bundle.parity["model.py"] <= 1e-6 and bundle.parity["model.pt2"] <= 1e-6
    assert "nn.Conv2d(3, 6, 1, stride=1, bias=True)" in (tmp_path / "model.py").read_text()


def test_a_registered_op_is_offered_by_the_sampler(pointwise):
    space = resolve_space({"preset": "perm-cnn-1d", "conv_type": ["pointwise_conv"], "stages": 2})
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(0))
    for _ in range(5):
        genome = sample_genome(study.ask(), space, (40,), 10).validate()
        ops = {data["op"] for _, data in genome.graph.nodes(data=True)}
        assert "pointwise_conv" in ops and not ops & {"conv", "separable_conv", "lowrank_conv", "twist_conv"}
