"""The study's Optuna sampler, built from its ``sampler`` config section."""
from __future__ import annotations

import hashlib

import optuna

from nas.study.config import StudyConfig


def sampler_seed(seed: int, worker: int, stored: int) -> int:
    """The seed of worker ``worker`` joining a study that already holds ``stored`` trials.

    A fresh study (``stored`` 0) gives ``seed + 1000 * worker``, so the same config gives the same trials; a
    resumed run mixes in ``stored``, so it continues the search instead of re-proposing the first run's points.
    """
    if stored == 0:
        return seed + 1000 * worker
    return int.from_bytes(hashlib.sha256(f"{seed}/{worker}/{stored}".encode()).digest()[:4], "big")


def make_sampler(config: StudyConfig, worker: int = 0, stored: int = 0) -> optuna.samplers.BaseSampler:
    """The config's sampler for ``worker`` (see :func:`sampler_seed`: parallel workers and resumed runs each
    draw their own points)."""
    s = config.sampler
    seed = sampler_seed(s.seed, worker, stored)
    if s.name == "tpe":
        return optuna.samplers.TPESampler(seed=seed,
                                          n_startup_trials=max(4, min(10, config.budget.trials // 4)))
    if s.name == "nsga2":
        population = s.population_size or default_population(config.budget.trials)
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=population)
    if s.name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if s.name == "qmc":
        return optuna.samplers.QMCSampler(seed=seed, warn_independent_sampling=False)
    return optuna.samplers.GPSampler(seed=seed)


def default_population(trials: int) -> int:
    """NSGA-II's population when the config sets none: a quarter of the trial budget, between 8 and 50."""
    return max(8, min(50, trials // 4))
