"""The screen (``pruner.screen``): a trial's first rung, trained on a fixed, stratified part of the training split.

Its validation accuracy is the trial's ``rung_0``, ranked by the rung rule against the other trials' screens only.
A trial that goes on trains its full fit from a fresh model on all the training data, so its full-budget result is
what it would be without the screen; the screen costs about ``epochs * train_samples`` sample-passes per trial.
"""
from __future__ import annotations

import dataclasses
import time
from typing import Callable

import optuna
from optuna.trial import TrialState

from evaluators.datasets import Splits
from evaluators.training import TrainConfig, TrainResult
from nas.scheduling.rungs import SCREEN_RUNG, rung_metrics, rung_verdict
from nas.study.config import StudyConfig
from nas.study.records import write
from search_space import Genome


def screen_trial(study: optuna.Study, config: StudyConfig, trial: optuna.Trial, genome: Genome, train: TrainConfig,
                 data: Splits, fit: Callable[..., TrainResult]) -> TrialState | TrainConfig:
    """Trains the screen on ``data`` (the study's screen part), records it (``screen`` and ``rung_0`` in one write)
    and ends the trial where it stops: PRUNED when the rung rule drops it, FAIL when the fit itself stopped (NaN
    loss, timeout). A trial that goes on gets ``train`` back with the screen's seconds taken off its time limit."""
    screen = config.pruner.screen
    started = time.monotonic()
    result = fit(genome, data, dataclasses.replace(train, epochs=screen.epochs), evaluate_test=False)
    seconds = time.monotonic() - started
    record = {"train_samples": len(data.y_train), "epochs": result.epochs, "val_accuracy": result.val_accuracy,
              "train_time_s": round(seconds, 3)}
    if result.stopped is not None:
        write(trial, screen=record, epochs=0, reason=f"screen: {result.reason or result.stopped}")
        study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
        return TrialState.FAIL
    write(trial, screen=record, rung=(SCREEN_RUNG, result.val_accuracy))
    reason = rung_verdict(study, config, trial.number, SCREEN_RUNG, result.val_accuracy, rung_metrics(genome))
    if reason is None:
        limit = train.trial_timeout_s
        return train if limit is None else dataclasses.replace(train, trial_timeout_s=max(limit - seconds, 1e-3))
    write(trial, epochs=0, reason=f"{reason} ({result.val_accuracy:.2%} after {screen.epochs} epoch(s) on "
                                   f"{screen.train_samples:,} samples)")
    study.tell(trial, state=TrialState.PRUNED, skip_if_finished=True)
    return TrialState.PRUNED
