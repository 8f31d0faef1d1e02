"""The study's Optuna sampler, built from its ``sampler`` config section."""
from __future__ import annotations

import hashlib
import warnings
from collections.abc import Callable, Sequence
from typing import TypeVar

import optuna
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial, TrialState

from nas.study.config import StudyConfig

WARM_START_ATTR = "zoo"  # user attribute of a warm-start trial: a zoo genome, built without the preset's parameters


def sampler_seed(seed: int, worker: int, stored: int, restart: int = 0) -> int:
    """The seed of worker ``worker`` joining a study that already holds ``stored`` trials, after ``restart``
    deaths of that worker in this run (a Ray worker that Tune restarted).

    A fresh study (``stored`` 0) gives ``seed + 1000 * worker``, so the same config gives the same trials; a
    resumed run mixes in ``stored``, and a restarted worker ``restart``, so each continues the search instead of
    re-proposing the points drawn before.
    """
    if stored == 0 and restart == 0:
        return seed + 1000 * worker
    key = f"{seed}/{worker}/{stored}" + (f"/{restart}" if restart else "")
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:4], "big")


def make_sampler(config: StudyConfig, worker: int = 0, stored: int = 0,
                 restart: int = 0) -> optuna.samplers.BaseSampler:
    """The config's sampler for ``worker`` (see :func:`sampler_seed`: parallel workers and resumed runs each
    draw their own points)."""
    s = config.sampler
    seed = sampler_seed(s.seed, worker, stored, restart)
    if s.name == "tpe":
        with warnings.catch_warnings():  # multivariate and group are marked experimental in Optuna
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.TPESampler(seed=seed, n_startup_trials=tpe_startup_trials(config),
                                              multivariate=s.multivariate, group=s.multivariate)
    if s.name == "nsga2":
        population = s.population_size or default_population(config.budget.trials)
        return BreedingNSGAIISampler(seed=seed, population_size=population)
    if s.name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if s.name == "qmc":
        return optuna.samplers.QMCSampler(seed=seed, warn_independent_sampling=False)
    return optuna.samplers.GPSampler(seed=seed)


def tpe_startup_trials(config: StudyConfig) -> int:
    """How many finished trials TPE waits for before it models: a quarter of the trial budget, between 4 and 10."""
    return max(4, min(10, config.budget.trials // 4))


TPE_BUDGET = 1000  # Optuna's recommended budget for TPE tops out here (NSGA-II's at 10,000); measured: RESULTS.md


def sampler_note(config: StudyConfig) -> str | None:
    """A one-line warning when the sampler's own cost will dominate: TPE re-reads and splits every finished trial
    for each parameter it draws, so its time per trial grows with the study (benchmarks/sampler_scale.py)."""
    if config.sampler.name != "tpe" or config.budget.trials <= TPE_BUDGET:
        return None
    return (f"sampler.name: tpe over {config.budget.trials:,} trials: TPE's time per trial grows with the study "
            "(0.8 s of sampling per trial at 10,000 trials, NSGA-II 3 ms: benchmarks/RESULTS.md); for budgets "
            f"above {TPE_BUDGET:,} trials consider sampler.name: nsga2")


def default_population(trials: int) -> int:
    """NSGA-II's population when the config sets none: a quarter of the trial budget, between 8 and 50."""
    return max(8, min(50, trials // 4))


def generations(trials: Sequence[FrozenTrial]) -> dict[int, int]:
    """How many trials each NSGA-II generation holds (empty for other samplers). Generation 0 is the spread start
    and random draws; a study that never leaves it never bred (fewer COMPLETE trials than the population)."""
    counts: dict[int, int] = {}
    for trial in trials:
        generation = next((v for k, v in trial.system_attrs.items() if k.endswith("NSGAIISampler:generation")), None)
        if generation is not None:
            counts[generation] = counts.get(generation, 0) + 1
    return dict(sorted(counts.items()))


def bred(trial: FrozenTrial) -> bool:
    """A trial whose genome the sampler drew from the preset's parameters (not a warm-start zoo genome)."""
    return WARM_START_ATTR not in trial.user_attrs


class BredSearchSpace:
    """The distributions that every finished, bred COMPLETE trial shares. Incremental: trials before the first
    unfinished one are read once (intersecting a finished trial again changes nothing)."""

    def __init__(self) -> None:
        self._space: dict[str, BaseDistribution] | None = None
        self._settled = 0  # trials[:settled] are all finished and already intersected

    def calculate(self, trials: Sequence[FrozenTrial]) -> dict[str, BaseDistribution]:
        space, settled = self._space, self._settled
        for index in range(self._settled, len(trials)):
            trial = trials[index]
            if not trial.state.is_finished():
                continue
            if settled == index:
                settled = index + 1
            if trial.state != TrialState.COMPLETE or not bred(trial):
                continue
            space = dict(trial.distributions) if space is None else \
                {name: d for name, d in space.items() if trial.distributions.get(name) == d}
        self._space, self._settled = space, settled
        return dict(sorted((space or {}).items()))


T = TypeVar("T")


def read_by_number(study: optuna.Study, read: Callable[[Sequence[FrozenTrial]], T]) -> T:
    """``read`` of the study's trials in number order as Optuna's trial cache holds them, without the copy sorted by
    number that Optuna builds for each reader (10,000 trials sorted at each trial at 10,000: about a tenth of the
    machinery's time), and without reading the storage again: ``ask`` has just read what changed, and both
    backends sample a trial right after its ``ask`` (RESULTS "Scale"). Any other storage, or a cache missing a
    number, gets Optuna's sorted per-ask list."""
    cached = getattr(getattr(study._storage, "_studies", None), "get", lambda _: None)(study._study_id)  # noqa: SLF001
    if isinstance(getattr(cached, "trials", None), dict):
        try:
            return read(_ByNumber(cached.trials))
        except KeyError:
            pass  # a gap in the numbers: the readers keep their state consistent, read again in full below
    return read(study._get_trials(deepcopy=False, use_cache=True))  # noqa: SLF001 (Optuna's per-ask cache)


class _ByNumber(Sequence):
    """A dict of trials by number, seen as the list of trials 0..n-1 (a missing number raises KeyError)."""

    def __init__(self, trials: dict[int, FrozenTrial]) -> None:
        self._trials = trials

    def __len__(self) -> int:
        return len(self._trials)

    def __getitem__(self, index):  # noqa: ANN001 (an int; slices are not used by the readers)
        return self._trials[index]


class GenerationCounts:
    """How many COMPLETE trials each NSGA-II generation holds, read incrementally like :class:`BredSearchSpace`:
    Optuna's own count rescans every COMPLETE trial of the study at each trial (10,000 at 10,000 trials)."""

    def __init__(self, key: str) -> None:
        self._key = key
        self._counts: dict[int, int] = {}  # over trials[:settled], all finished
        self._settled = 0

    def latest(self, trials: Sequence[FrozenTrial]) -> tuple[int, int]:
        """(the highest generation among COMPLETE trials (0 when none), how many COMPLETE trials it holds)."""
        while self._settled < len(trials) and trials[self._settled].state.is_finished():
            self._count(self._counts, trials[self._settled])
            self._settled += 1
        counts = dict(self._counts)
        for index in range(self._settled, len(trials)):
            self._count(counts, trials[index])
        if not counts:
            return 0, 0
        top = max(counts)
        return top, counts[top]

    def _count(self, counts: dict[int, int], trial: FrozenTrial) -> None:
        generation = trial.system_attrs.get(self._key, -1) if trial.state == TrialState.COMPLETE else -1
        if generation >= 0:
            counts[generation] = counts.get(generation, 0) + 1


class BreedingNSGAIISampler(optuna.samplers.NSGAIISampler):
    """Optuna's NSGA-II, breeding only from the trials it sampled. Stock NSGA-II breeds over the parameters that
    *every* COMPLETE trial has; a warm-start trial (a zoo genome, none of the preset's parameters) empties that
    set, and every later trial was drawn at random (measured on the quickstart: an empty search space, and
    sampled genomes that did not shrink over 4 generations). Warm-start trials stay in the study and on its
    fronts but are never parents (one may still fill a slot of the generation it ran in).

    Its reads grow no more with the study: the generation count is incremental and a generation's parents are read
    once per sampler (Optuna re-reads and re-sorts every trial from the storage at each trial to find them; where two
    workers select a generation's parents at the same moment, each keeps its own, as Optuna's first use does)."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._bred_space = BredSearchSpace()
        self._generations = GenerationCounts(self._get_generation_key())
        self._parents: dict[int, list[FrozenTrial]] = {}  # the latest generation asked for only

    def get_trial_generation(self, study: optuna.Study, trial: FrozenTrial) -> int:
        generation = trial.system_attrs.get(self._get_generation_key())
        if generation is not None:
            return generation
        latest, count = read_by_number(study, self._generations.latest)
        generation = latest if count < self._population_size else latest + 1
        study._storage.set_trial_system_attr(trial._trial_id, self._get_generation_key(), generation)  # noqa: SLF001
        return generation

    def get_parent_population(self, study: optuna.Study, generation: int) -> list[FrozenTrial]:
        if generation in self._parents:
            return self._parents[generation]
        parents = super().get_parent_population(study, generation)  # selected (and stored), or read back
        self._parents = {generation: sorted(parents, key=lambda t: t.number)}  # read back, Optuna orders by number
        return parents

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        space = read_by_number(study, self._bred_space.calculate)
        return {name: d for name, d in space.items() if not d.single()}  # single values: sampled independently

    def get_population(self, study: optuna.Study, generation: int) -> list[FrozenTrial]:
        return [t for t in super().get_population(study, generation) if bred(t)]
