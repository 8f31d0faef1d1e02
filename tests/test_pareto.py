"""The Pareto-aware rung rule and the Pareto helpers, on hand-checked points (maximize everything)."""
from __future__ import annotations

import math

import pytest

from nas.scheduling.pareto import crowding_distance, dominates, hypervolume_2d, non_dominated_fronts, pareto_rank, rung_survivors


def test_dominance_and_fronts():
    assert dominates((0.9, -100), (0.8, -100)) and not dominates((0.9, -200), (0.8, -100))
    points = {"a": (0.9, -200), "b": (0.8, -100), "c": (0.7, -300), "d": (0.85, -150)}
    assert non_dominated_fronts(points) == [["a", "b", "d"], ["c"]]


def test_crowding_distance_prefers_the_extremes_and_sparse_regions():
    front = {"lo": (0.5, -10), "mid_crowded": (0.55, -12), "mid_sparse": (0.8, -60), "hi": (0.9, -100)}
    crowd = crowding_distance(front)
    assert crowd["lo"] == crowd["hi"] == math.inf
    assert crowd["mid_sparse"] > crowd["mid_crowded"]


def test_rung_keeps_top_third_by_pareto_rank():
    # nine trials at a rung: the three non-dominated ones survive with reduction factor 3
    rung = {1: (0.60, -1000), 2: (0.70, -5000), 3: (0.50, -400), 4: (0.55, -2000), 5: (0.40, -3000),
            6: (0.65, -6000), 7: (0.45, -900), 8: (0.30, -800), 9: (0.58, -5500)}
    assert rung_survivors(rung, 3) == {1, 2, 3}


def test_rung_breaks_ties_in_the_first_front_by_crowding():
    # one front of six; keep two: the two extremes (infinite crowding distance)
    rung = {n: (0.5 + 0.05 * n, -100.0 * n) for n in range(1, 7)}
    assert rung_survivors(rung, 3) == {1, 6}


def test_small_model_with_lower_accuracy_survives_where_accuracy_alone_would_prune_it():
    # the single-objective ASHA would keep only trial 2; the Pareto rule keeps the tiny model too
    rung = {1: (0.61, -500), 2: (0.70, -20000), 3: (0.65, -25000), 4: (0.60, -30000), 5: (0.55, -40000),
            6: (0.50, -50000)}
    assert rung_survivors(rung, 3) == {1, 2}


@pytest.mark.parametrize("n,expected", [(1, 1), (2, 1), (3, 1), (4, 2), (5, 2), (6, 2), (9, 3), (10, 4)])
def test_rung_keeps_the_top_third_rounded_up(n, expected):
    rung = {i: (i / 10, -float(i)) for i in range(n)}  # all on one front
    assert len(rung_survivors(rung, 3)) == expected


def test_two_extremes_are_told_apart_by_accuracy_not_trial_number():
    # both on one front with infinite crowding distance: the more accurate one goes on
    assert rung_survivors({1: (0.40, -100.0), 2: (0.70, -5000.0)}, 3) == {2}
    assert rung_survivors({1: (0.70, -5000.0), 2: (0.40, -100.0)}, 3) == {1}


def test_pareto_rank_is_deterministic():
    rung = {i: (0.5, -100.0) for i in range(5)}
    assert pareto_rank(rung) == pareto_rank(dict(reversed(list(rung.items()))))


def test_hypervolume_2d():
    assert hypervolume_2d([(0.5, -2.0)], (0.0, -4.0)) == pytest.approx(0.5 * 2.0)
    # two steps: (0.9, -3) and (0.5, -2) -> 0.9*1 + 0.5*1
    assert hypervolume_2d([(0.9, -3.0), (0.5, -2.0), (0.4, -2.5)], (0.0, -4.0)) == pytest.approx(1.4)
    assert hypervolume_2d([], (0.0, 0.0)) == 0.0


def test_the_smallest_model_goes_on_whatever_its_accuracy_unless_below_the_median_floor():
    """The extremes have infinite crowding: with two or more kept, the tiniest model is one of them."""
    rung = {1: (0.12, -100.0), 2: (0.60, -5000.0), 3: (0.58, -4000.0), 4: (0.55, -3000.0), 5: (0.50, -2000.0),
            6: (0.45, -1000.0)}
    assert rung_survivors(rung, 3) == {1, 2}
    assert rung_survivors(rung, 3, floor="median") == {2, 4}  # 1, 5, 6 are below the median (0.525): 2 go on
    assert len(rung_survivors({k: rung[k] for k in (1, 2, 3)}, 2, floor="median")) == 2


def test_latency_is_left_out_of_rung_decisions():
    """Latency exists only for finished trials at a rung: it must not rank them below running ones."""
    from nas.scheduling.rungs import rung_point
    from nas.study.config import Objective

    objectives = [Objective(metric="val_accuracy", direction="maximize"),
                  Objective(metric="params", direction="minimize"),
                  Objective(metric="latency_ms", direction="minimize")]
    finished = rung_point(0.5, {"params": 10, "latency_ms": 5.0}, objectives)
    assert finished == rung_point(0.5, {"params": 10}, objectives) == (0.5, -10.0)


def random_points(rng, n: int, dims: int) -> dict:
    """Points with many ties and exact duplicates: half the coordinates come from four values."""
    return {i: tuple(float(rng.choice([0, 1, 2, 3])) if rng.random() < 0.5 else rng.random() for _ in range(dims))
            for i in range(n)}


@pytest.mark.parametrize("dims", [1, 2, 3])
def test_the_fast_fronts_equal_the_definition_on_random_points_with_ties(dims):
    import random

    from nas.scheduling.pareto import non_dominated_fronts_by_definition

    rng = random.Random(dims)
    for _ in range(400):
        points = random_points(rng, rng.randint(0, 40), dims)
        assert non_dominated_fronts(points) == non_dominated_fronts_by_definition(points)


def rank_by_definition(points: dict) -> list:
    """The ranking from its definition: fronts by pairwise dominance, then (-crowding, -accuracy, key as text)."""
    from nas.scheduling.pareto import non_dominated_fronts_by_definition

    order = []
    for front in non_dominated_fronts_by_definition(points):
        crowd = crowding_distance({k: points[k] for k in front})
        order += sorted(front, key=lambda k: (-crowd[k], -points[k][0], str(k)))
    return order


@pytest.mark.parametrize("dims", [2, 3])
def test_pareto_rank_and_rung_survivors_equal_the_definition_on_random_points_with_ties(dims):
    import random

    rng = random.Random(7 + dims)
    for _ in range(300):
        points = random_points(rng, rng.randint(1, 40), dims)
        expected = rank_by_definition(points)
        assert pareto_rank(points) == expected
        for factor in (2, 3, 4):
            keep = math.ceil(len(points) / factor)
            assert pareto_rank(points, keep)[:keep] == expected[:keep]
            assert rung_survivors(points, factor) == set(expected[:keep])
