"""The spread start (``sampler.start: spread``, nas/search/start.py): a study's first sampled trials cover the size
range from the smallest networks to the large ones, at a fraction of a random draw's cost, each taken once across
workers and resumes, and never left waiting past the budget."""
from __future__ import annotations

import statistics

import optuna
import pytest
from optuna.trial import TrialState

import conftest
from nas.cli import main
from nas.errors import ConfigError
from nas.execution.trial import trial_context
from nas.search.genomes import sample_genome
from nas.search.presets import resolve_space
from nas.search.start import spread_start, start_size
from nas.study.config import StudyConfig, parse_config
from nas.study.plan import RunPlan
from search_space import GenomeError

SHAPE, CLASSES, MAX_PARAMS = (256,), 10, 300_000


def config_of(**sampler) -> StudyConfig:
    return parse_config({"name": "t", "dataset": {"name": "synthetic", "shape": list(SHAPE), "classes": CLASSES},
                         "search_space": {"preset": "perm-cnn-1d", "reorder": ["none"]},
                         "constraints": {"max_params": MAX_PARAMS}, "budget": {"trials": 200},
                         "sampler": {"name": "tpe", **sampler}})


def random_draws(space: dict, seed: int, count: int = 400) -> list:
    """Feasible genomes drawn at random, as a sampler's own start draws them (a seed the start does not use)."""
    study, genomes = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed)), []
    for _ in range(count):
        try:
            genome = sample_genome(study.ask(), space, SHAPE, CLASSES).validate()
        except GenomeError:
            continue
        if genome.params <= MAX_PARAMS:
            genomes.append(genome)
    return genomes


@pytest.mark.parametrize("seed", [0, 1])
def test_the_start_spans_the_sizes_random_draws_reach_at_a_fraction_of_their_cost(seed):
    config = config_of(seed=seed)
    space = resolve_space(config.search_space)
    sets = spread_start(config, space, SHAPE, CLASSES)
    chosen = [sample_genome(optuna.trial.FixedTrial(p), space, SHAPE, CLASSES).validate() for p in sets]
    drawn = random_draws(space, seed=99 + seed)
    sizes = sorted(g.params for g in drawn)
    assert len(chosen) == start_size(config) == 10  # TPE's startup trials at a 200-trial budget
    assert all(g.params <= MAX_PARAMS for g in chosen)
    # measured on seeds 0-3: the smallest chosen is at random's 2nd percentile or below, the largest above its
    # 80th; the chosen genomes' median multiply-adds are 1/7 to 1/11 of the random draws'
    assert min(g.params for g in chosen) <= sizes[len(sizes) // 10]
    assert max(g.params for g in chosen) >= sizes[len(sizes) * 3 // 4]
    assert statistics.median(g.flops for g in chosen) < statistics.median(g.flops for g in drawn) / 3
    assert [g.flops for g in chosen] == sorted(g.flops for g in chosen)  # cheapest first
    assert spread_start(config, space, SHAPE, CLASSES) == sets  # every worker chooses the same sets
    assert spread_start(config_of(seed=seed + 7), space, SHAPE, CLASSES) != sets


def test_random_search_and_start_random_keep_the_samplers_own_start():
    assert start_size(config_of(name="random")) == 0 and start_size(config_of(start="random")) == 0
    assert start_size(config_of(name="random", start="spread")) == 10
    assert start_size(config_of(name="nsga2")) == 50  # its first generation: a quarter of 200 trials, at most 50
    assert start_size(config_of(name="nsga2", population_size=8).model_copy(update={"warm_start": ["lenet5"]})) == 7
    with pytest.raises(ConfigError, match="sampler.start"):
        config_of(start="cheap")


STUDY = {
    "name": "s",
    "dataset": {"name": "synthetic", "shape": [32], "classes": 4, "samples": 300},
    "search_space": {"preset": "perm-cnn-1d", "reorder": ["none"]},
    "constraints": {"max_params": 20000},
    "sampler": {"name": "tpe", "seed": 0},
    "pruner": {"name": "none", "min_epochs": 1, "max_epochs": 1},
    "training": {"lr": 0.01, "batch_size": 64},
    "budget": {"trials": 4},
    "baseline": {"trials": 0},
    "warm_start": ["mnist1d-cnn"],
    "execution": {"workers": 2},
}


def test_two_workers_take_each_start_set_once_in_order_and_none_waits_past_the_budget(workdir):
    study_file, url = conftest.study_beside_storage(workdir / "s", STUDY)
    assert main(["run", str(study_file)]) == 0
    config = parse_config({**STUDY, "storage": url})
    ctx = trial_context(RunPlan(config, url), None)
    sets = spread_start(config, ctx.space, ctx.data.input_shape, ctx.data.num_classes, ctx.orders)
    assert len(sets) == 3  # TPE's 4 startup trials, cut to what the budget leaves after the zoo warm start

    trials = optuna.load_study(study_name="s", storage=url).get_trials()
    assert [t.state for t in trials if not t.state.is_finished()] == []  # nothing left waiting or running
    assert len(trials) == 4 and trials[0].user_attrs["zoo"] == "mnist1d-cnn"
    assert [t.system_attrs.get("fixed_params") for t in trials[1:]] == sets  # in order, each once
    assert all(t.params.items() >= sets[i].items() for i, t in enumerate(trials[1:]))  # trained what was fixed

    assert main(["run", str(study_file), "--trials", "7"]) == 0  # a resume: the search goes on from its sampler
    trials = optuna.load_study(study_name="s", storage=url).get_trials()
    fixed = [t.system_attrs.get("fixed_params") for t in trials]
    assert len(trials) == 7 and all(t.state == TrialState.COMPLETE for t in trials)
    assert fixed == [None, *sets, None, None, None]  # a resumed study draws its own points
