"""A study worker, on every backend: it reserves the next trial under the study's budget, samples it with its own
sampler, trains, records and tells it, and goes on until the budget or the deadline is used up. A local worker
process and a Ray worker actor run the same loop, so sampling happens where the training happens and no process
samples for the others."""
from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import optuna
import torch
from optuna.trial import TrialState

from nas.execution.trial import run_trial, trial_context
from nas.search.samplers import make_sampler
from nas.search.start import spread_start
from nas.study.plan import RunPlan, reserve_trial
from nas.study.storage import open_storage
from nas.study.trial_cache import state_synced


class StudyWorker:
    """Worker ``index`` of a run that started with ``stored`` trials in the study, started again after ``restart``
    deaths (the sampler's seed depends on all three: parallel workers, resumed runs and restarted workers each
    draw their own points)."""

    def __init__(self, plan: RunPlan, index: int, threads: int, stored: int, device: str | None = None,
                 artifact_dir: Path | None = None, stamp: dict | None = None, restart: int = 0):
        torch.set_num_threads(threads)
        self.plan, self.stamp = plan, stamp or {}
        config = plan.config
        study = optuna.load_study(study_name=config.name, storage=state_synced(open_storage(plan.url)),
                                  sampler=make_sampler(config, index, stored, restart))
        self.ctx = trial_context(plan, study, threads)
        if stored == 0:  # a fresh study: its first sampled trials are the spread start (none when not spread)
            self.plan = replace(plan, starts=spread_start(config, self.ctx.space, self.ctx.data.input_shape,
                                                          self.ctx.data.num_classes, self.ctx.orders))
        self.ctx.device = device
        if artifact_dir is not None and self.ctx.artifact_dir is not None:  # a Ray node's absolute folder
            self.ctx.artifact_dir = artifact_dir

    def next_trial(self, deadline: float | None) -> tuple[int, TrialState] | None:
        """Runs the study's next trial to its end; returns its number and state, or None when the budget is used up
        or the deadline has passed (nothing reserved then)."""
        if deadline is not None and time.time() >= deadline:
            return None
        trial = reserve_trial(self.ctx.study, self.plan, self.stamp)
        if trial is None:
            return None
        return trial.number, run_trial(self.ctx, trial)
