"""Inside Ray: a Ray trial is one study worker (``nas.execution.worker``), as a local worker process is; each of
its ``step``s runs one study trial to its end (reserve, sample, train with the rung rule, record, tell) and reports
that trial to Tune."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import ray
from optuna.trial import TrialState
from ray import tune

from nas.execution.worker import StudyWorker
from nas.study.config import parse_config
from nas.study.plan import RunPlan
from nas.study.storage import open_storage

WORKER = "worker"      # a Ray trial's one config key: its worker index (the sampler's seed depends on it)
FINISHED = "finished"  # result key: True in a worker's last result, when the budget or the deadline is used up


@dataclass(frozen=True)
class RaySetup:
    """What every Ray worker of one plan shares, shipped once through Ray's object store."""

    config: dict              # the plan's StudyConfig as JSON, dataset path absolute
    url: str                  # the storage, SQLite path absolute
    artifact_dir: str | None  # absolute; on the node that trains the trial; None: no weights (simulated)
    threads: int              # torch threads per worker: max(1, int(execution.cpu))
    stored: int               # trials the study held when the run started (the samplers' seeds)
    deadline: float | None    # the run's time limit (time.time()), or None


class RayWorker(tune.Trainable):
    """A study worker on Ray. Each ``step`` runs the study's next trial and returns its number, its state (its
    values and curve are in the study's storage) and the Ray node; the step that finds the budget or the deadline
    used up returns ``finished`` and ends the Ray trial. Storage, study, sampler and data are opened once per actor.

    Every study trial it runs is stamped with the Ray node and this Ray trial's id, in the same write as its host
    and pid. The worker trains on CUDA when Ray gave it a GPU.
    """

    def setup(self, config: dict, setup: RaySetup) -> None:
        self.deadline = setup.deadline
        plan = RunPlan(parse_config(setup.config), setup.url)
        self.node = ray.get_runtime_context().get_node_id()
        stamp = {"node": self.node, "ray_trial": self.trial_id}
        self.worker = StudyWorker(plan, int(config[WORKER]), setup.threads, setup.stored,
                                  device="cuda" if ray.get_gpu_ids() else "cpu",
                                  artifact_dir=Path(setup.artifact_dir) if setup.artifact_dir else None,
                                  stamp=stamp, restart=self.deaths(plan))

    def deaths(self, plan: RunPlan) -> int:
        """How often this Ray trial's worker died before (Tune restarts it with the same config): the trials it
        held then, which the driver marked killed."""
        storage = open_storage(plan.url)
        study_id = storage.get_study_id_from_name(plan.config.name)
        return sum(t.user_attrs.get("ray_trial") == self.trial_id and bool(t.user_attrs.get("killed"))
                   for t in storage.get_all_trials(study_id, deepcopy=False, states=(TrialState.FAIL,)))

    def save_checkpoint(self, checkpoint_dir: str) -> None:
        """Nothing to save: every trial writes its records to the storage."""

    def load_checkpoint(self, checkpoint: dict | str | None) -> None:
        """Nothing to restore: a restarted worker reserves the study's next trial."""

    def step(self) -> dict:
        ran = self.worker.next_trial(self.deadline)
        if ran is None:
            return {FINISHED: True, "node": self.node, "done": True}
        number, state = ran
        return {"number": number, "state": state.name.lower(), "node": self.node, FINISHED: False}
