"""Inside a Ray worker: one Ray trial trains the genome the driver sampled, applies the rung rule and writes its own
trial records."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import optuna
import ray
from optuna.exceptions import UpdateFinishedTrialError
from ray import tune

from evaluators.datasets import Splits, load_dataset
from evaluators.training import TrainConfig
from nas.execution.heartbeat import heartbeat
from nas.execution.ray.searcher import OUTCOME
from nas.execution.trial import (PreparedTrial, epoch_callback, fit_function, record_failure, record_result,
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


_CACHE: dict[str, object] = {}  # per worker process, kept across the trials of a reused actor


def _cached(key: str, make: Callable[[], object]):
    if key not in _CACHE:
        _CACHE[key] = make()
    return _CACHE[key]


def train_ray_trial(params: dict, setup: RaySetup) -> None:
    """One Ray trial: trains the genome, applies the rung rule at its rung epochs and writes its records to the
    storage, as a local worker does; reports once to Ray Tune, at the end.

    That one report carries ``outcome``: 'complete' with the metrics, 'pruned' (the rung rule stopped it; its
    reason is written) or 'fail'. Deciding rungs here rather than in a Tune scheduler keeps the driver's one
    loop out of every epoch: 58 -> ?? ms of machinery per simulated trial at 10,000 trials
    (benchmarks/RESULTS.md "Scale").
    """
    config = parse_config(setup.config)
    storage = _cached(f"storage:{setup.url}", lambda: open_storage(setup.url))
    study = _cached(f"study:{setup.url}:{config.name}",  # its ledger reads only what changed since the last rung
                    lambda: optuna.load_study(study_name=config.name, storage=storage))
    trial = StoredTrial.by_number(storage, config.name, int(params["number"]))
    write(trial, node=ray.get_runtime_context().get_node_id())
    outcome, metrics, epochs = "fail", None, 0
    try:
        genome = Genome.from_json(params["genome"])
        device = "cuda" if ray.get_gpu_ids() else "cpu"
        prepared = PreparedTrial(genome, TrainConfig(**params["train"], threads=setup.threads, device=device))
        data: Splits = _cached(f"data:{json.dumps(config.dataset, sort_keys=True)}",
                               lambda: load_dataset(config.dataset))
        on_epoch = epoch_callback(study, config, trial, trial.number, genome)
        with heartbeat(trial, config.execution.heartbeat_s):
            result = fit_function(config)(genome, data, prepared.train, callback=on_epoch, evaluate_test=True)
        epochs = result.epochs
        metrics = record_result(trial, prepared, result, None if setup.artifact_dir is None else (
            lambda model: upload_weights(Path(setup.artifact_dir), trial.number, trial.frozen(), model, storage)))
        outcome = "pruned" if result.stopped == "callback" else "fail" if metrics is None else "complete"
    except UpdateFinishedTrialError:
        pass  # a sweep ended it while this worker lived: nothing more to write, the driver tells nothing new
    except Exception as exc:  # a trial's crash is recorded, the study goes on
        record_failure(trial, exc)
    tune.report({"number": trial.number, "epoch": epochs, OUTCOME: outcome, **(metrics or {})})
