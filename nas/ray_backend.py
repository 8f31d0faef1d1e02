"""``nas run --backend ray``: the same study, storage, records and rung rule, with Ray Tune scheduling the trials.

The driver (this process) owns the study: ``StudySearcher`` reserves, samples and tells, ``RungScheduler``
applies the Pareto-aware rung rule. Each Ray trial trains one genome and writes its own records (``node``,
``curve``, ``heartbeat``, ``rung_<E>``, final numbers, weights) into the same storage, so every node must reach
it (PostgreSQL on a cluster) and the weights land in the artifact folder of the node that trained them (a
shared filesystem keeps them together). The dense baseline runs the same way, first, when the storage lacks it.

``execution`` maps onto Ray: ``workers`` is the concurrency limit, ``{cpu, gpu}`` each trial's resources
(fractional GPUs share one device; a trial given a GPU trains on CUDA) and its torch threads
(``max(1, int(cpu))``), ``max_failures`` the ``FailureConfig`` (it retries trials whose actor or node died;
an error inside training is recorded as FAIL at once, as on the local backend). Ray's own results go under
``runs/<study>/ray/``.
"""
from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import optuna
from rich.console import Console

from evaluators.datasets import Splits, load_dataset
from evaluators.training import EpochReport, TrainConfig, train
from nas.config import StudyConfig, parse_config
from nas.errors import ConfigError

try:
    import ray
    from ray import tune
    from ray.tune.search import ConcurrencyLimiter
except ImportError:  # the CLI imports this module only for backend 'ray'
    raise ConfigError("execution.backend: 'ray' needs Ray Tune; install it with "
                      "pip install 'nas-explorer[ray]'") from None

from nas.ray_scheduler import RungScheduler
from nas.ray_searcher import OUTCOME, DriverOnly, StudySearcher
from nas.runner import RunPlan, create_study, make_sampler, plan_context
from nas.storage import mask_url, open_storage, sqlite_path
from nas.study import ProgressReporter, baseline_config, open_plan, preflight
from nas.trial import PreparedTrial, record_epoch, record_failure, record_result, upload_weights
from search_space import Genome


def run_study_on_ray(config: StudyConfig, url: str, address: str | None = None,
                     console: Console | None = None) -> tuple[optuna.Study, optuna.Study | None]:
    """Runs the dense baseline if the storage lacks it, then the search, on Ray; returns (study, baseline)."""
    console = console or Console()
    if config.training.device == "cuda" and config.execution.gpu == 0:
        raise ConfigError("training.device: 'cuda' needs execution.gpu > 0 on the Ray backend (a Ray trial "
                          "trains on CUDA exactly when Ray assigns it a GPU), got execution.gpu 0")
    preflight(config)
    url = absolute_url(url)
    started = connect(address)
    try:
        warn_if_unreachable(url, console)
        workers = config.execution.workers
        console.print(f"study {config.name!r} in {mask_url(url)}: {config.budget.trials} trials, {workers} "
                      f"concurrent Ray trial(s) of {describe_resources(config)}")
        baseline = None
        if config.baseline.trials > 0:
            plan = RunPlan(baseline_config(config), url, "dense")
            baseline = run_plan_on_ray(plan, config, None, console, f"dense baseline ({plan.config.name})")
        deadline = time.time() + 60 * config.budget.minutes if config.budget.minutes else None
        study = create_study(config, url)
        if baseline is not None:
            study.set_user_attr("baseline_study", baseline.study_name)
        study = run_plan_on_ray(RunPlan(config, url, "search"), config, deadline, console, f"search ({config.name})")
        return study, baseline
    finally:
        if started:
            ray.shutdown()


def run_plan_on_ray(plan: RunPlan, study_config: StudyConfig, deadline: float | None, console: Console,
                    label: str) -> optuna.Study:
    """One search (the study or its baseline) as one Ray Tune experiment under ``runs/<study>/ray/``."""
    study, budget_left = open_plan(plan, console, label)
    if not budget_left:
        return study
    execution = study_config.execution
    driver_study = optuna.load_study(study_name=plan.config.name, storage=open_storage(plan.url),
                                     sampler=make_sampler(plan.config, 0))
    ctx = plan_context(plan, driver_study)
    searcher = StudySearcher(ctx, plan, deadline)
    scheduler = RungScheduler(driver_study, plan.config, on_stop=searcher.note_rung_stop)
    setup = RaySetup(config=absolute_dataset(plan.config).model_dump(mode="json"), url=plan.url,
                     artifact_dir=str(ctx.artifact_dir.resolve()), threads=max(1, int(execution.cpu)))
    trainable = tune.with_resources(tune.with_parameters(train_ray_trial, setup=setup),
                                    {"cpu": execution.cpu, "gpu": execution.gpu})
    reporter = ProgressReporter(study, plan.budget, label, console)
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # Ray's legacy reporter honours verbose=0; ours shows progress
    tuner = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(search_alg=ConcurrencyLimiter(searcher, max_concurrent=execution.workers),
                                    scheduler=scheduler, num_samples=-1, reuse_actors=True,
                                    trial_name_creator=trial_name, trial_dirname_creator=trial_name),
        run_config=tune.RunConfig(name=f"{plan.config.name}-{time.strftime('%Y%m%d-%H%M%S')}",
                                  storage_path=str((study_config.run_dir() / "ray").resolve()),
                                  failure_config=tune.FailureConfig(max_failures=execution.max_failures),
                                  callbacks=[ProgressCallback(reporter.poll)], verbose=0))
    try:
        tuner.fit()
    finally:
        reporter.close()
    if searcher.unrecorded:
        raise RuntimeError(f"{len(searcher.unrecorded)} trial(s) could not be recorded in {mask_url(plan.url)}: "
                           f"{'; '.join(searcher.unrecorded[:3])}; run again to mark them FAIL and finish the budget")
    if not searcher.finished or searcher.live:
        # Tune ends fit() quietly on Ctrl-C; its untold trials stay RUNNING until the next run sweeps them
        raise KeyboardInterrupt
    return study


def trial_name(trial: tune.experiment.Trial) -> str:
    """A Ray trial's name and folder: the study trial it evaluates, e.g. ``trial-7-1a2b3c4d``."""
    return f"trial-{trial.config['number']}-{trial.trial_id}"


def connect(address: str | None) -> bool:
    """Joins the cluster at ``address``, or starts a local Ray runtime with this machine's CPUs and no dashboard.

    Returns True when this call started Ray (the caller shuts it down); an already running Ray is used as is.
    """
    if ray.is_initialized():
        return False
    if address:
        try:
            ray.init(address=address, logging_level=logging.WARNING)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ConfigError(f"--ray-address: cannot join the Ray cluster at {address!r}: {first[:200]}") from None
    else:
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, logging_level=logging.WARNING)
    return True


def warn_if_unreachable(url: str, console: Console) -> None:
    """Warns when a SQLite storage (a file on this machine) meets a cluster with nodes on other machines."""
    if sqlite_path(url) is None:
        return
    here = ray.util.get_node_ip_address()
    others = {node["NodeManagerAddress"] for node in ray.nodes() if node["Alive"]} - {here}
    if others:
        console.print(f"[yellow]warning:[/yellow] storage {url} is a file on this machine; Ray nodes on "
                      f"{', '.join(sorted(others))} cannot reach it unless it is on a shared filesystem "
                      "(use a postgresql:// storage on a cluster)")


def describe_resources(config: StudyConfig) -> str:
    execution = config.execution
    return f"{execution.cpu:g} CPU" + (f" + {execution.gpu:g} GPU" if execution.gpu else "")


def absolute_url(url: str) -> str:
    """A SQLite URL with an absolute path (Ray workers do not run in the driver's folder); others unchanged."""
    path = sqlite_path(url)
    return f"sqlite:///{path.resolve()}" if path is not None else url


def absolute_dataset(config: StudyConfig) -> StudyConfig:
    """The config with a relative dataset ``path`` made absolute, for the same reason."""
    path = config.dataset.get("path")
    if not path or Path(path).is_absolute():
        return config
    return config.model_copy(update={"dataset": {**config.dataset, "path": str(Path(path).resolve())}})


class ProgressCallback(DriverOnly, tune.Callback):
    """Polls the study's progress (the same bar as the local backend's) at most once a second."""

    driver_only = ("poll",)

    def __init__(self, poll: Callable[[], None], every_s: float = 1.0):
        self.poll, self.every_s, self.last = poll, every_s, 0.0

    def on_step_end(self, iteration: int, trials: list, **info) -> None:
        if time.monotonic() - self.last >= self.every_s:
            self.last = time.monotonic()
            self.poll()


# -- inside a Ray worker ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class RaySetup:
    """What every Ray trial of one plan shares, shipped once through Ray's object store."""

    config: dict        # the plan's StudyConfig as JSON, dataset path absolute
    url: str            # the storage, SQLite path absolute
    artifact_dir: str   # absolute; on the node that trains the trial
    threads: int        # torch threads per trial: max(1, int(execution.cpu))


class StoredTrial:
    """A trial the driver reserved, opened by number in a Ray worker; its user attributes go to the storage."""

    def __init__(self, storage: optuna.storages.BaseStorage, study_name: str, number: int):
        self.storage, self.number = storage, number
        study_id = storage.get_study_id_from_name(study_name)
        self.trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, number)

    def set_user_attr(self, key: str, value) -> None:
        self.storage.set_trial_user_attr(self.trial_id, key, value)

    def frozen(self) -> optuna.trial.FrozenTrial:
        return self.storage.get_trial(self.trial_id)


_CACHE: dict[str, object] = {}  # per worker process, kept across the trials of a reused actor


def _cached(key: str, make: Callable[[], object]):
    if key not in _CACHE:
        _CACHE[key] = make()
    return _CACHE[key]


def train_ray_trial(params: dict, setup: RaySetup) -> None:
    """One Ray trial: trains the genome, writes its records to the storage, reports each epoch to Ray Tune.

    The last report carries ``outcome`` ('complete' with the metrics, or 'fail'); when the rung rule stops the
    trial, Ray ends it inside an epoch's report and the driver tells PRUNED.
    """
    config = parse_config(setup.config)
    storage = _cached(f"storage:{setup.url}", lambda: open_storage(setup.url))
    trial = StoredTrial(storage, config.name, int(params["number"]))
    trial.set_user_attr("node", ray.get_runtime_context().get_node_id())
    metrics, epochs = None, 0
    try:
        genome = Genome.from_json(params["genome"])
        device = "cuda" if ray.get_gpu_ids() else "cpu"
        prepared = PreparedTrial(genome, TrainConfig(**params["train"], threads=setup.threads, device=device))
        data: Splits = _cached(f"data:{json.dumps(config.dataset, sort_keys=True)}",
                               lambda: load_dataset(config.dataset))
        rungs, curve = set(config.pruner.rungs()), []

        def on_epoch(report: EpochReport) -> bool:
            record_epoch(trial, curve, report, rungs)
            tune.report({"number": trial.number, "params": genome.params, "flops": genome.flops,
                         **report.to_dict()})
            return False  # the RungScheduler decides; a stopped trial never returns from tune.report

        result = train(genome, data, prepared.train, callback=on_epoch, evaluate_test=True)
        epochs = result.epochs
        trial.set_user_attr("epochs", epochs)
        artifacts = Path(setup.artifact_dir)
        metrics = record_result(trial, prepared, result, lambda model: upload_weights(
            artifacts, trial.number, trial.frozen(), model, storage))
    except Exception as exc:  # a trial's crash is recorded, the study goes on
        record_failure(trial, exc)
    tune.report({"number": trial.number, "epoch": epochs, OUTCOME: "fail" if metrics is None else "complete",
                 **(metrics or {})})
