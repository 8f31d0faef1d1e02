"""Ray Tune's "when to stop": the study's Pareto-aware rung rule (``nas.scheduling.rungs``) as a TrialScheduler.

A thin adapter: at a rung epoch it reads the rung's records from the storage (the trainable wrote its own
``rung_<E>`` before reporting), asks the same rule the local backend asks, and answers STOP or CONTINUE.
Everything else is FIFO. Results are never buffered, so a trial never trains past a rung before the verdict.
"""
from __future__ import annotations

from typing import Callable

import optuna
from ray.tune.experiment import Trial
from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from nas.study.config import StudyConfig
from nas.execution.ray.searcher import OUTCOME, DriverOnly
from nas.scheduling.rungs import rung_verdict


class RungScheduler(DriverOnly, FIFOScheduler):
    """Stops a Ray trial at a rung epoch unless the Pareto-aware rung rule keeps it."""

    _supports_buffered_results = False
    driver_only = ("study", "on_stop")

    def __init__(self, study: optuna.Study, config: StudyConfig, on_stop: Callable[[int, str], None]):
        super().__init__()
        self.study, self.config, self.on_stop = study, config, on_stop
        self.rungs = set(config.pruner.rungs())

    def on_trial_result(self, tune_controller, trial: Trial, result: dict) -> str:
        epoch = result.get("epoch")
        if OUTCOME in result or epoch not in self.rungs:
            return TrialScheduler.CONTINUE
        number = int(result["number"])
        reason = rung_verdict(self.study, self.config, number, int(epoch), float(result["val_accuracy"]), result)
        if reason is None:
            return TrialScheduler.CONTINUE
        self.on_stop(number, reason)
        return TrialScheduler.STOP

    def debug_string(self) -> str:
        return f"Pareto-aware rung rule at epochs {sorted(self.rungs)}, reduction factor " \
               f"{self.config.pruner.reduction_factor}"
