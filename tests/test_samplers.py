"""The samplers learn despite warm starts: a warm-start trial (a zoo genome, none of the preset's parameters) must not
turn NSGA-II into random search, as it does to Optuna's stock NSGA-II (its search space is what *every* trial has),
nor the default TPE; and a study says whether NSGA-II ever left its random generation 0."""
from __future__ import annotations

import statistics

import optuna
import pytest
from optuna.search_space import IntersectionSearchSpace

from nas.errors import ConfigError
from nas.search.samplers import BredSearchSpace, BreedingNSGAIISampler, generations, make_sampler
from nas.study.config import parse_config
from nas.study.summary import search_note

POPULATION = 10


def study_with_a_warm_start(sampler: optuna.samplers.BaseSampler) -> optuna.Study:
    """Two objectives, both minimized: (x, 1 - x + mean of y0..y5); the front has every y at 0. Trial 0 is a warm
    start (no params)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(directions=["minimize", "minimize"], sampler=sampler)
    warm = study.ask()
    warm.set_user_attr("zoo", "lenet5")
    study.tell(warm, [0.5, 0.5])

    def objective(trial: optuna.Trial) -> tuple[float, float]:
        x = trial.suggest_float("x", 0, 1)
        return x, 1 - x + statistics.fmean(trial.suggest_float(f"y{i}", 0, 1) for i in range(6))

    study.optimize(objective, n_trials=8 * POPULATION)
    return study


def last_generation_y(study: optuna.Study) -> float:
    return statistics.fmean(t.params[f"y{i}"] for t in study.trials[-2 * POPULATION:] for i in range(6))


def test_the_warm_start_is_left_out_of_the_search_space():
    study = study_with_a_warm_start(optuna.samplers.RandomSampler(seed=0))
    assert IntersectionSearchSpace().calculate(study) == {}  # what stock NSGA-II breeds over: nothing
    assert sorted(BredSearchSpace().calculate(study.get_trials(deepcopy=False))) == ["x", *(f"y{i}" for i in range(6))]


def test_breeding_nsga2_converges_where_stock_nsga2_draws_at_random():
    ours = study_with_a_warm_start(BreedingNSGAIISampler(seed=0, population_size=POPULATION))
    stock = study_with_a_warm_start(optuna.samplers.NSGAIISampler(seed=0, population_size=POPULATION))
    # measured on seeds 0-5: ours 0.20-0.38 (0.25 on seed 0), stock 0.48-0.53 (uniform draws: 0.5)
    assert last_generation_y(ours) < 0.35
    assert last_generation_y(stock) > 0.45


def test_the_default_tpe_learns_despite_a_warm_start():
    """TPE models each parameter from the trials that have it: the warm start does not make it draw at random."""
    config = parse_config({"name": "t", "dataset": {"name": "synthetic"}, "search_space": {"preset": "perm-cnn-1d"}})
    assert config.sampler.name == "tpe"
    tpe = study_with_a_warm_start(make_sampler(config))
    # measured on seeds 0-3 (n_startup_trials 10): TPE 0.19-0.28, random 0.48-0.52
    assert last_generation_y(tpe) < 0.35


def test_multivariate_tpe_learns_despite_a_warm_start():
    """sampler.multivariate models co-occurring parameters jointly; the warm start (no parameters) does not break
    its grouping, and on this problem it converges faster than independent TPE."""
    config = parse_config({"name": "t", "dataset": {"name": "synthetic"}, "search_space": {"preset": "perm-cnn-1d"},
                           "sampler": {"name": "tpe", "multivariate": True}})
    sampler = make_sampler(config)
    assert sampler._multivariate and sampler._group
    # measured on seeds 0-3: multivariate 0.09-0.20, independent TPE 0.19-0.28 (the test above)
    assert last_generation_y(study_with_a_warm_start(sampler)) < 0.25


def test_multivariate_is_refused_for_samplers_other_than_tpe():
    with pytest.raises(ConfigError, match="sampler: multivariate is a TPE setting; sampler 'nsga2'"):
        parse_config({"name": "t", "dataset": {"name": "synthetic"}, "search_space": {"preset": "perm-cnn-1d"},
                      "sampler": {"name": "nsga2", "multivariate": True}})


def test_the_search_space_is_read_incrementally_and_stays_right():
    study = study_with_a_warm_start(optuna.samplers.RandomSampler(seed=1))
    space = BredSearchSpace()
    trials = study.get_trials(deepcopy=False)
    assert sorted(space.calculate(trials[:30])) == ["x", *(f"y{i}" for i in range(6))]
    running = study.ask()  # unfinished: the next call reads from here on
    later = study.ask()
    later.suggest_float("x", 0, 1)
    study.tell(later, [0.1, 0.9])  # finished after an unfinished one, and without the y's: they leave the space
    assert sorted(space.calculate(study.get_trials(deepcopy=False))) == ["x"]
    running.suggest_float("x", 0, 1)
    running.suggest_float("z", 0, 1)
    study.tell(running, [0.2, 0.8])
    assert sorted(space.calculate(study.get_trials(deepcopy=False))) == ["x"]
    assert space.calculate(study.get_trials(deepcopy=False)) == BredSearchSpace().calculate(
        study.get_trials(deepcopy=False))


def test_a_study_asking_for_nsga2_gets_the_breeding_one():
    config = parse_config({"name": "s", "dataset": {"name": "mnist1d"}, "search_space": {"preset": "perm-cnn-1d"},
                           "sampler": {"name": "nsga2"}})
    assert isinstance(make_sampler(config), BreedingNSGAIISampler)


def test_samplers_that_would_draw_at_random_refuse_warm_starts():
    import pytest

    from nas.errors import ConfigError
    from nas.study.config import parse_config

    base = {"name": "s", "dataset": {"name": "mnist1d"}, "warm_start": ["mnist1d-cnn"]}
    for name in ("gp", "qmc"):
        with pytest.raises(ConfigError, match=f"sampler.name: {name} cannot be used with warm_start"):
            parse_config({**base, "sampler": {"name": name}})
    for name in ("nsga2", "tpe", "random"):
        assert parse_config({**base, "sampler": {"name": name}}).warm_start == ["mnist1d-cnn"]


def two_objective_study(population: int, trials: int) -> optuna.Study:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(directions=["minimize", "minimize"],
                                sampler=BreedingNSGAIISampler(seed=0, population_size=population))
    study.optimize(lambda t: (t.suggest_float("x", 0, 1), t.suggest_float("y", 0, 1)), n_trials=trials)
    return study


def test_the_summary_counts_generations_and_says_when_nsga2_never_bred():
    bred_study = two_objective_study(population=10, trials=30)
    assert generations(bred_study.trials) == {0: 10, 1: 10, 2: 10}
    assert search_note(generations(bred_study.trials)) == "NSGA-II bred generations 1-2 (20 of 30 trials)"
    random_study = two_objective_study(population=50, trials=30)  # the image studies' case: 50 > trials completed
    assert generations(random_study.trials) == {0: 30}
    assert search_note(generations(random_study.trials)).startswith("NSGA-II never bred: all 30 trials NSGA-II saw")
    assert search_note(generations(study_with_a_warm_start(optuna.samplers.RandomSampler(seed=0)).trials)) is None


def test_a_warm_start_is_never_a_parent_even_when_it_dominates_every_bred_trial():
    """A zoo genome has none of the preset's parameters, so it cannot be crossed over: our NSGA-II keeps it out of
    every parent population; Optuna's stock NSGA-II picks it in every generation (it dominates every bred trial)."""
    def parents_holding_the_warm_start(sampler: optuna.samplers.NSGAIISampler) -> list[int]:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.create_study(directions=["minimize", "minimize"], sampler=sampler)
        warm = study.ask()
        warm.set_user_attr("zoo", "lenet5")
        warm.suggest_float("lr", 1e-3, 1e-2, log=True)  # as in a study: a warm start draws only the training values
        study.tell(warm, [-1.0, -1.0])

        def objective(trial: optuna.Trial) -> tuple[float, float]:
            trial.suggest_float("lr", 1e-3, 1e-2, log=True)
            return trial.suggest_float("x", 0, 1), 1 - trial.suggest_float("x2", 0, 1)

        study.optimize(objective, n_trials=4 * POPULATION)
        warm_id = study.trials[0]._trial_id
        return [g for g in range(1, 4) if warm_id in {t._trial_id for t in sampler.get_parent_population(study, g)}]

    assert parents_holding_the_warm_start(BreedingNSGAIISampler(seed=0, population_size=POPULATION)) == []
    assert parents_holding_the_warm_start(optuna.samplers.NSGAIISampler(seed=0, population_size=POPULATION)) == [1, 2, 3]


def test_nas_run_warns_when_tpe_is_asked_for_more_trials_than_it_is_made_for(workdir, capsys):
    """TPE's time per trial grows with the study (benchmarks/sampler_scale.py): above 1,000 trials ``nas run`` says
    so in one line and names NSGA-II; at 1,000 or with NSGA-II it says nothing."""
    from conftest import write_study
    from nas.cli import main

    study_file = str(write_study(workdir / "t.yaml", sampler={"name": "tpe", "seed": 0}, execution={"simulate": True}))
    for trials, sampler, warned in ((1001, "tpe", True), (1000, "tpe", False), (5000, "nsga2", False)):
        write_study(workdir / "t.yaml", sampler={"name": sampler, "seed": 0}, execution={"simulate": True},
                    name=f"t{trials}{sampler}")
        assert main(["run", study_file, "--trials", str(trials), "--minutes", "0.01"]) == 0
        notes = [line for line in capsys.readouterr().out.splitlines() if line.startswith("note: sampler.name")]
        assert len(notes) == warned and all("nsga2" in line for line in notes)


class StockReadsNSGAIISampler(BreedingNSGAIISampler):
    """Ours with Optuna's own generation count and parent reads (each rescans the study's trials)."""

    def get_trial_generation(self, study, trial):
        return optuna.samplers.NSGAIISampler.get_trial_generation(self, study, trial)

    def get_parent_population(self, study, generation):
        return optuna.samplers.NSGAIISampler.get_parent_population(self, study, generation)


@pytest.mark.parametrize("stored", [False, True])
def test_incremental_generation_counts_and_parents_sample_what_optunas_rescans_sample(stored, tmp_path):
    """Trials running 3 at a time (as workers overlap: each sampled right after its ask) and told out of order, a
    warm start, pruned trials: the incremental reads give every trial the same generation and parameters as
    Optuna's rescans, in memory and on SQLite (where they read Optuna's trial cache by number)."""
    from nas.study.storage import open_storage

    def run(sampler):
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        storage = open_storage(f"sqlite:///{tmp_path}/{type(sampler).__name__}.db") if stored else None
        study = optuna.create_study(directions=["minimize", "minimize"], sampler=sampler, storage=storage)
        warm = study.ask()
        warm.set_user_attr("zoo", "lenet5")
        study.tell(warm, [0.5, 0.5])
        for batch in range(25):
            trials = []
            for _ in range(3):
                trial = study.ask()
                trials.append((trial, trial.suggest_float("x", 0, 1), trial.suggest_float("y", 0, 1)))
            for i, (trial, x, y) in enumerate(reversed(trials)):  # told out of order
                if (batch + i) % 4 == 0:
                    study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                else:
                    study.tell(trial, [x, 1 - x + y])
        return [(t.params, generations([t])) for t in study.trials]

    ours = run(BreedingNSGAIISampler(seed=3, population_size=8))
    assert ours == run(StockReadsNSGAIISampler(seed=3, population_size=8))
    assert max(max(g, default=0) for _, g in ours) >= 4  # it bred: several generations were counted


def test_the_sampler_reads_optunas_trial_cache_by_number_and_falls_back_on_a_gap(tmp_path):
    from nas.search.samplers import read_by_number
    from nas.study.storage import open_storage

    study = optuna.create_study(storage=open_storage(f"sqlite:///{tmp_path}/s.db"))
    for _ in range(5):
        study.tell(study.ask(), 1.0)
    study.ask()  # syncs Optuna's cache, as every trial's ask does

    def numbers(trials) -> tuple[bool, list[int]]:
        return isinstance(trials, list), [trials[i].number for i in range(len(trials))]

    assert read_by_number(study, numbers) == (False, [0, 1, 2, 3, 4, 5])  # the cache itself, no sorted copy
    del study._storage._studies[study._study_id].trials[2]  # a number the cache lacks
    assert read_by_number(study, numbers) == (True, [0, 1, 3, 4, 5])  # Optuna's sorted list instead
    in_memory = optuna.create_study()
    in_memory.tell(in_memory.ask(), 1.0)
    assert read_by_number(in_memory, numbers) == (True, [0])
