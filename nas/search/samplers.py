"""The study's Optuna sampler, built from its ``sampler`` config section."""
from __future__ import annotations

import optuna

from nas.study.config import StudyConfig


def make_sampler(config: StudyConfig, worker: int = 0) -> optuna.samplers.BaseSampler:
    """The config's sampler; each worker gets its own seed so parallel workers do not repeat each other."""
    s = config.sampler
    seed = s.seed + 1000 * worker
    if s.name == "tpe":
        return optuna.samplers.TPESampler(seed=seed,
                                          n_startup_trials=max(4, min(10, config.budget.trials // 4)))
    if s.name == "nsga2":
        population = s.population_size or max(8, min(50, config.budget.trials // 4))
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=population)
    if s.name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if s.name == "qmc":
        return optuna.samplers.QMCSampler(seed=seed, warn_independent_sampling=False)
    return optuna.samplers.GPSampler(seed=seed)
