"""The study's first sampled trials (``sampler.start: spread``): random draws of the space, chosen to spread evenly
over the parameter-count range on a log scale, the cheapest (fewest multiply-adds) of each part.

A sampler's own start draws genomes at random, and random genomes differ in size and training cost by orders of
magnitude: an unlucky start spends much of a short study on a few slow genomes and finds few small networks
(benchmarks/RESULTS.md "Spread start"). Drawing a genome costs no training, so many are drawn and a few kept: every
size class of the front gets a first point, at the lowest cost the draws offer.
"""
from __future__ import annotations

import math
from collections.abc import Iterator
from itertools import islice
from typing import Any

import optuna

from nas.search.genomes import sample_genome
from nas.search.samplers import default_population, tpe_startup_trials
from nas.study.config import StudyConfig
from search_space import Genome, GenomeError

POOL = 400  # random draws to choose from, no training: 0.5-0.7 s per worker (RESULTS "Spread start")


def start_size(config: StudyConfig) -> int:
    """How many first trials ``spread`` chooses (0 when the config keeps the sampler's own start): NSGA-II's first
    generation less the zoo warm starts and ``enqueue`` sets it holds; else TPE's startup trials (TPE draws at random
    until that many trials have finished, so with workers in flight it draws at least that many); never more than
    the trial budget leaves after the warm starts and ``enqueue``."""
    s = config.sampler
    if not s.spreads_start:
        return 0
    given = len(config.warm_start) + len(config.enqueue)
    if s.name == "nsga2":
        size = (s.population_size or default_population(config.budget.trials)) - given
    else:
        size = tpe_startup_trials(config)
    return max(0, min(size, config.budget.trials - given))


def random_genomes(config: StudyConfig, space: dict, input_shape: tuple[int, ...], num_classes: int,
                   orders: dict[str, list[int]] | None, seed: int) -> Iterator[tuple[Genome | None, dict[str, Any]]]:
    """Genomes drawn at random from the space without end, one per draw: (the genome, its parameters), the genome
    None where the draw is invalid or over the study's constraints."""
    draws = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    while True:
        trial = draws.ask()
        try:
            genome = sample_genome(trial, space, input_shape, num_classes, orders).validate()
        except GenomeError:
            yield None, {}
            continue
        feasible = config.constraints.excess(genome.params, genome.flops)[0] == 0
        yield (genome if feasible else None), dict(trial.params)


def spread_start(config: StudyConfig, space: dict, input_shape: tuple[int, ...], num_classes: int,
                 orders: dict[str, list[int]] | None = None, pool: int = POOL) -> list[dict[str, Any]]:
    """The genome parameters of the study's first :func:`start_size` sampled trials, cheapest first.

    ``pool`` genomes are drawn at random (seeded by ``sampler.seed``, so every worker chooses the same sets); of
    the feasible ones, the log10 parameter range [lo, hi] is cut into ``k`` equal parts and each part gives its
    genome with the fewest multiply-adds (an empty part gives none). Only genome parameters are fixed: the
    training parameters (lr, ...) stay the sampler's own draw.
    """
    k = start_size(config)
    if k == 0:
        return []
    draws = random_genomes(config, space, input_shape, num_classes, orders, config.sampler.seed)
    feasible = [(genome.params, genome.flops, values)  # (params, multiply-adds, parameter set)
                for genome, values in islice(draws, pool) if genome is not None]
    if not feasible:
        return []
    lo, hi = (math.log10(min(f[0] for f in feasible)), math.log10(max(f[0] for f in feasible)))
    width = (hi - lo) / k or 1.0
    cheapest: dict[int, tuple[int, int, dict[str, Any]]] = {}
    for params, flops, values in feasible:
        part = min(k - 1, int((math.log10(params) - lo) / width))
        if part not in cheapest or flops < cheapest[part][1]:
            cheapest[part] = (params, flops, values)
    return [values for _, _, values in sorted(cheapest.values(), key=lambda c: (c[1], c[0]))]
