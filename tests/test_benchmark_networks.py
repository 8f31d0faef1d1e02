"""The hand-written networks of benchmarks/throughput.py compute what the compiled genomes compute (else its
ratios would compare different work)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import throughput  # noqa: E402

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
