"""One search trial, from sampled genome to a record in the storage; the same code serves every backend.

Records (trial user attributes): ``genome`` (JSON), ``genome_key``, ``summary``, ``family``, ``params``,
``flops``, ``curve`` (per-epoch dicts), ``epochs``, ``rung_<E>`` (val accuracy at rung epoch E),
``val_accuracy``, ``test_accuracy``, ``latency_ms``, ``reason`` (why it was pruned, failed or infeasible),
``infeasible``, ``duplicate_of``, ``zoo``, ``host``/``pid``/``heartbeat``/``node``, ``weights_artifact``,
``ray_trial`` (the Ray Tune trial id on the Ray backend, whose ``host``/``pid`` are the driver's).
"""
from __future__ import annotations

import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import optuna
import torch
from optuna.trial import FrozenTrial, TrialState

from evaluators.datasets import Splits
from evaluators.training import EpochReport, TrainConfig, TrainResult, train
from nas.config import FloatRange, StudyConfig
from nas.pareto import rung_survivors
from nas.space import genome_family, sample_genome
from search_space import Genome, GenomeError, get_zoo

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
INFEASIBLE_PARAMS = 1e9  # objective value recorded for a genome that has no analytic size at all


@dataclass
class TrialContext:
    """What a worker needs to evaluate trials: the study, its config, the data and where artifacts go."""

    study: optuna.Study
    config: StudyConfig
    data: Splits
    space: dict
    threads: int | None = None
    artifact_dir: Path | None = None
    sample: Callable[[optuna.trial.BaseTrial, dict, tuple, int], Genome] = sample_genome
    device: str | None = None


def objective_values(config: StudyConfig, metrics: dict) -> list[float]:
    return [float(metrics[o.metric]) for o in config.objectives]


def suggest_value(trial: optuna.trial.BaseTrial, name: str, value: float | FloatRange) -> float:
    """A fixed training value, or one sampled from its ``{low, high, log}`` range."""
    if isinstance(value, FloatRange):
        return trial.suggest_float(name, value.low, value.high, log=value.log)
    return float(value)


def train_config(ctx: TrialContext, trial: optuna.trial.BaseTrial, epochs: int) -> TrainConfig:
    t = ctx.config.training
    return TrainConfig(optimizer=t.optimizer, lr=suggest_value(trial, "lr", t.lr),
                       weight_decay=suggest_value(trial, "weight_decay", t.weight_decay), momentum=t.momentum,
                       batch_size=t.batch_size, epochs=epochs, schedule=t.schedule,
                       label_smoothing=t.label_smoothing, mixup=t.mixup, seed=t.seed + trial.number,
                       threads=ctx.threads, device=ctx.device or t.device, init=t.init,
                       trial_timeout_s=t.trial_timeout_s)


def violations(config: StudyConfig, genome: Genome) -> tuple[float, str | None]:
    """How far a genome exceeds the analytic constraints (0 when feasible) and why."""
    limits = [("params", genome.params, config.constraints.max_params),
              ("flops", genome.flops, config.constraints.max_flops)]
    for name, value, limit in limits:
        if limit is not None and value > limit:
            return value / limit - 1.0, f"{name} {value:,} exceed max_{name} {limit:,}"
    return 0.0, None


def finished_twin(study: optuna.Study, trial: optuna.Trial, key: str) -> FrozenTrial | None:
    """An earlier COMPLETE, trained trial of the same genome and training values (its result is reused)."""
    for other in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        attrs = other.user_attrs
        if other.number != trial.number and attrs.get("genome_key") == key and "infeasible" not in attrs \
                and "duplicate_of" not in attrs and other.params == trial.params:
            return other
    return None


def _training_values(params: dict) -> dict:
    return {k: v for k, v in params.items() if k in ("lr", "weight_decay")}


def rung_records(study: optuna.Study, epoch: int, objectives: list, exclude: int) -> dict[int, tuple]:
    """(accuracy at the rung, other objectives oriented to maximize) of every trial that reached it."""
    records = {}
    for other in study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.COMPLETE, TrialState.PRUNED)):
        acc = other.user_attrs.get(f"rung_{epoch}")
        if acc is None or other.number == exclude:
            continue
        records[other.number] = oriented(acc, other.user_attrs, objectives)
    return records


def oriented(acc: float, attrs: dict, objectives: list) -> tuple:
    point = [acc]
    for objective in objectives[1:]:
        value = float(attrs.get(objective.metric, 0.0))  # unknown before training (latency): a tie
        point.append(-value if objective.direction == "minimize" else value)
    return tuple(point)


def record_failure(trial: optuna.Trial, exc: BaseException) -> None:
    """Writes why a trial crashed (one line) and the end of its traceback; call it inside ``except``."""
    reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300]
    trial.set_user_attr("reason", reason)
    trial.set_user_attr("traceback", traceback.format_exc()[-2000:])


def run_trial(ctx: TrialContext, trial: optuna.Trial) -> TrialState:
    """Evaluates one reserved trial and tells the storage; never raises for a bad genome or a failed fit."""
    try:
        return _run_trial(ctx, trial)
    except Exception as exc:  # a trial's crash is recorded, the study goes on
        record_failure(trial, exc)
        ctx.study.tell(trial, state=TrialState.FAIL)
        return TrialState.FAIL


@dataclass
class PreparedTrial:
    """A sampled, feasible genome not trained before, and how to train it: all that is left is the fit."""

    genome: Genome
    train: TrainConfig


def prepare_trial(ctx: TrialContext, trial: optuna.Trial) -> PreparedTrial | TrialState:
    """Samples the genome (define-by-run) and training values and records them on the trial.

    An infeasible genome, or a copy of one already trained, is told to the storage here and its state returned.
    """
    config, study = ctx.config, ctx.study
    zoo_name = trial.user_attrs.get("zoo")
    try:
        if zoo_name:
            genome = get_zoo(zoo_name).build(ctx.data.input_shape, ctx.data.num_classes)
        else:
            genome = ctx.sample(trial, ctx.space, ctx.data.input_shape, ctx.data.num_classes).validate()
    except GenomeError as exc:
        return _tell_infeasible(ctx, trial, str(exc), INFEASIBLE_PARAMS, 1.0)
    key = genome.key()
    for name, value in [("genome", genome.to_json()), ("genome_key", key), ("summary", genome.summary()),
                        ("family", genome_family(genome)), ("params", genome.params), ("flops", genome.flops)]:
        trial.set_user_attr(name, value)
    violation, why = violations(config, genome)
    if violation > 0:
        return _tell_infeasible(ctx, trial, why, genome.params, violation)
    cfg = train_config(ctx, trial, config.max_epochs)
    twin = finished_twin(study, trial, key)
    if twin is not None:
        for name in ("val_accuracy", "test_accuracy", "latency_ms", "curve", "epochs", "weights_artifact"):
            if name in twin.user_attrs:
                trial.set_user_attr(name, twin.user_attrs[name])
        trial.set_user_attr("duplicate_of", twin.number)
        trial.set_constraint("violation", 0.0)
        study.tell(trial, twin.values)
        return TrialState.COMPLETE
    return PreparedTrial(genome, cfg)


def record_epoch(trial: optuna.Trial, curve: list[dict], report: EpochReport, rungs: set[int]) -> None:
    """Appends the epoch to the trial's ``curve``, beats its ``heartbeat`` and, at a rung, writes ``rung_<E>``."""
    curve.append(report.to_dict())
    trial.set_user_attr("curve", curve)
    trial.set_user_attr("heartbeat", time.time())
    if report.epoch in rungs:
        trial.set_user_attr(f"rung_{report.epoch}", report.val_accuracy)


def rung_verdict(study: optuna.Study, config: StudyConfig, number: int, epoch: int, val_accuracy: float,
                 attrs: dict) -> str | None:
    """Why trial ``number`` stops at rung ``epoch``, or None if it continues.

    It continues when ``rung_survivors`` (top ``ceil(n / reduction_factor)`` by Pareto rank) keeps it among
    the ``n`` trials that reached the rung: the others' ``rung_<E>`` records plus its own ``val_accuracy``.
    """
    records = rung_records(study, epoch, config.objectives, number)
    records[number] = oriented(val_accuracy, attrs, config.objectives)
    if number in rung_survivors(records, config.pruner.reduction_factor):
        return None
    return (f"rung at epoch {epoch}: not in the top 1/{config.pruner.reduction_factor} of {len(records)} trials "
            f"by Pareto rank")


def record_result(trial: optuna.Trial, prepared: PreparedTrial, result: TrainResult,
                  save: Callable[[torch.nn.Module], str] | None) -> dict | None:
    """Writes a full-length fit's numbers (and, with ``save``, its weights' artifact id); returns its metrics.

    A fit that stopped on its own ('nan', 'timeout') gets its ``reason`` written and returns None.
    """
    if result.stopped is not None:
        trial.set_user_attr("reason", result.reason or result.stopped)
        return None
    genome = prepared.genome
    metrics = {"val_accuracy": result.val_accuracy, "params": genome.params, "flops": genome.flops,
               "latency_ms": result.latency_ms}
    for name in ("val_accuracy", "test_accuracy", "latency_ms", "train_time_s"):
        trial.set_user_attr(name, getattr(result, name))
    trial.set_user_attr("lr", prepared.train.lr)
    if save is not None:
        trial.set_user_attr("weights_artifact", save(result.model))
    return metrics


def _run_trial(ctx: TrialContext, trial: optuna.Trial) -> TrialState:
    config, study = ctx.config, ctx.study
    prepared = prepare_trial(ctx, trial)
    if isinstance(prepared, TrialState):
        return prepared
    rungs = set(config.pruner.rungs())
    curve: list[dict] = []

    def on_epoch(report: EpochReport) -> bool:
        record_epoch(trial, curve, report, rungs)
        if report.epoch not in rungs:
            return False
        reason = rung_verdict(study, config, trial.number, report.epoch, report.val_accuracy, trial.user_attrs)
        if reason is None:
            return False
        trial.set_user_attr("reason", reason)
        return True

    result = train(prepared.genome, ctx.data, prepared.train, callback=on_epoch, evaluate_test=True)
    trial.set_user_attr("epochs", result.epochs)
    if result.stopped == "callback":
        study.tell(trial, state=TrialState.PRUNED)
        return TrialState.PRUNED
    save = (lambda model: save_weights(ctx, trial, model)) if ctx.artifact_dir is not None else None
    metrics = record_result(trial, prepared, result, save)
    if metrics is None:
        study.tell(trial, state=TrialState.FAIL)
        return TrialState.FAIL
    trial.set_constraint("violation", 0.0)
    study.tell(trial, objective_values(config, metrics))
    return TrialState.COMPLETE


def _tell_infeasible(ctx: TrialContext, trial: optuna.Trial, reason: str, params: float, violation: float) -> TrialState:
    """Infeasible genomes are never trained: COMPLETE with zero accuracy and a positive constraint violation."""
    trial.set_user_attr("infeasible", reason)
    trial.set_user_attr("reason", reason)
    trial.set_user_attr("violation", violation)
    trial.set_constraint("violation", violation)  # samplers treat > 0 as infeasible
    metrics = {"val_accuracy": 0.0, "params": params, "flops": trial.user_attrs.get("flops", INFEASIBLE_PARAMS),
               "latency_ms": INFEASIBLE_PARAMS}
    ctx.study.tell(trial, objective_values(ctx.config, metrics))
    return TrialState.COMPLETE


def save_weights(ctx: TrialContext, trial: optuna.Trial, model: torch.nn.Module) -> str:
    """Uploads the trained state dict to the study's artifact store; returns the artifact id."""
    return upload_weights(ctx.artifact_dir, trial.number, trial, model)


def upload_weights(artifact_dir: Path, number: int, study_or_trial: optuna.Trial | FrozenTrial,
                   model: torch.nn.Module, storage: optuna.storages.BaseStorage | None = None) -> str:
    """Stores ``model``'s state dict under ``artifact_dir`` as trial ``number``'s weights; returns the artifact id.

    ``storage`` is needed only with a FrozenTrial (a process that holds no live ``optuna.Trial``, as a Ray worker).
    """
    from optuna.artifacts import FileSystemArtifactStore, upload_artifact

    artifact_dir.mkdir(parents=True, exist_ok=True)
    store = FileSystemArtifactStore(artifact_dir)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"trial-{number}-weights.pt"
        torch.save(model.state_dict(), path)
        return upload_artifact(artifact_store=store, file_path=str(path), study_or_trial=study_or_trial,
                               storage=storage)
