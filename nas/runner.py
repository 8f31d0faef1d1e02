"""Local execution: N worker processes share the study's storage and one trial budget."""
from __future__ import annotations

import math
import multiprocessing
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import optuna
import torch
from optuna.trial import TrialState

from evaluators.datasets import load_dataset
from nas.config import StudyConfig, parse_config
from nas.errors import ConfigError
from nas.space import resolve_space
from nas.storage import budget_lock, fail_stale_trials, open_storage, sqlite_path, worker_identity
from nas.trial import TrialContext, run_trial


@dataclass
class RunPlan:
    """One search (the study or its dense baseline): what to sample, where it is stored, how much to run."""

    config: StudyConfig
    url: str
    sampler_name: str = "search"  # 'search' samples the config's space; 'dense' the MLP baseline space

    @property
    def budget(self) -> int:
        return self.config.budget.trials


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


def artifact_dir(config: StudyConfig, url: str) -> Path:
    """Weights live next to a SQLite file, else under ``runs/<study>/artifacts``."""
    path = sqlite_path(url)
    return (path.parent if path is not None else config.run_dir()) / "artifacts"


def create_study(config: StudyConfig, url: str) -> optuna.Study:
    """Creates or resumes the study; a resumed study must have the same objectives."""
    directions = [o.direction for o in config.objectives]
    storage = open_storage(url)
    study = optuna.create_study(study_name=config.name, storage=storage, directions=directions, load_if_exists=True)
    existing = [d.name.lower() for d in study.directions]
    if existing != directions:
        raise ConfigError(f"objectives: study {config.name!r} already exists with directions {existing}, "
                          f"the config asks for {directions}; use another name")
    study.set_user_attr("config", config.model_dump(mode="json"))
    study.set_user_attr("metrics", [o.metric for o in config.objectives])
    return study


def counted_trials(study: optuna.Study) -> int:
    """Trials that use up the budget: finished ones (not those killed with their worker) and running ones."""
    count = 0
    for t in study.get_trials(deepcopy=False):
        if t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING) or \
                t.state == TrialState.FAIL and not t.user_attrs.get("killed"):
            count += 1
    return count


def reserve_trial(study: optuna.Study, plan: RunPlan) -> optuna.Trial | None:
    """Atomically (across processes) checks the budget and creates the next trial, or returns None."""
    with budget_lock(plan.url, study.study_name):
        if counted_trials(study) >= plan.budget:
            return None
        used_zoo = {t.user_attrs.get("zoo") for t in study.get_trials(deepcopy=False)}
        trial = study.ask()
        for key, value in worker_identity().items():
            trial.set_user_attr(key, value)
        pending = [name for name in plan.config.warm_start if name not in used_zoo]
        if pending:
            trial.set_user_attr("zoo", pending[0])
        return trial


def plan_context(plan: RunPlan, study: optuna.Study, threads: int | None = None) -> TrialContext:
    """What evaluating the plan's trials needs: its data, its space (the study's or the dense MLPs') and sampler."""
    from nas.space import dense_space, sample_mlp

    config = plan.config
    data = load_dataset(config.dataset)
    if plan.sampler_name != "dense":
        return TrialContext(study=study, config=config, data=data, space=resolve_space(config.search_space),
                            threads=threads, artifact_dir=artifact_dir(config, plan.url))
    space = dense_space_within(dense_space(), math.prod(data.input_shape), data.num_classes,
                               config.constraints.max_params)
    return TrialContext(study=study, config=config, data=data, space=space, threads=threads,
                        artifact_dir=artifact_dir(config, plan.url),
                        sample=lambda trial, _space, shape, classes: sample_mlp(trial, shape, classes, space))


def dense_space_within(space: dict, features: int, classes: int, max_params: int | None) -> dict:
    """The MLP space without widths whose one-hidden-layer net already exceeds ``max_params``."""
    if max_params is None:
        return space
    fits = [w for w in space["width"] if (features + 1) * w + (w + 1) * classes <= max_params]
    return {**space, "width": fits or space["width"][:1]}


def worker_loop(plan: RunPlan, worker: int, threads: int, deadline: float | None,
                on_trial: Callable[[int, TrialState], None] | None = None) -> None:
    """Reserve, evaluate, repeat until the budget or the deadline is reached."""
    torch.set_num_threads(threads)
    config = plan.config
    study = optuna.load_study(study_name=config.name, storage=open_storage(plan.url),
                              sampler=make_sampler(config, worker))
    ctx = plan_context(plan, study, threads)
    while deadline is None or time.time() < deadline:
        trial = reserve_trial(study, plan)
        if trial is None:
            return
        state = run_trial(ctx, trial)
        if on_trial is not None:
            on_trial(trial.number, state)


def _spawned_worker(config_data: dict, url: str, sampler_name: str, worker: int, threads: int,
                    deadline: float | None) -> None:
    worker_loop(RunPlan(parse_config(config_data), url, sampler_name), worker, threads, deadline)


def run_workers(plan: RunPlan, workers: int, deadline: float | None,
                poll: Callable[[], None] | None = None) -> None:
    """Runs ``workers`` processes (in-process for one) until the budget or deadline; ``poll`` runs each second."""
    threads = max(1, (os.cpu_count() or 1) // workers)
    if workers == 1:
        worker_loop(plan, 0, threads, deadline, on_trial=(lambda *_: poll()) if poll else None)
        return
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=_spawned_worker, daemon=False,
                                 args=(plan.config.model_dump(mode="json"), plan.url, plan.sampler_name, i, threads,
                                       deadline)) for i in range(workers)]
    for process in processes:
        process.start()
    try:
        while any(p.is_alive() for p in processes):
            if poll is not None:
                poll()
            for p in processes:
                p.join(timeout=1.0 / workers)
    finally:
        for p in processes:
            if p.is_alive():
                p.terminate()
                p.join()
    if poll is not None:
        poll()
    crashed = [p.exitcode for p in processes if p.exitcode not in (0, None)]
    if crashed:
        study = optuna.load_study(study_name=plan.config.name, storage=open_storage(plan.url))
        fail_stale_trials(study, url=plan.url)
        raise RuntimeError(f"{len(crashed)} worker process(es) exited with codes {crashed}; "
                           "their running trials were marked FAIL, run again to finish the budget")
