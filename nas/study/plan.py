"""The study plan every backend shares: create or resume a study, sweep dead runs, count and reserve the budget.

A :class:`RunPlan` is one search in a storage: the study itself, or its dense baseline (a study whose search
space is the ``dense`` preset). Backends (``nas.execution``) evaluate the trials that :func:`reserve_trial` hands
out; everything about the budget and the study's identity lives here.
"""
from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import optuna
from optuna.trial import TrialState

from evaluators.datasets import parse_dataset_spec
from nas.errors import ConfigError
from nas.study.ledger import ledger
from nas.study.config import Budget, FloatRange, Objective, Pruner, Sampler, StudyConfig, Training, parse_config
from nas.study.records import read_study, write, write_study
from nas.study.storage import budget_lock, mask_url, open_storage, sqlite_path, worker_identity



@dataclass
class RunPlan:
    """One search (the study or its dense baseline): what to sample, where it is stored, how much to run."""

    config: StudyConfig
    url: str
    enqueued: bool = False  # every ``enqueue`` and spread-start parameter set has some trial in the study
    starts: list[dict] = field(default_factory=list)  # the spread start's parameter sets (nas/search/start.py)

    @property
    def budget(self) -> int:
        return self.config.budget.trials


def dataset_slug(dataset: dict) -> str:
    """A readable, unique name for a dataset spec, e.g. ``mnist1d-permuted-3f2a9c``."""
    spec = parse_dataset_spec(dataset).to_dict()
    digest = hashlib.sha1(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:6]
    return f"{spec['name']}{'-permuted' if spec.get('permute') else ''}-{digest}"


def limits_suffix(config: StudyConfig) -> str:
    c = config.constraints
    return "".join(f"-{name}{value}" for name, value in (("p", c.max_params), ("f", c.max_flops)) if value)


# What a resumed study must keep: its trials were sampled, trained and ranked under these sections.
RESUME_FIXED = ("dataset", "search_space", "objectives", "constraints", "pruner", "training")
RESUME_FREE_TRAINING = ("device", "trial_timeout_s")  # how a fit runs, not what it computes
# which draws train past their first epoch, not what a rung or a full-budget result means (a study stored before
# the field existed ran without it: resuming it with the default would start stopping trials mid-study unasked)
RESUME_FREE_PRUNER = ("max_slowdown",)


def first_difference(stored: object, current: object, where: str) -> tuple[str, object, object] | None:
    """The first field (dotted path) where two JSON-like configs differ, with both values; None if equal."""
    if isinstance(stored, dict) and isinstance(current, dict):
        for key in [*stored, *(k for k in current if k not in stored)]:
            found = first_difference(stored.get(key), current.get(key), f"{where}.{key}")
            if found:
                return found
        return None
    if isinstance(stored, list) and isinstance(current, list) and len(stored) == len(current):
        for i, (a, b) in enumerate(zip(stored, current)):
            found = first_difference(a, b, f"{where}[{i}]")
            if found:
                return found
        return None
    return None if stored == current else (where, stored, current)


def resume_conflict(stored: dict, config: StudyConfig) -> tuple[str, object, object] | None:
    """Why ``config`` cannot resume a study created with ``stored`` (its first differing fixed field), or None.

    Budget, execution (but ``simulate``), sampler, warm start, storage, ``training.device``/``trial_timeout_s`` and
    ``pruner.max_slowdown`` may change between runs; the rest of the sections in ``RESUME_FIXED`` may not (rung
    records and full-budget results would mix two definitions)."""
    def comparable(data: dict) -> dict:
        """Defaults filled (a config stored before a field existed has it at its default), the dataset spec
        normalized, and training minus how it runs (device, timeout)."""
        data = parse_config(data, "stored config").model_dump(mode="json")
        data["dataset"] = parse_dataset_spec(data["dataset"]).to_dict()
        data["training"] = {k: v for k, v in data["training"].items() if k not in RESUME_FREE_TRAINING}
        data["pruner"] = {k: v for k, v in data["pruner"].items() if k not in RESUME_FREE_PRUNER}
        return data

    stored, current = comparable(stored), comparable(config.model_dump(mode="json"))
    for section in RESUME_FIXED:
        found = first_difference(stored.get(section), current.get(section), section)
        if found:
            return found
    was, now = stored["execution"]["simulate"], current["execution"]["simulate"]
    return None if was == now else ("execution.simulate", was, now)  # synthetic and trained results never mix


def baseline_config(config: StudyConfig) -> StudyConfig:
    """The dense-baseline search for the study's dataset: MLPs (depth, widths, dropout, lr, weight decay and
    1x or 2x the study's epochs searched by TPE), no pruning, the study's size limits.

    The baseline is tuned within the same ``constraints`` as the search, so the comparison is like for like, unless
    ``baseline.max_params`` gives the MLPs a limit of their own (a seed's published dense sizes); its study name
    includes the limits and a digest of the training settings and epochs, so studies with other limits or training
    on the same data get their own baseline (and share it otherwise). Its first trials are
    ``baseline.warm_start`` (by default the MNIST-1D paper's MLP), recorded infeasible, untrained, where they exceed
    the limits; then TPE's own random start (not the spread start).
    """
    epochs = config.max_epochs
    if config.baseline.max_params is not None:
        config = config.model_copy(update={"constraints": config.constraints.model_copy(
            update={"max_params": config.baseline.max_params})})
    trained_as = json.dumps([config.training.model_dump(mode="json"), epochs], sort_keys=True)
    digest = hashlib.sha1(trained_as.encode()).hexdigest()[:6]
    return config.model_copy(update={
        "name": f"baseline-{dataset_slug(config.dataset)}{limits_suffix(config)}-t{digest}"
                + ("-simulated" if config.execution.simulate else ""),  # never mixed with a trained baseline
        "search_space": {"preset": "dense", "epochs": [epochs, 2 * epochs]},
        "training": baseline_training(config.training),
        "objectives": [Objective(metric="val_accuracy", direction="maximize"),
                       Objective(metric="params", direction="minimize")],  # what every report draws it on
        "pruner": Pruner(name="none", min_epochs=epochs, max_epochs=epochs),
        "budget": Budget(trials=config.baseline.trials),
        "warm_start": list(config.baseline.warm_start),
        "enqueue": [],  # the search's parameter sets: an MLP would take their lr and dropout
        # its own random start: the default of 24 trials was measured so (RESULTS "Dense baseline plateau")
        "sampler": Sampler(name="tpe", seed=config.sampler.seed, start="random"),
    })


def baseline_training(training: Training) -> Training:
    """The study's training with lr and weight decay searched: a range given stays, a fixed lr ``x`` becomes
    [x/10, 3x] and a fixed weight decay [1e-6, 1e-2], both log-uniform (the dense baseline is tuned, not guessed)."""
    lr = training.lr if isinstance(training.lr, FloatRange) else FloatRange(low=training.lr / 10,
                                                                             high=3 * training.lr, log=True)
    decay = training.weight_decay if isinstance(training.weight_decay, FloatRange) else \
        FloatRange(low=1e-6, high=1e-2, log=True)
    return training.model_copy(update={"lr": lr, "weight_decay": decay})


def artifact_dir(config: StudyConfig, url: str) -> Path:
    """Weights live next to a SQLite file, else under ``runs/<study>/artifacts``."""
    path = sqlite_path(url)
    return (path.parent if path is not None else config.run_dir()) / "artifacts"


def create_study(config: StudyConfig, url: str) -> optuna.Study:
    """Creates or resumes the study; a resumed study must keep its objectives and every ``RESUME_FIXED`` section."""
    directions = [o.direction for o in config.objectives]
    storage = open_storage(url)
    study = optuna.create_study(study_name=config.name, storage=storage, directions=directions, load_if_exists=True)
    existing = [d.name.lower() for d in study.directions]
    if existing != directions:
        raise ConfigError(f"objectives: study {config.name!r} already exists with directions {existing}, "
                          f"the config asks for {directions}; use another name")
    stored = read_study(study, "config")
    conflict = resume_conflict(stored, config) if stored else None
    if conflict:
        field, was, now = conflict
        change = f"was run without it, the config now has {now!r}" if was is None else \
            f"was run with {was!r}, the config now " + ("leaves it out" if now is None else f"has {now!r}")
        raise ConfigError(f"{field}: study {config.name!r} in {mask_url(url)} {change}; resuming would mix two "
                          "definitions of a trial: restore it, or give the study a new name")
    metrics = [o.metric for o in config.objectives]
    write_study(study, config=config.model_dump(mode="json"), metrics=metrics)
    if study.metric_names != metrics:
        with warnings.catch_warnings():  # Optuna marks set_metric_names experimental
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(metrics)  # optuna-dashboard and the optuna CLI show these, not 0 and 1
    return study


def counted_trials(study: optuna.Study) -> int:
    """Trials that use up the budget: finished ones (not those killed with their worker) and running ones."""
    return ledger(study).in_budget()


def reserve_trial(study: optuna.Study, plan: RunPlan, stamp: dict | None = None) -> optuna.Trial | None:
    """Atomically (across processes) checks the budget and creates the next trial, or returns None; the trial is
    stamped with its worker's identity and ``stamp`` (e.g. a Ray worker's node) in one write."""
    with budget_lock(plan.url, study.study_name):
        book = ledger(study)
        if book.in_budget() >= plan.budget:
            return None
        pending = [name for name in plan.config.warm_start if name not in book.zoo_names()]
        if not pending:
            enqueue_parameter_sets(study, plan)
        trial = study.ask()
        write(trial, **worker_identity(), **(stamp or {}), **({"zoo": pending[0]} if pending else {}))
        return trial


def enqueue_parameter_sets(study: optuna.Study, plan: RunPlan) -> None:
    """The first of the config's ``enqueue`` parameter sets, then of the spread start's, that no trial has (fixed
    or drawn) yet, as one waiting trial: the caller holds the budget lock and asks next, so that trial is this set
    and no set waits beyond the budget or the deadline. Only once the zoo warm starts are out (a zoo trial would take a
    waiting trial's place and lose its parameters); once per study across workers and resumes."""
    if plan.enqueued:
        return
    trials = study.get_trials(deepcopy=False)
    if any(t.state == TrialState.WAITING for t in trials):  # left by a process killed before its ask: asked next
        return
    for params in [*plan.config.enqueue, *plan.starts]:
        if not any(t.system_attrs.get("fixed_params") == params or params.items() <= t.params.items() for t in trials):
            study.enqueue_trial(params)
            return
    plan.enqueued = True
