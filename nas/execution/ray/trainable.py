"""Inside a Ray worker: one Ray trial trains the genome the driver sampled, applies the rung rule and writes its own
trial records; Tune hears from it once, at its end."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import optuna
import ray
from optuna.exceptions import UpdateFinishedTrialError
from ray import tune

from evaluators.datasets import Splits, load_dataset
from evaluators.training import TrainConfig
from nas.execution.heartbeat import heartbeat
from nas.execution.ray.searcher import OUTCOME
from nas.execution.trial import (EpochRecorder, PreparedTrial, fit_function, record_failure, record_result,
                                 upload_weights)
from nas.study.config import parse_config
from nas.study.records import write
from nas.study.storage import StoredTrial, open_storage
from search_space import Genome


@dataclass(frozen=True)
class RaySetup:
    """What every Ray trial of one plan shares, shipped once through Ray's object store."""

    config: dict        # the plan's StudyConfig as JSON, dataset path absolute
    url: str            # the storage, SQLite path absolute
    artifact_dir: str | None  # absolute; on the node that trains the trial; None: no weights (simulated)
    threads: int        # torch threads per trial: max(1, int(execution.cpu))


class RayTrial(tune.Trainable):
    """A Ray trial: one ``step`` trains one study trial to its end, applying the rung rule at its rung epochs and
    writing its records to the storage as a local worker does, and returns its one result to Ray Tune.

    A class rather than a function trainable: a function's report waits on a handshake with the driver and its
    return sends a second result, two round trips through Tune's one loop per trial where this takes one.
    Deciding rungs here rather than in a Tune scheduler keeps that loop out of every epoch. The result carries
    ``outcome``: 'complete' with the metrics, 'pruned' (the rung rule stopped it; its reason is written) or 'fail'.
    Storage, study (its ledger reads only what changed since the last rung) and data are opened once per actor and
    kept across the trials it is reused for.
    """

    def setup(self, config: dict, setup: RaySetup) -> None:
        self.shared, self.study_config = setup, parse_config(setup.config)
        self.storage = open_storage(setup.url)
        self.study = optuna.load_study(study_name=self.study_config.name, storage=self.storage)
        self.data: Splits | None = None

    def reset_config(self, new_config: dict) -> bool:
        return True  # ``step`` reads the new trial from ``self.config``, which Tune has set

    def save_checkpoint(self, checkpoint_dir: str) -> None:
        """Nothing to save: a trial runs in one step and writes everything to the storage."""

    def load_checkpoint(self, checkpoint: dict | str | None) -> None:
        """Nothing to restore: a retried trial starts again from its first epoch."""

    def step(self) -> dict:
        return {**self.fit_trial(self.config), "done": True}

    def fit_trial(self, params: dict) -> dict:
        """Trains the study trial ``params`` describes (``searcher.ray_params``); returns its result for Tune."""
        config, setup = self.study_config, self.shared
        trial = StoredTrial(self.storage, int(params["storage_id"]), int(params["number"]))
        write(trial, node=ray.get_runtime_context().get_node_id(), ray_trial=self.trial_id)
        outcome, metrics, epochs = "fail", None, 0
        try:
            genome = Genome.from_json(params["genome"]).with_known_key(params["genome_key"])
            device = "cuda" if ray.get_gpu_ids() else "cpu"
            prepared = PreparedTrial(genome, TrainConfig(**params["train"], threads=setup.threads, device=device))
            self.data = self.data or load_dataset(config.dataset)
            on_epoch = EpochRecorder(self.study, config, trial, genome)
            with heartbeat(trial, config.execution.heartbeat_s):
                result = fit_function(config)(genome, self.data, prepared.train, callback=on_epoch,
                                              evaluate_test=True)
            epochs = result.epochs
            metrics = record_result(trial, prepared, result, None if setup.artifact_dir is None else (
                lambda model: upload_weights(Path(setup.artifact_dir), trial.number, trial.frozen(), model,
                                             self.storage)), on_epoch)
            outcome = "pruned" if result.stopped == "callback" else "fail" if metrics is None else "complete"
        except UpdateFinishedTrialError:
            pass  # a sweep ended it while this worker lived: nothing more to write, the driver tells nothing new
        except Exception as exc:  # a trial's crash is recorded, the study goes on
            record_failure(trial, exc)
        return {"number": trial.number, "epoch": epochs, OUTCOME: outcome, **(metrics or {})}
