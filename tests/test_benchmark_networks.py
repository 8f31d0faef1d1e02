"""The hand-written networks of benchmarks/throughput.py compute what the compiled genomes compute (else its
ratios would compare different work); benchmarks/hand_genomes.py's networks are genomes the conv2d preset draws."""
from __future__ import annotations

import sys
import warnings
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import hand_genomes  # noqa: E402
import throughput  # noqa: E402

from nas.study.config import load_config  # noqa: E402
from search_space import build_model  # noqa: E402


@pytest.mark.parametrize("name", list(throughput.GENOMES))
def test_hand_written_equals_compiled_with_the_same_weights(name):
    torch.manual_seed(0)
    genome = throughput.GENOMES[name]()
    compiled = build_model(genome)
    hand = throughput.hand_network(name, compiled)
    throughput.copy_weights(compiled, hand)
    x = torch.randn(8, 1, 28, 28)
    assert throughput.check_parity(name, compiled, hand, x) <= 1e-4
    assert sum(p.numel() for p in hand.parameters()) == genome.params


def test_a_different_network_is_caught():
    torch.manual_seed(0)
    compiled = build_model(throughput.GENOMES["separable"]())
    hand = throughput.hand_network("separable", compiled)  # weights not copied: another function
    with pytest.raises(RuntimeError, match="differ"):
        throughput.check_parity("separable", compiled, hand, torch.randn(8, 1, 28, 28))


SPACES = {"conv2d": {"preset": "conv2d"}, "fashion-tenth-narrow": load_config(
    Path(__file__).resolve().parents[1] / "studies" / "fashion-tenth-narrow.yaml").search_space}
_narrow = SPACES["fashion-tenth-narrow"]
NARROW = [name for name, stages in hand_genomes.NETWORKS.items()
          if _narrow["stages"]["low"] <= len(stages) <= _narrow["stages"]["high"]
          and all(op in _narrow["conv_type"] and channels in _narrow["channels"] and kernel in _narrow["kernel"]
                  for op, channels, kernel, _ in stages)]


def test_the_narrowed_space_holds_six_hand_stacks_the_chosen_one_among_them():
    """studies/fashion-tenth-narrow.yaml's header: 6 of the 9 hand stacks, `sep5-16-32p-48-32p` among them."""
    assert "sep5-16-32p-48-32p" in NARROW and len(NARROW) == 6


@pytest.mark.parametrize("name,space", [(name, "conv2d") for name in hand_genomes.NETWORKS] +
                         [(name, "fashion-tenth-narrow") for name in NARROW])
def test_hand_genomes_fit_a_tenth_of_lenet5_and_the_conv2d_preset_draws_them(name, space):
    """The claim FINDINGS.md makes with them: the search space holds these networks (the same genome key as the
    preset's draw for the matching parameters), each under fashion-tenth's 6,168-parameter limit; and
    studies/fashion-tenth-narrow.yaml's narrowed space holds every one within its stage count, stage types,
    channels and kernels (its header's claim: 6 of 9), the chosen `sep5-16-32p-48-32p` among them."""
    import optuna

    from nas.search.genomes import sample_genome
    from nas.search.presets import resolve_space

    stages = hand_genomes.NETWORKS[name]
    params = {"reorder": "none", "stages": len(stages), "downsample": "pool", "pool": "max", "norm": "batch",
              "act": "relu", "dropout": 0.0, "head": "gap", "residual": False}
    for i, (op, channels, kernel, pool) in enumerate(stages, 1):
        params.update({f"s{i}_type": op, f"s{i}_channels": channels, f"s{i}_kernel": kernel,
                       f"s{i}_stride": 2 if pool else 1, f"s{i}_groups": 1, f"s{i}_reduce": "none"})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # FixedTrial only warns about a value outside the space: make it fail
        drawn = sample_genome(optuna.trial.FixedTrial(params), resolve_space(SPACES[space]), (1, 28, 28), 10)
    built = hand_genomes.stack(stages)
    assert drawn.key() == built.key() and built.params <= 61_684 // 10


@pytest.mark.parametrize("study, network, lr, params", [("fashion-tenth-seeded", "sep-16-32-48-48", 5e-3, 6_138),
                                                         ("fashion-tenth-full-seeded", "sep5-16-32p-48-32p", 1e-2, 5_946)])
def test_a_seeded_study_starts_from_the_hand_genome_it_names(study, network, lr, params):
    """studies/fashion-tenth-seeded.yaml's and fashion-tenth-full-seeded.yaml's headers (and FINDINGS.md) name the
    hand stack and lr their enqueued parameter set gives: it must draw that genome in the study's own space, every
    parameter given being one the space draws (else ``nas run``'s preflight refuses it)."""
    import optuna

    from nas.search.genomes import sample_genome
    from nas.search.presets import resolve_space
    from nas.study.config import load_config

    config = load_config(Path(__file__).resolve().parents[1] / "studies" / f"{study}.yaml")
    (given,) = config.enqueue
    fixed = optuna.trial.FixedTrial(given)
    drawn = sample_genome(fixed, resolve_space(config.search_space), (1, 28, 28), 10, {"grid": list(range(784))})
    assert set(given) - {"lr"} == set(fixed.params)
    assert drawn.key() == hand_genomes.stack(hand_genomes.NETWORKS[network]).key()
    assert drawn.params == params and given["lr"] == lr
