"""``nas run``: the tuned dense baseline (once per dataset and storage), then the search, with progress."""
from __future__ import annotations

import hashlib
import json
import time
from typing import Callable

import optuna
from rich.console import Console

from evaluators.datasets import parse_dataset_spec
from nas.config import Budget, Pruner, Sampler, StudyConfig
from nas.errors import ConfigError
from nas.runner import RunPlan, counted_trials, create_study, run_workers
from nas.storage import fail_stale_trials, mask_url
from nas.summary import hypervolume, pareto_trials, params_reference, state_counts


def dataset_slug(dataset: dict) -> str:
    """A readable, unique name for a dataset spec, e.g. ``mnist1d-permuted-3f2a9c``."""
    spec = parse_dataset_spec(dataset).to_dict()
    digest = hashlib.sha1(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:6]
    return f"{spec['name']}{'-permuted' if spec.get('permute') else ''}-{digest}"


BASELINE_WARM_START = "mnist1d-mlp"  # the MNIST-1D paper's MLP (two hidden layers of 100), rebuilt for the data


def limits_suffix(config: StudyConfig) -> str:
    c = config.constraints
    return "".join(f"-{name}{value}" for name, value in (("p", c.max_params), ("f", c.max_flops)) if value)


def baseline_config(config: StudyConfig) -> StudyConfig:
    """The dense-baseline search for the study's dataset: MLPs at full budget, no pruning, the study's size limits.

    The baseline is tuned within the same ``constraints`` as the search, so the comparison is like for like; its
    study name includes the limits, so studies with other limits on the same data get their own baseline. Its
    first trial is the MNIST-1D paper's MLP (recorded infeasible, untrained, where it exceeds the limits).
    """
    epochs = config.max_epochs
    return config.model_copy(update={
        "name": f"baseline-{dataset_slug(config.dataset)}{limits_suffix(config)}",
        "search_space": {"preset": "dense"},
        "pruner": Pruner(name="none", min_epochs=epochs, max_epochs=epochs),
        "budget": Budget(trials=config.baseline.trials),
        "warm_start": [BASELINE_WARM_START],
        "sampler": Sampler(name="tpe", seed=config.sampler.seed),
    })


class ProgressReporter:
    """Polls the storage and shows done/pruned/failed, the Pareto set's size and its hypervolume."""

    def __init__(self, study: optuna.Study, budget: int, label: str, console: Console):
        self.study, self.budget, self.label, self.console = study, budget, label, console
        self.last = ""
        self.progress = None
        if console.is_terminal:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                     TextColumn("{task.fields[stats]}"), TimeElapsedColumn(), console=console)
            self.task = self.progress.add_task(label, total=budget, stats="")
            self.progress.start()

    def poll(self) -> None:
        trials = self.study.get_trials(deepcopy=False)
        counts = state_counts(trials)
        done = counts["complete"] + counts["pruned"] + counts["failed"] + counts["infeasible"]
        front = pareto_trials(self.study)
        hv = hypervolume(front, params_reference(self.study))
        stats = (f"{counts['complete']} complete, {counts['pruned']} pruned, {counts['failed']} failed, "
                 f"{counts['infeasible']} infeasible | Pareto {len(front)} | HV {hv:.3f}")
        if self.progress is not None:
            self.progress.update(self.task, completed=min(done, self.budget), stats=stats)
        elif stats != self.last:
            self.console.print(f"{self.label}: {min(done, self.budget)}/{self.budget} trials: {stats}")
        self.last = stats

    def close(self) -> None:
        self.poll()
        if self.progress is not None:
            self.progress.stop()


def open_plan(plan: RunPlan, console: Console, label: str) -> tuple[optuna.Study, bool]:
    """Creates or resumes the plan's study, fails dead runs' trials; returns it and whether budget is left."""
    study = create_study(plan.config, plan.url)
    stale = fail_stale_trials(study, url=plan.url)
    if stale:
        console.print(f"marked {len(stale)} trial(s) of a dead run FAIL: {stale}")
    if counted_trials(study) >= plan.budget:
        console.print(f"{label}: budget of {plan.budget} trials already used; nothing to run")
        return study, False
    return study, True


def run_plan(plan: RunPlan, workers: int, deadline: float | None, console: Console, label: str) -> optuna.Study:
    study, budget_left = open_plan(plan, console, label)
    if not budget_left:
        return study
    reporter = ProgressReporter(study, plan.budget, label, console)
    try:
        run_workers(plan, workers, deadline, poll=reporter.poll)
    finally:
        reporter.close()
    return study


def preflight(config: StudyConfig) -> None:
    """Loads the data and samples one genome in this process, so a bad dataset, space or zoo name exits 2 up front."""
    from evaluators.datasets import load_dataset
    from nas.space import resolve_space, sample_genome
    from search_space import GenomeError, get_zoo

    for name in config.warm_start:
        try:
            get_zoo(name)
        except GenomeError as exc:
            raise ConfigError(f"warm_start: {exc}") from None
    data = load_dataset(config.dataset)
    space = resolve_space(config.search_space)
    probe = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).ask()
    sample_genome(probe, space, data.input_shape, data.num_classes)


def run_study(config: StudyConfig, url: str, console: Console | None = None,
              after_baseline: Callable[[optuna.Study], None] | None = None) -> tuple[optuna.Study, optuna.Study | None]:
    """Runs the dense baseline if the storage lacks it, then the search; returns (study, baseline)."""
    console = console or Console()
    preflight(config)
    workers = config.execution.workers
    console.print(f"study {config.name!r} in {mask_url(url)}: {config.budget.trials} trials, {workers} worker(s)")
    baseline = None
    if config.baseline.trials > 0:
        plan = RunPlan(baseline_config(config), url, "dense")
        baseline = run_plan(plan, workers, None, console, f"dense baseline ({plan.config.name})")
        if after_baseline is not None:
            after_baseline(baseline)
    deadline = time.time() + 60 * config.budget.minutes if config.budget.minutes else None
    study = create_study(config, url)
    if baseline is not None:
        study.set_user_attr("baseline_study", baseline.study_name)
    study = run_plan(RunPlan(config, url, "search"), workers, deadline, console, f"search ({config.name})")
    return study, baseline
