"""The contenders of ``benchmarks/peers.py``: one search space, one trainer, one data set, each tool driving them its
own way. Every contender writes the same event log (JSON lines: a trial starts, finishes an epoch, is infeasible),
except ours, which is read back from its study; ``peers.py`` scores both the same way.

The genome space reaches each tool in its native form: Optuna define-by-run (``nas.search.genomes.sample_genome``
on the tool's own Optuna trial) for ours, Ray Tune's ``OptunaSearch`` and plain Optuna; a flat configuration space
for Syne Tune, the union of every parameter the preset can ask (see :func:`flat_space`), read back through
:class:`FlatTrial`.
"""
from __future__ import annotations

import functools
import json
import math
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import optuna

from evaluators.datasets import Splits, default_cache_dir, load_dataset
from evaluators.ordering import data_orders
from evaluators.training import EpochReport, train
from nas.execution.trial import violations
from nas.search.genomes import reorder_request, sample_genome
from nas.search.presets import dense_space_within, resolve_space
from nas.study.config import StudyConfig, parse_config
from search_space import GenomeError

WORKERS = 2


@dataclass
class Problem:
    """The search problem every contender solves: a study config's data, resolved space and limits."""

    config: StudyConfig
    data: Splits
    space: dict
    orders: dict

    @property
    def epochs(self) -> int:
        return self.config.max_epochs

    def genome(self, trial: Any):
        """The genome ``trial`` draws (define-by-run), validated; GenomeError when it cannot be built."""
        return sample_genome(trial, self.space, self.data.input_shape, self.data.num_classes, self.orders).validate()


@functools.lru_cache(maxsize=4)
def problem(config_json: str) -> Problem:
    """The problem of a study config (JSON), built once per process (Ray and Syne Tune workers rebuild it)."""
    config = parse_config(json.loads(config_json))
    data = load_dataset(config.dataset)
    space = dense_space_within(resolve_space(config.search_space), math.prod(data.input_shape), data.num_classes,
                               config.constraints.max_params, config.constraints.max_flops)
    orders = data_orders(data.x_train.numpy(), *reorder_request(space, data.input_shape), default_cache_dir())
    return Problem(config, data, space, orders)


def log_event(path: str, **event: Any) -> None:
    """Appends one event line (one short write with O_APPEND: lines from several processes do not interleave)."""
    with open(path, "a") as handle:
        handle.write(json.dumps({**event, "t": time.time()}) + "\n")


def fit(problem_: Problem, trial: Any, key: str, log: str, report: Callable[[int, float, int], bool | None]) -> tuple:
    """Samples ``trial``'s genome and trains it, logging each epoch; ``report(epoch, val_accuracy, params)`` is
    the tool's own report call (True: stop). Returns (last val accuracy, params); infeasible: (0.0, params)."""
    log_event(log, key=key, event="start")
    try:
        genome = problem_.genome(trial)
    except GenomeError:
        log_event(log, key=key, event="infeasible", params=None)
        return 0.0, 1e9
    if violations(problem_.config, genome)[0] > 0:
        log_event(log, key=key, event="infeasible", params=genome.params)
        return 0.0, float(genome.params)
    config = problem_.config.training.train_config(trial, problem_.epochs, threads=1)
    log_event(log, key=key, event="genome", summary=genome.summary(), params=genome.params)
    last = [0.0]

    def on_epoch(epoch: EpochReport) -> bool:
        last[0] = epoch.val_accuracy
        log_event(log, key=key, event="epoch", epoch=epoch.epoch, val_accuracy=epoch.val_accuracy,
                  params=genome.params, fit_s=epoch.elapsed_s)
        return bool(report(epoch.epoch, epoch.val_accuracy, genome.params))

    train(genome, problem_.data, config, callback=on_epoch, evaluate_test=False)
    return last[0], float(genome.params)


# -- plain Optuna: study.optimize with two threads, no pruning ----------------------------------------------------

def run_optuna(config_json: str, sampler_name: str, seed: int, seconds: float, log: str) -> None:
    """``study.optimize(n_jobs=2)`` on an in-memory study: NSGA-II (with the constraint, the quickstart's
    population) or random search; every trial trains the full budget."""
    import torch

    from nas.search.samplers import default_population

    torch.set_num_threads(1)
    prob = problem(config_json)

    if sampler_name == "nsga2":
        population = default_population(prob.config.budget.trials)
        sampler = optuna.samplers.NSGAIISampler(seed=seed, population_size=population)
    else:
        sampler = optuna.samplers.RandomSampler(seed=seed)
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)

    def objective(trial: optuna.Trial) -> tuple[float, float]:
        accuracy, params = fit(prob, trial, f"optuna-{trial.number}", log, lambda *_: False)
        trial.set_constraint("violation", 0.0 if accuracy > 0 else 1.0)  # NSGA-II ranks infeasible ones last
        return accuracy, params

    study.optimize(objective, n_jobs=WORKERS, timeout=seconds)


# -- Ray Tune as its docs set it up: OptunaSearch on both metrics, ASHAScheduler on accuracy ----------------------

def ray_trainable(config: dict, config_json: str, log: str) -> None:
    """A Ray Tune function trainable: the OptunaSearch parameters replayed on a FixedTrial, one report per epoch."""
    import torch
    from ray import tune

    torch.set_num_threads(1)
    trial_id = tune.get_context().get_trial_id()
    trial = optuna.trial.FixedTrial(dict(config), number=int(trial_id.rsplit("_", 1)[-1], 16) % 100_000)  # the seed
    key = f"ray-{trial_id}"
    accuracy, size = fit(problem(config_json), trial, key, log,
                         lambda epoch, acc, p: tune.report({"epoch": epoch, "val_accuracy": acc, "params": p}))
    if accuracy == 0.0:  # infeasible: one result so the searcher learns it
        tune.report({"epoch": problem(config_json).epochs, "val_accuracy": 0.0, "params": size})


def run_ray_tune(config_json: str, seed: int, seconds: float, log: str) -> dict:
    """OptunaSearch (metric=[val_accuracy, params], mode=[max, min], define-by-run space) and ASHAScheduler
    (accuracy, grace period = the study's first rung) with 2 concurrent trials; returns what Tune reports."""
    import ray
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.optuna import OptunaSearch

    prob = problem(config_json)
    pruner = prob.config.pruner

    searcher = OptunaSearch(space=GenomeSpace(config_json), metric=["val_accuracy", "params"], mode=["max", "min"], seed=seed)
    scheduler = ASHAScheduler(time_attr="epoch", metric="val_accuracy", mode="max", max_t=prob.epochs,
                              grace_period=pruner.min_epochs, reduction_factor=pruner.reduction_factor)
    ray.init(address="local", num_cpus=WORKERS, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": os.environ.get("PYTHONPATH", "")}})
    try:
        with tempfile.TemporaryDirectory() as tmp:
            tuner = tune.Tuner(tune.with_parameters(ray_trainable, config_json=config_json, log=log),
                               tune_config=tune.TuneConfig(search_alg=searcher, scheduler=scheduler, num_samples=-1,
                                                           max_concurrent_trials=WORKERS, time_budget_s=seconds,
                                                           reuse_actors=True),
                               run_config=tune.RunConfig(storage_path=tmp, verbose=0))
            grid = tuner.fit()
            reported = [{"val_accuracy": r.metrics.get("val_accuracy"), "params": r.metrics.get("params"),
                         "epoch": r.metrics.get("epoch")} for r in grid if r.metrics]
    finally:
        ray.shutdown()
    return {"reported": reported}


class GenomeSpace:
    """OptunaSearch's define-by-run space: the genome and the learning rate drawn on its Optuna trial (a class, not
    a closure, because Tune pickles the searcher in its checkpoints)."""

    def __init__(self, config_json: str):
        self.config_json = config_json

    def __call__(self, trial: optuna.Trial) -> None:
        prob = problem(self.config_json)
        _buildable(prob, trial)
        prob.config.training.train_config(trial, prob.epochs)


def _buildable(prob: Problem, trial: optuna.Trial) -> bool:
    """Draws the genome on ``trial`` (define-by-run); False when it cannot be built (its parameters stay drawn)."""
    try:
        prob.genome(trial)
        return True
    except GenomeError:
        return False


# -- Syne Tune: MOASHA with its random searcher, on a flat configuration space --------------------------------------

def flat_space(prob: Problem, draws: int = 2000, seed: int = 0) -> dict[str, optuna.distributions.BaseDistribution]:
    """Every parameter the preset can ask, with the widest range it is asked with: found by drawing ``draws``
    genomes with a random sampler (conditional parameters are asked only where their layer exists)."""
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    union: dict[str, optuna.distributions.BaseDistribution] = {}
    for _ in range(draws):
        trial = study.ask()
        _buildable(prob, trial)
        prob.config.training.train_config(trial, prob.epochs)
        for name, dist in trial.distributions.items():
            union[name] = _widest(union.get(name), dist)
        study.tell(trial, 0.0)
    return dict(sorted(union.items()))


def _widest(a: Any, b: Any) -> Any:
    if a is None:
        return b
    if isinstance(b, optuna.distributions.CategoricalDistribution):
        return optuna.distributions.CategoricalDistribution(list(dict.fromkeys([*a.choices, *b.choices])))
    return type(b)(low=min(a.low, b.low), high=max(a.high, b.high), log=b.log,
                   **({"step": b.step} if getattr(b, "step", None) is not None and not b.log else {}))


def syne_config_space(space: dict[str, optuna.distributions.BaseDistribution]) -> dict:
    """The flat space in Syne Tune's form, under names ``p0, p1, ...`` (Syne Tune passes them as command-line
    options, where a dot or dash in a name would not survive): categorical values as their JSON text (its choices
    are strings or numbers), integer and float ranges as such."""
    from syne_tune.config_space import choice, lograndint, loguniform, randint, uniform

    out = {}
    for i, dist in enumerate(space.values()):
        if isinstance(dist, optuna.distributions.CategoricalDistribution):
            out[f"p{i}"] = choice([json.dumps(c) for c in dist.choices])
        elif isinstance(dist, optuna.distributions.IntDistribution):
            out[f"p{i}"] = (lograndint if dist.log else randint)(dist.low, dist.high)
        else:
            out[f"p{i}"] = (loguniform if dist.log else uniform)(dist.low, dist.high)
    return out


class FlatTrial:
    """What ``sample_genome`` asks, answered from one flat configuration. Where a value is not allowed in this
    genome's context (a group count that does not divide these channels, an int outside a narrower range) it is
    mapped to an allowed one: the categorical choice at the same position modulo the allowed count, the int or float
    clipped into range and onto the step. A flat space cannot say more; this is the encoding gap RESULTS.md names."""

    def __init__(self, config: dict, union: dict, number: int = 0):
        self.config, self.union, self.number = config, union, number

    def suggest_categorical(self, name: str, choices: list) -> Any:
        raw = self.config.get(name)
        value = json.loads(raw) if isinstance(raw, str) else raw
        if value in choices:
            return value
        known = self.union[name].choices if name in self.union else []
        return choices[(known.index(value) if value in known else 0) % len(choices)]

    def suggest_int(self, name: str, low: int, high: int, step: int = 1, log: bool = False) -> int:
        value = min(max(int(round(self.config.get(name, low))), low), high)  # a name never drawn: the low end
        return low + (value - low) // step * step

    def suggest_float(self, name: str, low: float, high: float, step: float | None = None, log: bool = False) -> float:
        value = min(max(float(self.config.get(name, low)), low), high)
        return value if step is None else low + round((value - low) / step) * step


PROBLEM_FILE = "NAS_PEERS_PROBLEM"  # env var: the JSON file a Syne Tune worker reads its problem from


def syne_trial(**values: Any) -> None:
    """Syne Tune's tune function (run in a worker process it starts): the flat config answered via FlatTrial.
    Syne Tune ships the function itself to the worker, without this module's globals: it imports what it uses."""
    import json
    import os
    import time
    from pathlib import Path

    import optuna
    import torch
    from syne_tune import Reporter

    from peer_contenders import PROBLEM_FILE, FlatTrial, fit, problem

    torch.set_num_threads(1)
    setup = json.loads(Path(os.environ[PROBLEM_FILE]).read_text())
    prob = problem(json.dumps(setup["config"]))
    union = {k: optuna.distributions.json_to_distribution(v) for k, v in setup["union"].items()}
    names = list(union)
    config = {names[int(k[1:])]: v for k, v in values.items()}
    reporter = Reporter()
    key = f"syne-{os.getpid()}-{time.time_ns()}"
    accuracy, size = fit(prob, FlatTrial(config, union, number=time.time_ns() % 100_000), key, setup["log"],
                         lambda epoch, acc, p: reporter(epoch=epoch, error=1.0 - acc, params=p))
    if accuracy == 0.0:
        reporter(epoch=prob.epochs, error=1.0, params=size)


def run_syne_tune(config_json: str, seed: int, seconds: float, log: str) -> None:
    """MOASHA (error and params, both minimized; grace period = the first rung) with random search, on Syne
    Tune's PythonBackend with 2 workers, stopped after ``seconds`` of wall clock."""
    from syne_tune import StoppingCriterion, Tuner
    from syne_tune.backend import PythonBackend
    from syne_tune.optimizer.schedulers.multiobjective.moasha import MOASHA

    prob = problem(config_json)
    union = flat_space(prob)
    space = syne_config_space(union)
    scheduler = MOASHA(config_space=space, metrics=["error", "params"], do_minimize=True, time_attr="epoch",
                       max_t=prob.epochs, grace_period=prob.config.pruner.min_epochs,
                       reduction_factor=prob.config.pruner.reduction_factor, random_seed=seed)
    with tempfile.TemporaryDirectory() as tmp:
        setup = Path(tmp) / "problem.json"
        setup.write_text(json.dumps({"config": json.loads(config_json), "log": log,
                                     "union": {k: optuna.distributions.distribution_to_json(v)
                                               for k, v in union.items()}}))
        os.environ[PROBLEM_FILE] = str(setup)
        os.environ["SYNETUNE_FOLDER"] = tmp  # its trial folders go here, not under ~/syne-tune
        tuner = Tuner(trial_backend=PythonBackend(tune_function=syne_trial, config_space=space), scheduler=scheduler,
                      stop_criterion=StoppingCriterion(max_wallclock_time=seconds), n_workers=WORKERS,
                      sleep_time=0.5, results_update_interval=30, save_tuner=False, print_update_interval=10_000,
                      max_failures=1000)
        tuner.run()


def read_log(path: str | Path) -> list[dict]:
    path = Path(path)
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
