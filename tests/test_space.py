"""Define-by-run genome sampling: valid, buildable, deterministic, covering every op choice; space errors."""
from __future__ import annotations

import collections
import math

import optuna
import pytest
import torch

from nas.errors import ConfigError
from nas.search.genomes import (PRESETS, dense_space, genome_family, reorder_request, resolve_space, sample_genome,
                                sample_mlp)
from nas.search.presets import dense_space_within
from search_space import GenomeError, build_model, get_zoo
from search_space.ops import REGISTRY

optuna.logging.set_verbosity(optuna.logging.WARNING)

SHAPES = [(40,), (1, 8, 8), (3, 16, 16)]
CLASSES = 10


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models: one thread avoids OpenMP spin contention when other jobs share the CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def stand_in_orders(space: dict, shape) -> dict[str, list[int]]:
    """An order for each reorder method the space offers on ``shape`` (reversed positions: any permutation is a
    valid order; what the data would give is tested in test_ordering.py)."""
    methods, image = reorder_request(space, shape)
    positions = {m: image[1] * image[2] if m == "grid" else math.prod(shape) for m in methods}
    return {m: list(range(n))[::-1] for m, n in positions.items()}


def sample(preset: str | dict, shape, n: int, seed: int = 0, with_orders: bool = False):
    """``n`` (trial, genome) pairs from a RandomSampler study, asked define-by-run (``with_orders``: the space's
    reorder choice offered too)."""
    space = resolve_space({"preset": preset} if isinstance(preset, str) else preset)
    orders = stand_in_orders(space, shape) if with_orders else None
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed))
    out = []
    for _ in range(n):
        trial = study.ask()
        out.append((trial, sample_genome(trial, space, shape, CLASSES, orders)))
    return out


def valid(pairs):
    good = []
    for trial, genome in pairs:
        try:
            good.append((trial, genome.validate()))
        except GenomeError:
            pass
    return good


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("preset", list(PRESETS))
def test_sampled_genomes_are_valid_and_run(preset, shape):
    pairs = sample(preset, shape, 60, seed=1)
    good = valid(pairs)
    assert len(good) >= 0.8 * len(pairs)
    batch = torch.randn(2, *shape)
    for _, genome in good[::3]:
        model = build_model(genome).eval()
        with torch.no_grad():
            assert model(batch).shape == (2, CLASSES), genome.summary()
        assert sum(p.numel() for p in model.parameters()) == genome.params


@pytest.mark.parametrize("preset", list(PRESETS))
def test_same_seed_same_genomes(preset):
    first = [g.key() for _, g in valid(sample(preset, (1, 8, 8), 12, seed=7))]
    again = [g.key() for _, g in valid(sample(preset, (1, 8, 8), 12, seed=7))]
    other = [g.key() for _, g in valid(sample(preset, (1, 8, 8), 12, seed=8))]
    assert first == again and first != other


def test_a_finished_trial_rebuilds_its_genome():
    """Replaying a FrozenTrial's params through the sampler gives the same network (export of the best)."""
    space = resolve_space({"preset": "full"})
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(3))
    keys = []
    for _ in range(8):
        trial = study.ask()
        keys.append(sample_genome(trial, space, (40,), CLASSES).key())
        study.tell(trial, 0.0)
    assert [sample_genome(t, space, (40,), CLASSES).key() for t in study.trials] == keys


def test_every_op_and_attribute_choice_is_reachable():
    """Across the presets, sampled genomes use every registered op and every value of every choice attribute."""
    ops, choices, heads, iters = set(), collections.defaultdict(set), set(), set()
    for preset in PRESETS:
        for shape in [(40,), (3, 16, 16)]:
            for trial, genome in valid(sample(preset, shape, 80, seed=11, with_orders=True)):
                heads |= {v for k, v in trial.params.items() if k.split(".")[-1] == "head"}
                for info in genome.analyze().values():
                    ops.add(info.op)
                    for attr, value in info.attrs.items():
                        if not isinstance(value, list):
                            choices[info.op, attr].add(value)
                    if info.op == "twist_conv":
                        iters.add(info.attrs["iters"] > 1)
    assert ops == set(REGISTRY)
    for name, op in REGISTRY.items():
        for attr, spec in op.attrs.items():
            if spec.choices:
                assert choices[name, attr] == set(spec.choices), (name, attr)
    assert heads == {"gap", "gmp", "allcnn", "dense"} and iters == {False, True}
    assert {True, False} <= choices["conv", "bias"] and len(choices["conv", "groups"]) == 3


def test_conditional_parameters_exist_only_with_their_layer():
    for trial, genome in sample("conv2d", (3, 16, 16), 80, seed=5):
        params = trial.params
        stages = params.get("stages", 1)
        assert not any(k.startswith(f"s{stages + 1}_") for k in params)
        for i in range(1, stages + 1):
            kind = params[f"s{i}_type"]
            assert (f"s{i}_rank" in params) == (kind == "lowrank_conv")
            assert (f"s{i}_kernel" in params) == (kind != "twist_conv")
            if f"s{i}_pattern" in params:
                assert genome.analyze()[f"s{i}_conv"].attrs["groups"] > 1
            if f"s{i}_cycle" in params:
                assert params[f"s{i}_pattern"] == "cycle"
        assert ("pool" in params) == (params["downsample"] == "pool")


def test_full_prefixes_parameters_by_family():
    names = set()
    for trial, _ in sample("full", (40,), 40, seed=2):
        names |= set(trial.params)
    families = {n.split(".")[0] for n in names if "." in n}
    assert families == {"perm-1d", "conv2d"} and "family" in names
    assert {"perm-1d.s1_type", "conv2d.s1_type", "conv2d.s1_reduce"} & names


def test_perm_cnn_1d_sizes_suit_mnist1d():
    params = sorted(g.params for _, g in valid(sample("perm-cnn-1d", (40,), 120, seed=4)))
    assert 1_000 <= params[len(params) // 2] <= 20_000
    assert sum(1_000 <= p <= 50_000 for p in params) >= 0.75 * len(params)


def test_conv2d_needs_an_image_or_reshapeable_features():
    with pytest.raises(ConfigError, match="search_space.family"):
        sample("conv2d", (41,), 1)
    assert {genome_family(g) for _, g in valid(sample("conv2d", (784,), 5))}  # reshapes to 1x28x28
    pairs = sample("full", (41,), 15)
    assert all("family" not in t.params and g.analyze()["b1_reshape"] for t, g in pairs)
    genome = sample({"preset": "conv2d", "image_shape": [2, 4, 5]}, (40,), 1)[0][1]
    assert genome.analyze()["reshape"].shape == (2, 4, 5)
    with pytest.raises(ConfigError, match=r"search_space.image_shape: \[2, 4, 5\] holds 40 values"):
        sample({"preset": "conv2d", "image_shape": [2, 4, 5]}, (3, 16, 16), 1)


def test_overrides_narrow_the_space():
    space = {"preset": "perm-cnn-1d", "conv_type": ["conv"], "groups": [4], "pattern": "cycle", "cycle": [4],
             "channels": [32], "stages": 2, "input_permutations": 1, "reshape_channels": [4, 7]}
    for trial, genome in valid(sample(space, (40,), 10)):
        assert "s1_type" not in trial.params and "reshape_channels" not in trial.params  # 7 does not divide 40
        convs = [i.attrs for i in genome.analyze().values() if i.op == "conv"]
        assert len(convs) == 2 and all(c["groups"] == 4 and c["pattern"] == "cycle" for c in convs)
        assert genome_family(genome) == "grouped-pattern"


@pytest.mark.parametrize("spec, message", [
    ({"preset": "nope"}, "search_space.preset: unknown preset 'nope'; valid: perm-cnn-1d, conv2d, full"),
    ({"preset": "conv2d", "kernal": [3]}, "search_space.kernal: unknown key"),
    ({"preset": "conv2d", "pattern": ["zigzag"]}, "search_space.pattern: 'zigzag' is not a valid choice"),
    ({"preset": "conv2d", "kernel": [4]}, "search_space.kernel: kernels must be odd"),
    ({"preset": "conv2d", "channels": []}, "search_space.channels: the list of choices is empty"),
    ({"preset": "conv2d", "stages": {"low": 3, "high": 1}}, "search_space.stages: range low=3 is above high=1"),
    ({"preset": "conv2d", "dropout": {"low": 0.0, "high": 1.0}}, "search_space.dropout: dropout must be below 1"),
    ({"preset": "conv2d", "reshape_channels": [4]}, "search_space.reshape_channels: only used by family 'perm-1d'"),
    ({"preset": "perm-cnn-1d", "image_shape": [1, 5, 8]}, "search_space.image_shape: only used by family"),
    ({"preset": "full", "image_shape": [5, 8]}, r"search_space.image_shape: expected null or \[C, H, W\]"),
    ({"channels": [8]}, "search_space: give 'preset'"),
    ("perm-cnn-1d", "search_space: expected a mapping"),
])
def test_resolve_space_errors_name_the_field(spec, message):
    with pytest.raises(ConfigError, match=message):
        resolve_space(spec)


def test_resolve_space_fills_inline_spaces_from_their_family():
    assert resolve_space({"family": "conv2d"}) == PRESETS["conv2d"]
    assert resolve_space({"family": ["perm-1d", "conv2d"]}) == PRESETS["full"]
    space = resolve_space({"family": "perm-1d", "channels": [8, 16]})
    assert space["channels"] == [8, 16] and space["kernel"] == PRESETS["perm-cnn-1d"]["kernel"]
    space = resolve_space({"preset": "perm-cnn-1d", "family": "conv2d"})  # conv2d's own keys come from conv2d
    assert space["kernel"] == [3, 5, 7] and space["reduce"] == PRESETS["conv2d"]["reduce"]
    assert valid(sample({"preset": "perm-cnn-1d", "family": "conv2d"}, (1, 8, 8), 5))
    space["kernel"].append(9)
    assert PRESETS["perm-cnn-1d"]["kernel"] == [3, 5, 7]  # resolved spaces are copies


@pytest.mark.parametrize("name, family", [("perm-cnn", "permutation"), ("multi-perm-cnn", "permutation"),
                                          ("convtwist-block", "twist"), ("decomposeme", "decomposed"),
                                          ("all-cnn-c", "plain"), ("lenet5", "plain"), ("mnist1d-mlp", "dense"),
                                          ("dense-baseline", "dense")])
def test_genome_family_of_zoo_genomes(name, family):
    assert genome_family(get_zoo(name).build()) == family


def test_sample_mlp_is_the_dense_baseline():
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(0))
    space, depths = dense_space(), set()
    for _ in range(20):
        trial = study.ask()
        genome = sample_mlp(trial, (40,), CLASSES, space).validate()
        dense = [i for i in genome.analyze().values() if i.op == "dense"]
        depths.add(len(dense) - 1)
        assert all(d.shape[0] in space["width"] for d in dense[:-1]) and dense[-1].shape == (CLASSES,)
        assert 0.0 <= trial.params["dropout"] <= 0.5 and genome_family(genome) == "dense"
    assert depths == {1, 2, 3}


def test_a_dense_space_within_a_size_limit_offers_only_networks_that_fit():
    """Each depth offers the widths whose all-that-wide network fits; any mix of them then fits too."""
    space = dense_space_within(resolve_space({"preset": "dense"}), 40, CLASSES, 20_000)
    assert set(space["width_by_depth"]) == {1, 2, 3} and max(space["width_by_depth"][1]) == 384
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(0))
    for _ in range(60):
        trial = study.ask()
        genome = sample_mlp(trial, (40,), CLASSES, space).validate()
        depth = trial.params["depth"]
        assert 0 < genome.params <= 20_000 and set(trial.params) == {"depth", "dropout", *(
            f"d{depth}_l{i}_width" for i in range(1, depth + 1))}
    tight = dense_space_within(resolve_space({"preset": "dense"}), 40, CLASSES, 1_000)
    assert tight["depth"] == [1] and tight["width_by_depth"] == {1: [16]}  # 16 wide: 826 params; depth 2 cannot fit


def test_a_dense_space_below_every_listed_width_offers_the_widest_layer_that_fits():
    """A 6,168-param limit on 784 pixels: 784 -> 16 -> 10 has 12,730 params, so no listed width fits. The baseline
    then offers one hidden layer of 7 units (784*7 + 7 + 7*10 + 10 = 5,575 params; 8 units: 6,370), 3 and 1,
    instead of spending every trial on an infeasible network."""
    space = dense_space_within(resolve_space({"preset": "dense"}), 784, 10, 6_168)
    assert space["depth"] == [1] and space["width_by_depth"] == {1: [1, 3, 7]}
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(0))
    sizes = {sample_mlp(study.ask(), (784,), 10, space).validate().params for _ in range(30)}
    assert sizes == {784 + 1 + 10 + 10, 784 * 3 + 3 + 30 + 10, 5_575}


def test_a_size_limit_no_mlp_fits_is_a_config_error_naming_the_way_out():
    with pytest.raises(ConfigError, match=r"784 -> 1 -> 10, has 805 params.*baseline.trials: 0"):
        dense_space_within(resolve_space({"preset": "dense"}), 784, 10, 800)


def test_reorder_is_offered_with_orders_from_the_training_split_and_only_then(tmp_path):
    from evaluators.datasets import load_dataset
    from evaluators.ordering import data_orders

    space = resolve_space({"preset": "perm-cnn-1d", "stages": 1})
    data = load_dataset("mnist1d:permute")
    methods, image = reorder_request(space, data.input_shape)
    assert methods == ["chain", "spectral"]
    orders = data_orders(data.x_train.numpy(), methods, image, tmp_path)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(0))
    drawn = set()
    for _ in range(30):
        trial = study.ask()
        genome = sample_genome(trial, space, data.input_shape, 10, orders).validate()
        nodes = {n: d for n, d in genome.graph.nodes(data=True)}
        method = trial.params["reorder"]
        drawn.add(method)
        if method == "none":
            assert "reorder" not in nodes
        else:
            assert nodes["reorder"]["order"] == orders[method] and genome_family(genome) in ("reordered", "twist",
                                                                                              "grouped-pattern",
                                                                                              "decomposed")
        plain = sample_genome(optuna.create_study().ask(), space, data.input_shape, 10)  # no data: no reorder
        assert all(d["op"] != "reorder" for _, d in plain.graph.nodes(data=True))
    assert drawn == {"none", "spectral", "chain"}
    grid_space = resolve_space({"preset": "conv2d", "stages": 1})
    assert reorder_request(grid_space, (1, 8, 8)) == (["grid"], (1, 8, 8))
