"""benchmarks/hidden_seeds.py: the hidden draw changes only the keys it names, and the comparison counts a flip
as a flip."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import hidden_seeds  # noqa: E402
from hidden_seeds import Direction  # noqa: E402


@pytest.mark.parametrize("study", ["permuted-fashion.yaml", "permuted-fashion-2d.yaml"])
def test_a_draw_changes_only_the_hidden_keys_budget_and_storage(study):
    keys = hidden_seeds.draw(7)
    assert keys == hidden_seeds.draw(7) and keys != hidden_seeds.draw(8)
    assert 10_000 <= keys["train_samples"] <= 20_000 and keys["train_samples"] % 1_000 == 0
    text = (hidden_seeds.ROOT / "studies" / study).read_text()
    shipped = yaml.safe_load(text)
    hidden = hidden_seeds.hidden_config(shipped, keys, 11, 12, "draw-7")
    assert shipped == yaml.safe_load(text)  # the shipped config is left as it was
    assert hidden["dataset"] == {**shipped["dataset"], "seed": keys["seed"], "permute_seed": keys["permute_seed"],
                                 "train_samples": keys["train_samples"]}
    assert hidden["sampler"] == {**shipped["sampler"], "seed": keys["sampler_seed"]}
    assert hidden["budget"] == {**shipped["budget"], "minutes": 11}
    assert hidden["baseline"] == {**shipped["baseline"], "trials": 12}
    unchanged = set(shipped) - {"name", "dataset", "sampler", "budget", "baseline", "storage"}
    assert unchanged and all(hidden[k] == shipped[k] for k in unchanged)
    assert hidden["storage"] != shipped["storage"] and hidden["name"] != shipped["name"]


def test_the_comparison_counts_agreements_and_flips():
    shipped = Direction((1_000_000, 0.89), (50_000, 0.875), None, 8, 1, {"twist": True, "gap head": True}, 10)
    hidden = Direction((2_000_000, 0.90), (40_000, 0.885), (60_000, 0.895), 6, 4, {"twist": False, "gap head": True,
                                                                                     "only here": True}, 9)
    lines, agree, compared = hidden_seeds.table(shipped, hidden)
    # within 2: both fewer (same); within 1: none vs 33x fewer (flip); dense front: 1 of 8 vs 4 of 6 (flip);
    # twist flips, gap head holds; a choice compared on one draw only is left out
    assert (agree, compared) == (2, 5)
    assert sum("| NO |" in line for line in lines) == 3 and not any("only here" in line for line in lines)
    assert any("20.0x fewer (50,000 params, 87.5%)" in line and "50.0x fewer (40,000 params, 88.5%)" in line
               for line in lines)
