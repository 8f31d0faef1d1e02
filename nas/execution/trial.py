"""One search trial, from sampled genome to a record in the storage; the same code serves every backend.

What a trial writes is the trial record (``nas.study.records``); whether it goes on at a rung is the
scheduling room's verdict (``nas.scheduling.rungs``).
"""
from __future__ import annotations

import math
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import optuna
import torch
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import FrozenTrial, TrialState

from evaluators.datasets import Splits, default_cache_dir, load_dataset, training_part
from evaluators.ordering import data_orders
from evaluators.training import EpochReport, TrainConfig, TrainResult, resolve_device, train
from nas.scheduling.rungs import rung_metrics, rung_verdict, slow_verdict
from nas.search.genomes import genome_family, reorder_request, sample_epochs, sample_genome
from nas.search.presets import dense_space_within, resolve_space
from nas.study.config import SCREEN_FIELD, StudyConfig
from nas.study.plan import RunPlan, artifact_dir
from nas.execution.heartbeat import heartbeat
from nas.execution.screen import screen_trial
from nas.execution.twins import beat, claim, copy_twin, twin_key
from nas.study.records import AttributeSink, TrialRecord, write
from nas.study.storage import StoredTrial, fail_stale_trials, is_stale, record_violation, storage_trial_id
from nas.study.trial_writes import batched_params
from search_space import Genome, GenomeError, get_zoo

INFEASIBLE_PARAMS = 1e9  # objective value recorded for a genome that has no analytic size at all
TWIN_POLL_S = 2.0  # how often a trial waiting for its running twin looks again
CURVE_EVERY_S = 0.25  # between rungs, a training trial's curve is written at most this often (live progress)


@dataclass
class TrialContext:
    """What a worker needs to evaluate trials: the study, its config, the data and where artifacts go."""

    study: optuna.Study
    config: StudyConfig
    url: str
    data: Splits
    space: dict
    threads: int | None = None
    artifact_dir: Path | None = None
    device: str | None = None
    orders: dict[str, list[int]] | None = None  # reorder method -> order recovered from the training split
    screen_data: Splits | None = None  # the data cut to pruner.screen's training subset, when the study screens


def trial_context(plan: RunPlan, study: optuna.Study, threads: int | None = None) -> TrialContext:
    """What evaluating the plan's trials needs: its data, its resolved space (a dense space kept within the
    size limits) and where weights go."""
    config = plan.config
    data = load_dataset(config.dataset)
    space = dense_space_within(resolve_space(config.search_space), math.prod(data.input_shape), data.num_classes,
                               config.constraints.max_params, config.constraints.max_flops)
    orders = data_orders(data.x_train.numpy(), *reorder_request(space, data.input_shape), default_cache_dir())
    screen = config.pruner.screen
    return TrialContext(study=study, config=config, url=plan.url, data=data, space=space, threads=threads,
                        artifact_dir=None if config.execution.simulate else artifact_dir(config, plan.url),
                        orders=orders, screen_data=None if screen is None else
                        training_part(data, screen.train_samples, SCREEN_FIELD))


def objective_values(config: StudyConfig, metrics: dict) -> list[float]:
    return [float(metrics[o.metric]) for o in config.objectives]


def violations(config: StudyConfig, genome: Genome) -> tuple[float, str | None]:
    """How far a genome exceeds the analytic constraints (0 when feasible) and why."""
    return config.constraints.excess(genome.params, genome.flops)


def record_failure(trial: AttributeSink, exc: BaseException) -> None:
    """Writes why a trial crashed (one line) and the end of its traceback; call it inside ``except``."""
    reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300]
    write(trial, reason=reason, traceback=traceback.format_exc()[-2000:])


def run_trial(ctx: TrialContext, trial: optuna.Trial) -> TrialState:
    """Evaluates one reserved trial and tells the storage; never raises for a bad genome or a failed fit."""
    try:
        return _run_trial(ctx, trial)
    except UpdateFinishedTrialError:
        return TrialState.FAIL  # a sweep ended it while this worker lived (a long silence): nothing more to write
    except Exception as exc:  # a trial's crash is recorded, the study goes on
        try:
            record_failure(trial, exc)
            ctx.study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
        except UpdateFinishedTrialError:
            pass  # swept meanwhile: it is FAIL already
        return TrialState.FAIL


def fit_function(config: StudyConfig) -> Callable[..., TrainResult]:
    """``evaluators.training.train``, or its synthetic stand-in when the study runs with ``execution.simulate``."""
    if config.execution.simulate:
        from evaluators.simulated import simulated_train
        return simulated_train
    return train


@dataclass
class PreparedTrial:
    """A sampled, feasible genome not trained before, and how to train it: all that is left is the fit."""

    genome: Genome
    train: TrainConfig


def prepare_trial(ctx: TrialContext, trial: optuna.Trial, wait: bool = True) -> PreparedTrial | TrialState | None:
    """Samples the trial (:func:`sample_trial`), then settles it against its twins (:func:`settle`)."""
    sampled = sample_trial(ctx, trial)
    return sampled if isinstance(sampled, TrialState) else settle(ctx, trial, sampled, wait)


def sample_trial(ctx: TrialContext, trial: optuna.Trial) -> PreparedTrial | TrialState:
    """Samples the genome (define-by-run) and training values and records them on the trial.

    An infeasible genome is told to the storage here (COMPLETE, never trained) and its state returned.
    """
    config = ctx.config
    zoo_name = TrialRecord.of(trial).zoo
    try:
        if zoo_name:
            genome = get_zoo(zoo_name).build(ctx.data.input_shape, ctx.data.num_classes)
        else:
            with batched_params(trial):  # ~22 parameters: one transaction instead of one each
                genome = sample_genome(trial, ctx.space, ctx.data.input_shape, ctx.data.num_classes, ctx.orders)
            genome.validate()
    except GenomeError as exc:
        return _tell_infeasible(ctx, trial, str(exc), 1.0)
    sampled = dict(genome=genome.to_json(), genome_key=genome.key(), summary=genome.summary(),
                   family=genome_family(genome), params=genome.params, flops=genome.flops)
    violation, why = violations(config, genome)
    if violation > 0:
        return _tell_infeasible(ctx, trial, why, violation, sampled)
    with batched_params(trial):
        epochs = sample_epochs(trial, ctx.space, config.max_epochs)
        cfg = config.training.train_config(trial, epochs, ctx.threads, ctx.device)
    write(trial, seed=cfg.seed, **sampled, **({"simulated": True} if config.execution.simulate else {}))
    return PreparedTrial(genome, cfg)


def settle(ctx: TrialContext, trial: optuna.Trial, prepared: PreparedTrial,
           wait: bool) -> PreparedTrial | TrialState | None:
    """The prepared fit if this trial is the first to train its genome this way; else its twin's outcome, told
    here (see ``nas.execution.twins``). While the twin runs: wait for it, or (``wait`` False) return None."""
    key = twin_key(prepared.genome.key(), prepared.train)
    while True:
        twin = claim(ctx.study, ctx.url, trial, key)
        if twin is None:
            return prepared
        if twin.state != TrialState.RUNNING:
            return copy_twin(ctx.study, trial, twin)
        if is_stale(twin, ctx.config.execution.stale_limit_s):  # its worker died: it holds nothing any more
            fail_stale_trials(ctx.study, ctx.config.execution.stale_limit_s, url=ctx.url)
            continue
        if not wait:
            return None
        beat(trial)
        time.sleep(TWIN_POLL_S)


class EpochRecorder:
    """The fit's per-epoch callback on every backend. At a rung epoch it writes the trial's ``curve``,
    ``heartbeat`` and ``rung_<E>`` in one attribute group and asks the rung rule; a trial the rule stops keeps the
    rule's ``reason`` here (:func:`record_result` writes it with the epochs) and the fit is told to stop (True).
    After epoch 1 it writes ``epoch_s`` and ``epoch_on`` (``device`` and threads) and, when ``judge_speed`` (a
    trial its sampler drew, with more epochs to go), asks the slow-trial rule the same way; a stop there also keeps
    the constraint ``violation`` its sampler is told. Between rungs it writes the curve at most every
    ``CURVE_EVERY_S``: a small genome's epoch takes milliseconds and each write is a storage round trip, while the
    heartbeat thread keeps the trial alive."""

    def __init__(self, study: optuna.Study, config: StudyConfig, trial: optuna.Trial | StoredTrial, genome: Genome,
                 judge_speed: bool = True, device: str = "cpu"):
        self.study, self.config, self.trial = study, config, trial
        self.judge_speed, self.device = judge_speed, device
        self.rungs, self.curve, self.last_write = set(config.pruner.rungs()), [], time.monotonic()
        self.metrics = rung_metrics(genome)  # known before training
        self.rung_reason: str | None = None
        self.violation = 0.0  # > 0: stopped for being slow, by this much past pruner.max_slowdown

    def __call__(self, report: EpochReport) -> bool:
        self.curve.append(report.to_dict())
        at_rung, first = report.epoch in self.rungs, report.epoch == 1
        if not (at_rung or first) and time.monotonic() - self.last_write < CURVE_EVERY_S:
            return False
        setup = f"{self.device} x{report.threads}"  # only first epochs on the same are compared
        write(self.trial, curve=self.curve, heartbeat=time.time(),
              **({"epoch_s": report.epoch_s, "epoch_on": setup} if first else {}),
              rung=(report.epoch, report.val_accuracy) if at_rung else None)
        self.last_write = time.monotonic()
        slow = slow_verdict(self.study, self.config, self.trial.number, report.epoch_s, setup) \
            if first and self.judge_speed else None
        if slow is not None:
            self.rung_reason, self.violation = slow
        elif at_rung:
            self.rung_reason = rung_verdict(self.study, self.config, self.trial.number, report.epoch,
                                            report.val_accuracy, self.metrics)
        return self.rung_reason is not None


def record_result(trial: AttributeSink, prepared: PreparedTrial, result: TrainResult,
                  save: Callable[[torch.nn.Module], str] | None, on_epoch: EpochRecorder | None = None) -> dict | None:
    """Writes the epochs a fit trained and its whole curve and, for a full-length fit, its numbers (and, with
    ``save``, its weights' artifact id) in one group; returns its metrics.

    A fit that stopped on its own ('nan', 'timeout', or 'callback': the reason the rung rule or the slow-trial rule
    gave ``on_epoch``) gets its ``reason`` written and returns None.
    """
    if result.stopped is not None:
        rung_reason = on_epoch.rung_reason if on_epoch is not None and result.stopped == "callback" else None
        write(trial, epochs=result.epochs, curve=result.curve, reason=rung_reason or result.reason or result.stopped)
        return None
    genome = prepared.genome
    metrics = {"val_accuracy": result.val_accuracy, "params": genome.params, "flops": genome.flops,
               "latency_ms": result.latency_ms}
    saved = {"weights_artifact": save(result.model)} if save is not None else {}
    write(trial, epochs=result.epochs, curve=result.curve, val_accuracy=result.val_accuracy,
          test_accuracy=result.test_accuracy, latency_ms=result.latency_ms, train_time_s=result.train_time_s,
          lr=prepared.train.lr, val_samples=result.val_samples, **saved)
    return metrics


def drawn_by_sampler(trial: optuna.Trial) -> bool:
    """Neither a zoo warm start nor an enqueued parameter set (the spread start, the config's ``enqueue``): those
    are chosen on purpose, and the slow-trial rule leaves them alone."""
    return not trial.user_attrs.get("zoo") and \
        "fixed_params" not in trial.storage.get_trial_system_attrs(storage_trial_id(trial))


def _run_trial(ctx: TrialContext, trial: optuna.Trial) -> TrialState:
    config, study = ctx.config, ctx.study
    prepared = prepare_trial(ctx, trial)
    if isinstance(prepared, TrialState):
        return prepared
    on_epoch = EpochRecorder(study, config, trial, prepared.genome,
                             judge_speed=prepared.train.epochs > 1 and drawn_by_sampler(trial),
                             device=resolve_device(prepared.train.device).type)
    with heartbeat(trial, config.execution.heartbeat_s):
        train = prepared.train
        if ctx.screen_data is not None:
            train = screen_trial(study, config, trial, prepared.genome, train, ctx.screen_data, fit_function(config))
            if isinstance(train, TrialState):
                return train
        result = fit_function(config)(prepared.genome, ctx.data, train, callback=on_epoch, evaluate_test=True)
    save = (lambda model: upload_weights(ctx.artifact_dir, trial.number, trial, model)) \
        if ctx.artifact_dir is not None else None
    metrics = record_result(trial, prepared, result, save, on_epoch)
    if result.stopped == "callback":
        if on_epoch.violation > 0:
            record_violation(trial, on_epoch.violation)  # the sampler puts it with the infeasible trials
        study.tell(trial, state=TrialState.PRUNED, skip_if_finished=True)
        return TrialState.PRUNED
    if metrics is None:
        study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
        return TrialState.FAIL
    record_violation(trial, 0.0)
    study.tell(trial, objective_values(config, metrics), skip_if_finished=True)
    return TrialState.COMPLETE


def _tell_infeasible(ctx: TrialContext, trial: optuna.Trial, reason: str, violation: float,
                     sampled: dict | None = None) -> TrialState:
    """Infeasible genomes are never trained: COMPLETE with zero accuracy and a positive constraint violation;
    ``sampled`` (the genome's record attributes, when it has a size) goes into the same write and gives the
    objective values (``INFEASIBLE_PARAMS`` without it)."""
    sampled = sampled or {}
    write(trial, infeasible=reason, reason=reason, violation=violation, **sampled)
    record_violation(trial, violation)  # samplers treat > 0 as infeasible
    metrics = {"val_accuracy": 0.0, "params": sampled.get("params", INFEASIBLE_PARAMS),
               "flops": sampled.get("flops", INFEASIBLE_PARAMS),
               "latency_ms": INFEASIBLE_PARAMS}
    ctx.study.tell(trial, objective_values(ctx.config, metrics), skip_if_finished=True)
    return TrialState.COMPLETE


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
