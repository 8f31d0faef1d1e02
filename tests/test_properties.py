"""Property tests: any graph of ops, with any attribute values, is either a working network or a GenomeError.

Random DAGs of random ops (merges included) with attributes that are mostly plausible and sometimes nonsense
(wrong types, zero or negative sizes, unknown keys and ops, bad wiring, cycles, node names that clash with
Python or ``nn.Module``). A genome that validates must build, count the parameters it promised and map a
batch to ``(batch, classes)``; one that does not must say so with ``GenomeError`` and nothing else.
"""
from __future__ import annotations


import pytest
import torch
from hypothesis import HealthCheck, event, find, given, settings
from hypothesis import strategies as st

from search_space import Genome, GenomeError, build_model
from search_space.genome import MAX_PARAMS
from search_space.ops import REGISTRY

# derandomize: the same examples on every run. A clean-clone CI (2026-12-07) was killed for memory (24 GB) inside
# the per-op tests at random draws that 40 reruns did not reproduce; a CI run must not depend on the draw
SETTINGS = settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
BATCH = 3  # > 1, so batch norm in training mode has more than one value per channel
OPS = sorted(set(REGISTRY) - {"input", "output"})
MERGES = ("concat", "add")

NONSENSE = st.one_of(
    st.none(), st.booleans(), st.text(max_size=3), st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(2**70), 2**70), st.lists(st.integers(-2, 4), max_size=3),
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=1),
)
# Names that are not plain identifiers, or that are taken by Python or by torch.fx.GraphModule.
NAMES = st.sampled_from(["n", "conv", "x", "training", "forward", "class", "None", "graph", "code", "_modules",
                         "__init__", "a.b", "a b", "1st", "ü", "", "self", "torch", "type", "cuda"])


FLAT_OPS = ["dense", "reshape", "norm", "act", "dropout", "permute"]
CONVS = ["conv", "twist_conv", "factorized_conv", "separable_conv", "lowrank_conv"]
MAP_OPS = 3 * CONVS + ["reduce", "pool", "global_pool", "flatten", "norm", "act", "dropout", "permute"]


def plausible(op: str, key: str) -> st.SearchStrategy:
    """Values an attribute could sensibly take, boundary cases included (kernel 2, groups 3, stride 3...)."""
    spec = REGISTRY[op].attrs[key]
    if key == "pattern":
        return st.sampled_from(["none", "none", "shuffle", "cycle"])
    if spec.choices is not None:
        return st.sampled_from(spec.choices)
    if key == "shape" and op == "input":
        return st.one_of(st.lists(st.integers(4, 24), min_size=1, max_size=1),
                         st.tuples(st.integers(1, 4), st.integers(3, 12)).map(list),
                         st.tuples(st.integers(1, 4), st.integers(3, 8), st.integers(3, 8)).map(list),
                         st.tuples(st.sampled_from([2, 4, 6]), st.integers(3, 8), st.integers(3, 8)).map(list))
    if key == "shape":
        return st.one_of(st.tuples(st.integers(1, 4), st.just(-1)).map(list),
                         st.tuples(st.integers(1, 2), st.just(-1), st.integers(2, 4)).map(list),
                         st.lists(st.one_of(st.just(-1), st.integers(1, 8)), min_size=1, max_size=3))
    if key == "padding":
        return st.sampled_from(["same", "same", "valid", 0, 1, 2])
    if key == "seed":
        return st.integers(0, 2**65)
    if key == "p":
        return st.floats(0.0, 1.0)
    if spec.kind is bool:
        return st.booleans()
    if key == "kernel":
        return st.sampled_from([1, 3, 3, 3, 5, 2])
    if key == "groups":
        return st.sampled_from([1, 1, 1, 2, 2, 4, 3])
    if key == "cycle":
        return st.sampled_from([2, 2, 2, 4, 1])
    if key in ("stride", "dilation", "iters"):
        return st.sampled_from([1, 1, 2, 3])
    return st.sampled_from([1, 2, 3, 4, 5, 6, 8, 0])  # channels, features, rank


@st.composite
def attributes(draw, op: str, sane: bool) -> dict:
    """An op's attributes: each one plausible, left out, or (1 in 8 unless ``sane``) nonsense."""
    attrs = {}
    for key, spec in REGISTRY[op].attrs.items():
        roll = draw(st.integers(0, 15))
        if roll < (2 if not sane else 0 if spec.default is None else 6):
            continue  # left out: the default, or a missing required attribute
        attrs[key] = draw(NONSENSE if roll == 2 and not sane else plausible(op, key))
    if not sane and draw(st.integers(0, 9)) == 0:
        attrs["colour"] = "blue"
    return attrs


@st.composite
def genome_data(draw) -> dict:
    """Node-link data of a random DAG ``input -> ops -> output``.

    Usually each op is one that can read its source (flat ops on flat data, map ops on maps), so many genomes
    are valid; a third of the graphs are "wild": any op, nonsense values, miswiring, back edges (cycles).
    """
    wild = draw(st.integers(0, 2)) == 0
    nodes = [{"id": "in", "op": "input", **draw(attributes("input", not wild))}]
    shape = nodes[0].get("shape")
    flat = {"in": not isinstance(shape, list) or len(shape) == 1}  # whether a node's output is (roughly) flat
    edges = []
    for i in range(draw(st.integers(0, 6))):
        name = draw(NAMES)
        name = name if name not in flat else f"{name}{i}"
        source = draw(st.sampled_from(list(flat))) if wild and draw(st.integers(0, 3)) == 0 else list(flat)[-1]
        if wild and draw(st.booleans()):
            op = draw(st.one_of(st.sampled_from(OPS), st.sampled_from(["conv3d", "input", "output"]), NONSENSE))
        elif len(flat) > 1 and draw(st.integers(0, 5)) == 0:
            op = draw(st.sampled_from(MERGES))
        else:
            op = draw(st.sampled_from(FLAT_OPS if flat[source] else MAP_OPS))
        known = isinstance(op, str) and op in REGISTRY
        nodes.append({"id": name, "op": op, **(draw(attributes(op, not wild)) if known else {})})
        sources = [source]
        if op in MERGES:
            peers = [n for n in flat if n != source and (wild or flat[n] == flat[source])]
            sources += draw(st.lists(st.sampled_from(peers), min_size=0 if wild else 1, max_size=2,
                                     unique=True)) if peers else []
        elif wild and draw(st.integers(0, 4)) == 0:
            sources = draw(st.lists(st.sampled_from(list(flat)), max_size=2, unique=True))
        edges += [{"source": s, "target": name, "slot": slot} for slot, s in enumerate(sources)]
        reshaped = op == "reshape" and isinstance(nodes[-1].get("shape"), list) and len(nodes[-1]["shape"]) > 1
        flat[name] = op in ("flatten", "global_pool", "dense") or flat[source] and not reshaped
    last = list(flat)[-1]
    if not flat[last] and (wild or draw(st.integers(0, 5))):
        nodes.append({"id": "head", "op": "global_pool", "kind": draw(st.sampled_from(["avg", "max"]))})
        edges.append({"source": last, "target": "head", "slot": 0})
        last = "head"
    nodes.append({"id": "out", "op": "output"})
    edges.append({"source": last, "target": "out", "slot": 0})
    if wild and draw(st.integers(0, 5)) == 0 and len(flat) > 2:  # a back edge: usually a cycle
        edges.append({"source": draw(st.sampled_from(list(flat)[1:])),
                      "target": draw(st.sampled_from(list(flat)[1:])), "slot": 9})
    if wild and draw(st.integers(0, 9)) == 0:
        edges[draw(st.integers(0, len(edges) - 1))]["slot"] = draw(NONSENSE)
    return {"nodes": nodes, "edges": edges}


@SETTINGS
@given(genome_data())
def test_a_random_graph_is_a_working_network_or_a_genome_error(data):
    try:
        genome = Genome.from_dict(data)
    except GenomeError as exc:
        assert "\n" not in str(exc)
        return
    check_genome(genome)


def check_genome(genome: Genome) -> None:
    """Either GenomeError on validation, or a model with the promised parameters and output shape."""
    try:
        genome.validate()
    except GenomeError as exc:
        event("rejected")
        assert "\n" not in str(exc)
        return
    event("valid")
    model = build_model(genome)
    assert sum(p.numel() for p in model.parameters()) == genome.params
    torch.manual_seed(0)
    x = torch.randn(BATCH, *genome.input_shape)
    for mode in (True, False):
        out = model.train(mode)(x)
        assert tuple(out.shape) == (BATCH, genome.num_classes)
    again = Genome.from_json(genome.to_json())
    assert again.key() == genome.key() and again.params == genome.params and again.flops == genome.flops
    assert again.summary() == genome.summary() != ""


UNARY = [op for op in OPS if op not in MERGES]


@pytest.mark.parametrize("op", UNARY)
@settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_each_op_alone_is_a_working_layer_or_a_genome_error(op, data):
    sane = data.draw(st.integers(0, 3), "sane") > 0
    genome = Genome()
    x = genome.add("in", "input", **data.draw(attributes("input", True), "input"))
    x = genome.add("layer", op, [x], **data.draw(attributes(op, sane), "attributes"))
    genome.add("out", "output", [genome.add("head", "dense", [genome.add("flat", "flatten", [x])], out_features=3)])
    check_genome(genome)


# Genomes that validated before 2026-12-08 and asked torch for 0.97 TB, 8.9 TB and 4 GB: drawn by the per-op test
# above with other seeds (a hunt of 3,000 examples per op under a 6 GB address-space limit)
TOO_BIG = [
    ("factorized_conv", [4, 5, 8], {"out_channels": 8, "kernel": 3, "mid_channels": 20176390225}, "parameters"),
    ("lowrank_conv", [2, 4, 3], {"out_channels": 8, "padding": 152629, "rank": 1}, "'padding'=152629"),
    ("separable_conv", [2, 8, 8], {"out_channels": 20385168, "kernel": 5}, "values per sample"),
    ("separable_conv", [2, 8, 8], {"out_channels": 4, "kernel": 3, "padding": 1576}, "'padding'=1576"),
    ("conv", [1, 3000, 3000], {"out_channels": 8, "kernel": 3, "padding": "same"}, "values per sample"),
    # small output and parameters, a 2^32-value map inside the layer (found by review, 2026-12-08)
    ("lowrank_conv", [1, 8, 8], {"out_channels": 1, "kernel": 1, "rank": 2**26}, "inside its layer"),
    ("factorized_conv", [1, 8, 8], {"out_channels": 1, "kernel": 1, "mid_channels": 2**26}, "inside its layer"),
]


@pytest.mark.parametrize("op, shape, attrs, says", TOO_BIG)
def test_a_genome_too_big_to_build_is_a_genome_error_naming_its_node(op, shape, attrs, says):
    genome = Genome()
    x = genome.add("layer", op, [genome.add("in", "input", shape=shape)], **attrs)
    genome.add("out", "output", [genome.add("head", "dense", [genome.add("flat", "flatten", [x])], out_features=3)])
    with pytest.raises(GenomeError, match="node 'layer'") as exc:
        genome.validate()
    assert says in str(exc.value)


def test_the_size_limits_leave_room_for_real_networks():
    """More parameters than VGG-16 (138M) and its largest map (64 x 224 x 224) are within the limits."""
    genome = Genome()
    x = genome.add("in", "input", shape=[3, 224, 224])
    x = genome.add("conv", "conv", [x], out_channels=64, kernel=3, padding="same")
    x = genome.add("pool", "pool", [x], kernel=32, stride=32)
    x = genome.add("fc", "dense", [genome.add("flat", "flatten", [x])], out_features=4096 * 9)
    genome.add("out", "output", [genome.add("head", "dense", [x], out_features=1000)])
    assert 138_000_000 < genome.validate().params < MAX_PARAMS


@SETTINGS
@given(st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=4)),
                    lambda inner: st.one_of(st.lists(inner, max_size=3),
                                            st.dictionaries(st.sampled_from(["nodes", "edges", "id", "op", "source",
                                                                             "target", "slot", "shape"]), inner,
                                                            max_size=4)),
                    max_leaves=30))
def test_arbitrary_json_is_a_genome_or_a_genome_error(data):
    try:
        genome = Genome.from_dict(data)
        genome.validate()
    except GenomeError as exc:
        assert "\n" not in str(exc)
        return
    model = build_model(genome).eval()  # whatever JSON validates is a network with the promised size and output
    assert sum(p.numel() for p in model.parameters()) == genome.params
    assert tuple(model(torch.zeros(2, *genome.input_shape)).shape) == (2, genome.num_classes)


def validates(data: dict) -> bool:
    try:
        Genome.from_dict(data).validate()
    except GenomeError:
        return False
    return True


@pytest.mark.parametrize("wanted", [{"conv"}, {"twist_conv", "separable_conv"}, set(MERGES), {"dense"}])
def test_the_random_graphs_include_valid_networks_of_each_kind(wanted):
    """The properties above hold for valid genomes only if some are drawn: a strategy that only produced
    GenomeErrors would pass them all. ``find`` fails when no valid genome with one of ``wanted`` ops turns up."""
    found = find(genome_data(), lambda d: validates(d) and any(n["op"] in wanted for n in d["nodes"]),
                 settings=settings(max_examples=2000, database=None, suppress_health_check=list(HealthCheck)))
    assert Genome.from_dict(found).validate().params > 0
