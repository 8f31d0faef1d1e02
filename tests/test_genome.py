"""Genome validation errors, JSON round trip and the canonical key."""
from __future__ import annotations

import json

import pytest
import torch

from search_space import Genome, GenomeError, build_model, get_zoo
from search_space.zoo import ZOO


def chain(input_shape, *layers) -> Genome:
    g = Genome()
    x = g.add("input", "input", shape=list(input_shape))
    for i, (op, attrs) in enumerate(layers):
        x = g.add(f"n{i}_{op}", op, [x], **attrs)
    g.add("output", "output", [x])
    return g


FLAT_HEAD = [("flatten", {}), ("dense", {"out_features": 3})]

INVALID = {
    "reorder that is not a permutation": (chain((6,), ("reorder", {"order": [0, 1, 1, 2, 3, 4]}), *FLAT_HEAD[1:]),
                                          "n0_reorder", "order"),
    "reorder of the wrong size": (chain((2, 5), ("reorder", {"order": [1, 0]}), *FLAT_HEAD), "n0_reorder", "order"),
    "groups do not divide channels": (chain((6, 8, 8), ("conv", {"out_channels": 8, "groups": 4}), *FLAT_HEAD),
                                      "n0_conv", "groups"),
    "cycle does not divide groups": (chain((8, 8), ("conv", {"out_channels": 8, "groups": 4, "pattern": "cycle",
                                                             "cycle": 3}), *FLAT_HEAD), "n0_conv", "cycle"),
    "pattern without groups": (chain((8, 8), ("conv", {"out_channels": 8, "pattern": "shuffle"}), *FLAT_HEAD),
                               "n0_conv", "pattern"),
    "stride empties a dimension": (chain((4, 3), ("conv", {"out_channels": 4, "kernel": 5, "padding": "valid"}),
                                         *FLAT_HEAD), "n0_conv", "stride"),
    "pool empties a dimension": (chain((4, 1), ("pool", {"kernel": 2}), *FLAT_HEAD), "n0_pool", "kernel"),
    "reshape does not divide": (chain((10,), ("reshape", {"shape": [3, -1]}), *FLAT_HEAD), "n0_reshape", "shape"),
    "reshape wrong total": (chain((10,), ("reshape", {"shape": [2, 4]}), *FLAT_HEAD), "n0_reshape", "shape"),
    "conv on flat input": (chain((10,), ("conv", {"out_channels": 4}), *FLAT_HEAD), "n0_conv", "reshape"),
    "dense on a map": (chain((4, 10), ("dense", {"out_features": 3})), "n0_dense", "flatten"),
    "even kernel same padding": (chain((4, 10), ("conv", {"out_channels": 4, "kernel": 4}), *FLAT_HEAD),
                                 "n0_conv", "padding"),
    "unknown attribute": (chain((4, 10), ("conv", {"out_channels": 4, "kernal": 3}), *FLAT_HEAD), "n0_conv", "kernal"),
    "missing attribute": (chain((4, 10), ("conv", {}), *FLAT_HEAD), "n0_conv", "out_channels"),
    "wrong type": (chain((4, 10), ("conv", {"out_channels": "8"}), *FLAT_HEAD), "n0_conv", "out_channels"),
    "bad choice": (chain((4, 10), ("act", {"fn": "swish"}), *FLAT_HEAD), "n0_act", "fn"),
    "unknown op": (chain((4, 10), ("conv3d", {}), *FLAT_HEAD), "n0_conv3d", "conv3d"),
    "twist iters needs same shape": (chain((4, 8, 8), ("twist_conv", {"out_channels": 8, "iters": 2}), *FLAT_HEAD),
                                     "n0_twist_conv", "iters"),
    "factorized needs 2D": (chain((4, 10), ("factorized_conv", {"out_channels": 4}), *FLAT_HEAD),
                            "n0_factorized_conv", "(C, H, W)"),
    "dropout p of 1": (chain((10,), ("dropout", {"p": 1.0}), ("dense", {"out_features": 2})), "n0_dropout", "'p'"),
    "output not flat": (chain((4, 10), ("conv", {"out_channels": 4})), "output", "flat"),
}


@pytest.mark.parametrize("case", sorted(INVALID))
def test_invalid_genome_names_node_and_attribute(case):
    genome, node, word = INVALID[case]
    with pytest.raises(GenomeError) as err:
        genome.validate()
    message = str(err.value)
    assert "\n" not in message
    assert repr(node) in message and word in message


def merge_genome(merge: str, second_channels: int = 4, second_length: int = 10) -> Genome:
    g = Genome()
    x = g.add("input", "input", shape=[40])
    a = g.add("ra", "reshape", [x], shape=[4, -1])
    b = g.add("rb", "reshape", [g.add("perm", "permute", [x], seed=1)], shape=[4, -1])
    b = g.add("conv", "conv", [b], out_channels=second_channels, kernel=1 if second_length == 10 else 3,
              padding="valid" if second_length != 10 else "same")
    m = g.add("merge", merge, [a, b])
    g.add("output", "output", [g.add("d", "dense", [g.add("f", "flatten", [m])], out_features=2)])
    return g


def test_structural_errors():
    with pytest.raises(GenomeError, match="concat needs inputs of equal spatial size"):
        merge_genome("concat", second_length=8).validate()
    with pytest.raises(GenomeError, match="add needs inputs of one shape"):
        merge_genome("add", second_channels=6).validate()
    cyclic = chain((10,), ("dense", {"out_features": 4}), ("dense", {"out_features": 4}))
    cyclic.graph.add_edge("n1_dense", "n0_dense", slot=1)
    with pytest.raises(GenomeError, match="cycle"):
        cyclic.validate()
    dangling = chain((10,), ("dense", {"out_features": 3}))
    dangling.add("spare", "dense", ["input"], out_features=2)
    with pytest.raises(GenomeError, match="'spare': dangling"):
        dangling.validate()
    two_inputs = chain((10,), ("dense", {"out_features": 3}))
    two_inputs.add("input2", "input", shape=[10])
    with pytest.raises(GenomeError, match="exactly one 'input'"):
        two_inputs.validate()
    with pytest.raises(GenomeError, match="takes two or more inputs"):
        chain((10,), ("concat", {}), ("dense", {"out_features": 2})).validate()


@pytest.mark.parametrize("name", sorted(ZOO))
def test_json_round_trip_builds_the_same_network(name):
    genome = get_zoo(name).build()
    again = Genome.from_json(genome.to_json())
    assert again.key() == genome.key() and again.params == genome.params
    torch.manual_seed(0)
    first = build_model(genome).eval()
    torch.manual_seed(0)
    second = build_model(again).eval()
    x = torch.randn(2, *genome.input_shape)
    assert torch.equal(first(x), second(x))


def test_key_ignores_node_names_but_not_architecture():
    genome = get_zoo("perm-cnn").build((40,), 10)
    data = genome.to_dict()
    renames = {node["id"]: f"x{i}" for i, node in enumerate(reversed(data["nodes"]))}
    for node in data["nodes"]:
        node["id"] = renames[node["id"]]
    for edge in data["edges"]:
        edge["source"], edge["target"] = renames[edge["source"]], renames[edge["target"]]
    assert Genome.from_dict(data).key() == genome.key()
    wider = json.loads(genome.to_json())
    next(n for n in wider["nodes"] if n["op"] == "conv")["out_channels"] = 32
    assert Genome.from_dict(wider).key() != genome.key()
    explicit = json.loads(genome.to_json())
    next(n for n in explicit["nodes"] if n["op"] == "conv")["dilation"] = 1  # the default, written out
    assert Genome.from_dict(explicit).key() == genome.key()


def test_key_respects_concat_order_but_not_add_order():
    def swapped(merge):
        g = merge_genome(merge)
        for source, slot in (("ra", 1), ("conv", 0)):
            g.graph.edges[source, "merge"]["slot"] = slot
        return g
    assert swapped("add").key() == merge_genome("add").key()
    assert swapped("concat").key() != merge_genome("concat").key()


def test_a_known_key_is_taken_as_given_for_that_graph_only():
    """A Ray trial's genome carries the key its driver computed: the same graph is not hashed again."""
    genome = get_zoo("perm-cnn").build((40,), 10)
    text = genome.to_json()
    vouched = Genome.from_json(text).with_known_key("sent-by-the-driver")
    assert vouched.key() == Genome.from_json(text).key() == "sent-by-the-driver"
    other = json.loads(text)
    next(n for n in other["nodes"] if n["op"] == "conv")["out_channels"] = 32
    assert Genome.from_dict(other).key() != "sent-by-the-driver"
    Genome.from_json(text).with_known_key(get_zoo("perm-cnn").build((40,), 10)._wl_key())  # the true key again


def test_load_errors_name_the_file(tmp_path):
    with pytest.raises(GenomeError, match="missing.json"):
        Genome.load(tmp_path / "missing.json")
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(GenomeError, match="broken.json: not valid JSON"):
        Genome.load(broken)
    with pytest.raises(GenomeError, match="'nodes' and 'edges'"):
        Genome.from_dict([1, 2])
