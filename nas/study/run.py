"""Running a study on any backend: the dense baseline once per dataset and limits, then the search.

A backend (``nas.execution.local.LocalBackend``, ``nas.execution.ray.driver.RayBackend``) implements
:class:`Backend`; the CLI hands down a :class:`Reporter` for progress. This is the only place that orders
"baseline, then search" and links the two studies.
"""
from __future__ import annotations

import contextlib
import math
import time
import warnings
from typing import Callable, ContextManager, Protocol

import optuna

from nas.errors import ConfigError
from nas.study.config import SCREEN_FIELD, StudyConfig
from nas.study.plan import RunPlan, baseline_config, counted_trials, create_study
from nas.study.records import write_study
from nas.study.storage import fail_stale_trials, mask_url


class Tracker(Protocol):
    """Progress of one running plan: ``poll`` reads the storage and shows it, ``close`` shows it a last time."""

    def poll(self) -> None: ...

    def close(self) -> None: ...


class Reporter(Protocol):
    """Where a run's messages and progress go (the CLI's console, or nowhere)."""

    def message(self, text: str) -> None: ...

    def track(self, study: optuna.Study, budget: int, label: str) -> Tracker: ...


class Backend(Protocol):
    """Where trials run: ``run`` evaluates the plan's trials until its budget or the deadline is used up."""

    def session(self, config: StudyConfig, url: str) -> ContextManager[str]:
        """Set-up around a whole study (e.g. joining a Ray cluster); yields the storage URL trials use."""

    def describe(self, config: StudyConfig) -> str:
        """How trials run, for the first line of output (e.g. '2 worker(s)')."""

    def run(self, plan: RunPlan, deadline: float | None, poll: Callable[[], None]) -> None: ...


class QuietReporter:
    """Shows nothing (benchmarks, library use)."""

    def message(self, text: str) -> None:
        pass

    def track(self, study: optuna.Study, budget: int, label: str) -> Tracker:
        return self

    def poll(self) -> None:
        pass

    def close(self) -> None:
        pass


def open_plan(plan: RunPlan, reporter: Reporter, label: str) -> tuple[optuna.Study, bool]:
    """Creates or resumes the plan's study, fails dead runs' trials; returns it and whether budget is left."""
    study = create_study(plan.config, plan.url)
    stale = fail_stale_trials(study, plan.config.execution.stale_limit_s, url=plan.url)
    if stale:
        reporter.message(f"marked {len(stale)} trial(s) of a dead run FAIL: {stale}")
    if counted_trials(study) >= plan.budget:
        reporter.message(f"{label}: budget of {plan.budget} trials already used; nothing to run")
        return study, False
    return study, True


def run_plan(plan: RunPlan, backend: Backend, deadline: float | None, reporter: Reporter, label: str) -> optuna.Study:
    """One search (the study or its baseline) on ``backend``, with progress; returns its study."""
    study, budget_left = open_plan(plan, reporter, label)
    if not budget_left:
        return study
    tracker = reporter.track(study, plan.budget, label)
    try:
        backend.run(plan, deadline, tracker.poll)
    finally:
        tracker.close()
    return study


def preflight(config: StudyConfig) -> None:
    """Loads the data and samples one genome in this process, so a bad dataset, space or zoo name exits 2 up front."""
    from evaluators.datasets import default_cache_dir, load_dataset, training_part
    from evaluators.ordering import data_orders
    from nas.search.genomes import genome_family, reorder_request, resolve_space, sample_genome
    from nas.search.presets import dense_space_within
    from search_space import GenomeError, get_zoo

    for field, names in (("warm_start", config.warm_start), ("baseline.warm_start", config.baseline.warm_start)):
        for name in names:
            try:
                entry = get_zoo(name)
            except GenomeError as exc:
                raise ConfigError(f"{field}: {exc}") from None
            if field.startswith("baseline") and genome_family(entry.build()) != "dense":
                raise ConfigError(f"{field}: zoo model {name!r} is not an MLP; the dense baseline tries only MLPs")
    data = load_dataset(config.dataset)
    space = resolve_space(config.search_space)
    orders = data_orders(data.x_train.numpy(), *reorder_request(space, data.input_shape), default_cache_dir())
    probe = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).ask()
    sample_genome(probe, space, data.input_shape, data.num_classes, orders)  # the orders are cached for the workers
    for i, params in enumerate(config.enqueue):
        check_parameter_set(config, space, data, orders, params, f"enqueue[{i}]")
    if config.pruner.screen is not None:  # before the study is stored: a corrected number must not read as a change
        training_part(data, config.pruner.screen.train_samples, SCREEN_FIELD)
    if config.baseline.trials > 0:  # limits no MLP fits: one line here, not a traceback from every worker
        baseline = baseline_config(config)
        dense_space_within(resolve_space(baseline.search_space), math.prod(data.input_shape), data.num_classes,
                           baseline.constraints.max_params, baseline.constraints.max_flops)


def check_parameter_set(config: StudyConfig, space: dict, data, orders, params: dict, where: str) -> None:
    """Raises ConfigError unless ``params`` draws a genome and its training, every parameter used: a typo or a
    missing or impossible value exits up front rather than being replaced by the sampler's own draw."""
    from nas.search.genomes import sample_epochs, sample_genome
    from search_space import GenomeError

    fixed = optuna.trial.FixedTrial(params)
    try:
        with warnings.catch_warnings():  # FixedTrial only warns about a value outside its distribution
            warnings.simplefilter("error", UserWarning)
            sample_genome(fixed, space, data.input_shape, data.num_classes, orders).validate()
            config.training.train_config(fixed, sample_epochs(fixed, space, config.max_epochs))
    except (ValueError, GenomeError, UserWarning) as exc:
        raise ConfigError(f"{where}: {str(exc).splitlines()[0]}") from None
    unused = sorted(set(params) - set(fixed.params))
    if unused:
        raise ConfigError(f"{where}: parameter {unused[0]!r} is not drawn by this search space with these values")


def run_study(config: StudyConfig, url: str, backend: Backend,
              reporter: Reporter | None = None) -> tuple[optuna.Study, optuna.Study | None]:
    """Runs the dense baseline if the storage lacks it, then the search; returns (study, baseline)."""
    reporter = reporter or QuietReporter()
    preflight(config)
    with backend.session(config, url) as url:
        reporter.message(f"study {config.name!r} in {mask_url(url)}: {config.budget.trials} trials, "
                         f"{backend.describe(config)}")
        create_study(config, url)  # a resume with another definition of a trial stops here, before the baseline
        baseline = None
        if config.baseline.trials > 0:
            plan = RunPlan(baseline_config(config), url)
            baseline = run_plan(plan, backend, None, reporter, f"dense baseline ({plan.config.name})")
        deadline = time.time() + 60 * config.budget.minutes if config.budget.minutes else None
        if baseline is not None:
            write_study(create_study(config, url), baseline_study=baseline.study_name)
        study = run_plan(RunPlan(config, url), backend, deadline, reporter, f"search ({config.name})")
    return study, baseline


@contextlib.contextmanager
def no_session(config: StudyConfig, url: str):
    """A backend's session that needs no set-up: trials use the URL as given."""
    yield url
