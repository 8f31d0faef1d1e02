"""Trials that repeat an earlier one are not trained again.

Two trials are twins when they build the same genome (its canonical key, whatever parameters drew it) and train it
the same way (every training value but the seed). The first to claim the pair under the study's budget lock holds
it; a later twin copies its full-budget result (COMPLETE), ends PRUNED where it was pruned, or waits while it
runs. A failed holder holds nothing: the next twin trains. A copy records ``duplicate_of`` and carries the seed and
weights of the trial it copies.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import time

import optuna
from optuna.trial import FrozenTrial, TrialState

from evaluators.training import TrainConfig
from nas.study.ledger import ledger
from nas.study.records import AttributeSink, TrialRecord, write
from nas.study.storage import budget_lock, record_violation

NOT_TRAINING = ("seed", "threads", "device", "trial_timeout_s")  # how a fit is run, not what it computes
COPIED = ("val_accuracy", "test_accuracy", "latency_ms", "curve", "epochs", "weights_artifact", "seed", "val_samples",
          "lr", "screen")


def twin_key(genome_key: str, train: TrainConfig) -> str:
    """The genome's canonical key and a digest of its training values (all but ``NOT_TRAINING``)."""
    values = {k: v for k, v in dataclasses.asdict(train).items() if k not in NOT_TRAINING}
    return f"{genome_key}/{hashlib.sha1(json.dumps(values, sort_keys=True).encode()).hexdigest()[:12]}"


def holder(study: optuna.Study, key: str, exclude: int) -> FrozenTrial | None:
    """The trial that trained, was pruned training, or now trains ``key`` (not trial ``exclude``); the first by
    number when there are several."""
    return ledger(study).holder(key, exclude)


def claim(study: optuna.Study, url: str, trial: optuna.Trial, key: str) -> FrozenTrial | None:
    """Atomically (across workers): the holder of ``key``, or None once ``trial`` is recorded as its holder."""
    with budget_lock(url, study.study_name):
        twin = holder(study, key, trial.number)
        if twin is None:
            write(trial, twin_key=key)
        return twin


def copy_twin(study: optuna.Study, trial: optuna.Trial, twin: FrozenTrial) -> TrialState:
    """Ends ``trial`` as its finished twin ended: COMPLETE with its values, or PRUNED after the same epochs."""
    source = TrialRecord.of(twin)
    copied = {name: getattr(source, name) for name in COPIED}
    complete = twin.state == TrialState.COMPLETE
    where = "at its screen" if source.stopped_at_screen else f"after {source.epochs_done} epochs"
    slow = sum(v for v in twin.constraints.values() if v > 0)  # a pruned trial's violation: the slow-trial rule's
    rule = "the slow-trial rule" if slow else "the rung rule"
    reason = {} if complete else {"reason": f"same genome and training as trial {twin.number}, which {rule} "
                                            f"stopped {where}"}
    write(trial, **{k: v for k, v in copied.items() if v is not None}, duplicate_of=twin.number, **reason)
    if complete:
        record_violation(trial, 0.0)
        study.tell(trial, twin.values, skip_if_finished=True)
        return TrialState.COMPLETE
    if slow:
        record_violation(trial, slow)  # so its sampler reads the copy as it reads the trial it copies
    study.tell(trial, state=TrialState.PRUNED, skip_if_finished=True)
    return TrialState.PRUNED


def beat(trial: AttributeSink) -> None:
    """A waiting trial's heartbeat: it is alive, only not training."""
    write(trial, heartbeat=time.time())
