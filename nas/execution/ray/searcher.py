"""Ray Tune's "what to try next": a Searcher that asks and tells the study's own Optuna study in its storage.

``suggest`` reserves a trial under the study's budget lock (so the driver's pid and host are its ``pid``/``host``
and a dead driver's trials are swept like a dead local worker's), samples its genome define-by-run here in the
driver, and hands Ray the trial's number and storage id, the genome's JSON and key, and the training values.
Infeasible genomes and twins of finished trials are told at once and never reach Ray; a twin of a trial still
training waits here, without blocking the driver, until that one ends (``nas.execution.twins``).
``on_trial_complete`` tells the outcome: COMPLETE with the objective values of a full-length fit, PRUNED when the
rung rule stopped it (never COMPLETE with partial values, which is what Ray's stock OptunaSearch records), FAIL with
a reason otherwise.
"""
from __future__ import annotations

import dataclasses
import time

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import TrialState
from ray.tune.search import Searcher

from nas.execution.trial import (PreparedTrial, TrialContext, objective_values, record_failure, sample_trial,
                                 settle)
from nas.execution.twins import beat
from nas.study.plan import RunPlan, reserve_trial
from nas.study.records import write
from nas.study.storage import record_violation, storage_trial_id

OUTCOME = "outcome"  # result key of a trial's one report: 'complete', 'pruned' or 'fail'


class DriverOnly:
    """Leaves live handles (study, storage, console) out of pickles.

    ``tune.Tuner`` pickles its searcher, scheduler and callbacks into ``tuner.pkl`` for ``Tuner.restore``. This
    backend never restores from it: a run resumes from the study's storage (``nas run`` again).
    """

    driver_only: tuple[str, ...] = ()

    def __getstate__(self) -> dict:
        return {k: None if k in self.driver_only else v for k, v in self.__dict__.items()}


class StudySearcher(DriverOnly, Searcher):
    """Suggests the study's next trials and records how each Ray trial ended."""

    driver_only = ("ctx", "live", "waiting")

    def __init__(self, ctx: TrialContext, plan: RunPlan, deadline: float | None = None):
        super().__init__()
        self.ctx, self.plan, self.deadline = ctx, plan, deadline
        self.live: dict[str, optuna.Trial] = {}     # Ray trial id -> the reserved Optuna trial
        self.unrecorded: list[str] = []             # trials whose outcome the storage refused (raised after the run)
        self.finished = False                       # the budget or the deadline is used up
        self.waiting: dict[optuna.Trial, PreparedTrial] = {}  # reserved trials whose twin is still training
        self.max_waiting = max(1, ctx.config.execution.workers)  # as many as local workers could wait

    def suggest(self, trial_id: str) -> dict | str | None:
        """The next trial that needs training; None while only trials waiting for a running twin are left (Ray
        asks again); FINISHED when the budget (or the deadline) is used up."""
        for trial, prepared in list(self.waiting.items()):
            params = self._hand_over(trial_id, trial, self._settle(trial, prepared))
            if params is not None:
                return params
        while (self.deadline is None or time.time() < self.deadline) and len(self.waiting) < self.max_waiting:
            trial = reserve_trial(self.ctx.study, self.plan)
            if trial is None:
                break
            try:
                prepared = sample_trial(self.ctx, trial)
            except Exception as exc:  # a trial's crash is recorded, the study goes on (as run_trial does)
                record_failure(trial, exc)
                self.ctx.study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
                continue
            if isinstance(prepared, PreparedTrial):
                self.waiting[trial] = prepared
                params = self._hand_over(trial_id, trial, self._settle(trial, prepared))
                if params is not None:
                    return params
        if self.waiting and (self.deadline is None or time.time() < self.deadline):
            return None  # waiting for twins (at most max_waiting, so copies cannot use up the budget at once)
        for trial in self.waiting:  # the deadline came first: like a killed worker's, they do not use up the budget
            write(trial, reason="the time budget ran out while it waited for its running twin", killed=True)
            self.ctx.study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
        self.waiting.clear()
        self.finished = True
        return Searcher.FINISHED

    def _settle(self, trial: optuna.Trial, prepared: PreparedTrial) -> PreparedTrial | TrialState | None:
        """``settle`` without waiting: the driver must keep serving Ray while a twin trains."""
        try:
            outcome = settle(self.ctx, trial, prepared, wait=False)
        except UpdateFinishedTrialError:
            outcome = TrialState.FAIL  # swept while it waited: it is FAIL already
        if outcome is not None:
            del self.waiting[trial]
        return outcome

    def beat_waiting(self) -> None:
        """Heartbeats for the trials waiting on a running twin (the driver is alive; they only wait)."""
        for trial in list(self.waiting):
            try:
                beat(trial)
            except UpdateFinishedTrialError:
                del self.waiting[trial]

    def _hand_over(self, trial_id: str, trial: optuna.Trial, outcome: PreparedTrial | TrialState | None) -> dict | None:
        """Ray's parameters for a fit to run; None for a trial still waiting or settled by its twin."""
        if not isinstance(outcome, PreparedTrial):
            return None
        self.live[trial_id] = trial  # the Ray trial writes its id with its node, in one group
        return ray_params(trial, outcome)

    def save(self, checkpoint_path: str) -> None:
        """Nothing to save: the study's storage holds this searcher's state."""

    def restore(self, checkpoint_path: str) -> None:
        """Nothing to restore: see ``save``."""

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        trial = self.live.pop(trial_id, None)
        if trial is None:
            return
        try:
            self._tell(trial, trial_id, result or {}, error)
        except UpdateFinishedTrialError:
            pass  # a sweep failed it while the driver lived: nothing more to write
        except Exception as exc:  # Ray would only log it: kept and raised once the run is over
            self.unrecorded.append(f"trial {trial.number}: {type(exc).__name__}: {exc}"[:300])

    def _tell(self, trial: optuna.Trial, trial_id: str, result: dict, error: bool) -> None:
        study = self.ctx.study
        if error:
            write(trial, reason=f"Ray trial {trial_id} errored outside training (a node that cannot reach the "
                                f"storage, or a dead actor or node) after {self.ctx.config.execution.max_failures} "
                                f"retries; its error.txt is under the run's ray/ folder")
            study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
        elif result.get(OUTCOME) == "complete":
            record_violation(trial, 0.0)
            study.tell(trial, objective_values(self.ctx.config, result), skip_if_finished=True)
        elif result.get(OUTCOME) in ("pruned", "fail"):  # the trainable wrote its reason and epochs
            state = TrialState.PRUNED if result[OUTCOME] == "pruned" else TrialState.FAIL
            study.tell(trial, state=state, skip_if_finished=True)
        else:  # Tune ended it without its result (a stop from outside; on Ctrl-C Tune tells nothing): like a
            # killed worker's trial it does not use up the budget; its epochs are its stored curve's
            write(trial, reason="Ray Tune ended the trial without its result", killed=True)
            study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)


def ray_params(trial: optuna.Trial, prepared: PreparedTrial) -> dict:
    """What a Ray trial is told: the trial's number and storage id, the genome's JSON and canonical key (computed
    here already) and every training value (plain JSON)."""
    train = dataclasses.asdict(prepared.train)
    for local_only in ("threads", "device"):  # set per Ray trial from the resources it gets
        train.pop(local_only)
    return {"number": trial.number, "storage_id": storage_trial_id(trial), "genome": prepared.genome.to_json(),
            "genome_key": prepared.genome.key(), "train": train}
