"""``nas run --backend ray``: the same study, storage, records and rung rule, with Ray scheduling the workers.

A Ray trial is one study worker (``nas.execution.ray.trainable``), as a local worker process is: it reserves the
study's next trial under the budget lock, samples it with its own sampler, trains it applying the Pareto-aware rung
rule at its rung epochs, writes its records and tells it, then takes the next, until the budget or the deadline is
used up. The driver (this process) only starts the experiment and shows progress: sampling happens on the nodes
that train, so the driver never becomes the one sampler every worker waits on. Every node must reach the storage
(PostgreSQL on a cluster), and weights land in the artifact folder of the node that trained them (a shared
filesystem keeps them together). The study plan (baseline, then search) is ``nas.study.run``'s, as on the local
backend.

``execution`` maps onto Ray: ``workers`` Ray trials, each with ``{cpu, gpu}`` (fractional GPUs share one device; a
worker given a GPU trains on CUDA) and ``max(1, int(cpu))`` torch threads; ``max_failures`` the
``FailureConfig`` (Tune restarts a worker whose actor or node died; the trial it held is failed as a dead worker's;
an error inside training is recorded as FAIL at once, as on the local backend). Ray's experiment state goes under
``runs/<study>/ray/``.
"""
from __future__ import annotations

import contextlib
import logging
import os
import time
from pathlib import Path
from typing import Callable, Iterator

import optuna

from nas.errors import ConfigError
from nas.study.config import StudyConfig

try:
    import ray
    from ray import tune
except ImportError:  # the CLI imports this module only for backend 'ray'
    raise ConfigError("execution.backend: 'ray' needs Ray Tune; install it with "
                      "pip install 'nas-explorer[ray]'") from None

from nas.execution.ray.trainable import FINISHED, WORKER, RaySetup, RayWorker
from nas.study.plan import RunPlan, artifact_dir, counted_trials
from nas.study.storage import fail_killed, open_storage, running_trials, sqlite_path


class RayBackend:
    """Runs a plan's trials as one Ray Tune experiment; ``address`` joins a cluster instead of starting Ray."""

    def __init__(self, address: str | None = None, warn: Callable[[str], None] = print):
        self.address, self.warn = address, warn
        self.results_dir: Path | None = None

    @contextlib.contextmanager
    def session(self, config: StudyConfig, url: str) -> Iterator[str]:
        """Joins (or starts) Ray for the whole study; yields the storage URL with an absolute SQLite path."""
        if config.training.device == "cuda" and config.execution.gpu == 0:
            raise ConfigError("training.device: 'cuda' needs execution.gpu > 0 on the Ray backend (a Ray worker "
                              "trains on CUDA exactly when Ray assigns it a GPU), got execution.gpu 0")
        url = absolute_url(url)
        self.results_dir = (config.run_dir() / "ray").resolve()
        started = connect(self.address)
        try:
            unreachable = unreachable_storage_warning(url)
            if unreachable:
                self.warn(unreachable)
            yield url
        finally:
            if started:
                ray.shutdown()

    def describe(self, config: StudyConfig) -> str:
        return f"{config.execution.workers} Ray worker(s) of {describe_resources(config)} each"

    def run(self, plan: RunPlan, deadline: float | None, poll: Callable[[], None]) -> None:
        """One search (the study or its baseline) as one Ray Tune experiment of ``execution.workers`` study workers
        under ``runs/<study>/ray/``."""
        config, execution = plan.config, plan.config.execution
        study = optuna.load_study(study_name=config.name, storage=open_storage(plan.url))
        weights = None if execution.simulate else str(artifact_dir(config, plan.url).resolve())
        setup = RaySetup(config=absolute_dataset(config).model_dump(mode="json"), url=plan.url, artifact_dir=weights,
                         threads=max(1, int(execution.cpu)), stored=len(study.get_trials(deepcopy=False)),
                         deadline=deadline)
        trainable = tune.with_resources(tune.with_parameters(RayWorker, setup=setup),
                                        {"cpu": execution.cpu, "gpu": execution.gpu})
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # Ray's legacy reporter honours verbose=0; ours shows progress
        # Ray's CSV, JSON and TensorBoard loggers would write each trial's result again (the storage holds it);
        # "0" turns them back on
        os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
        results_dir = self.results_dir or (config.run_dir() / "ray").resolve()
        tally = WorkerTally(poll, lambda tune_trial_id: fail_worker_trials(study, tune_trial_id))
        tuner = tune.Tuner(
            trainable, param_space={WORKER: tune.grid_search(list(range(execution.workers)))},
            tune_config=tune.TuneConfig(num_samples=1, max_concurrent_trials=execution.workers,
                                        trial_name_creator=worker_name, trial_dirname_creator=worker_name),
            run_config=tune.RunConfig(name=f"{config.name}-{time.strftime('%Y%m%d-%H%M%S')}",
                                      storage_path=str(results_dir),
                                      failure_config=tune.FailureConfig(max_failures=execution.max_failures),
                                      checkpoint_config=tune.CheckpointConfig(checkpoint_at_end=False),
                                      callbacks=[tally], verbose=0))
        with quiet_result_files():
            results = tuner.fit()
        if tally.finished + tally.errored < execution.workers:
            # Tune ends fit() quietly on Ctrl-C; the trials its workers held stay RUNNING until the next run sweeps
            raise KeyboardInterrupt
        lines = str(results.errors[0]).strip().splitlines() if results.errors else []
        died = (f"{tally.errored} Ray worker(s) errored outside training ({lines[0][:200] if lines else 'no message'})"
                f" after {execution.max_failures} restart(s); their error.txt is under {results_dir}")
        short = plan.budget - counted_trials(study)  # the trials dead workers held, if the others had already ended
        if short > 0 and (deadline is None or time.time() < deadline):
            raise RuntimeError(f"the run ended {short} trial(s) short of the budget: a Ray worker died holding them "
                               f"(marked FAIL, killed){'; ' + died if tally.errored else ''}; run again to finish it")
        if tally.errored:
            self.warn(f"warning: {died}; the other workers finished the budget")


@contextlib.contextmanager
def quiet_result_files() -> Iterator[None]:
    """With Tune's loggers off, the ResultGrid that ``fit()`` returns warns of every trial's missing result.json
    (a line per trial; the storage holds the results): silenced for the fit, and only then."""
    analysis = logging.getLogger("ray.tune.analysis.experiment_analysis")
    level = analysis.level
    if os.environ.get("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS") == "1":
        analysis.setLevel(logging.ERROR)
    try:
        yield
    finally:
        analysis.setLevel(level)


def fail_worker_trials(study: optuna.Study, tune_trial_id: str) -> list[int]:
    """Fails as killed the RUNNING trials held by the Ray worker of Tune trial ``tune_trial_id`` (its actor died),
    whatever its host."""
    return fail_killed(study, [t for t in running_trials(study) if t.user_attrs.get("ray_trial") == tune_trial_id])


def worker_name(trial: tune.experiment.Trial) -> str:
    """A Ray trial's name and folder: the study worker it runs, e.g. ``worker-0-1a2b3c4d``."""
    return f"worker-{trial.config[WORKER]}-{trial.trial_id}"


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
        # "local": a runtime of our own even when another process on this machine runs one (ray.init() would
        # join that, and refuse num_cpus)
        ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False, logging_level=logging.WARNING)
    return True


def unreachable_storage_warning(url: str) -> str | None:
    """A warning when a SQLite storage (a file on this machine) meets a cluster with nodes on other machines."""
    if sqlite_path(url) is None:
        return None
    here = ray.util.get_node_ip_address()
    others = {node["NodeManagerAddress"] for node in ray.nodes() if node["Alive"]} - {here}
    if not others:
        return None
    return (f"warning: storage {url} is a file on this machine; Ray nodes on {', '.join(sorted(others))} cannot "
            "reach it unless it is on a shared filesystem (use a postgresql:// storage on a cluster)")


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


class WorkerTally(tune.Callback):
    """The driver's duties during the experiment: ``poll`` (the progress bar) at most once a second; counting the
    workers that ended because the budget or the deadline was used up, and those Tune gave up on (any fewer than
    all at the end: Tune was interrupted); and when a worker's actor or node died (Tune restarts it, up to
    ``execution.max_failures``, before the new actor starts), failing the trial it held at once, on any host, so a
    live worker can take its place in the budget."""

    def __init__(self, poll: Callable[[], None], sweep: Callable[[str], object], every_s: float = 1.0):
        self.poll, self.sweep, self.every_s, self.last = poll, sweep, every_s, 0.0
        self.finished = self.errored = 0  # workers that used up the budget (or deadline), workers Tune gave up on

    def __getstate__(self) -> dict:
        """``tune.Tuner`` pickles its callbacks into ``tuner.pkl`` for ``Tuner.restore``; this backend never restores
        from it (a run resumes from the study's storage), so the live handles (console, study) stay out."""
        return {**self.__dict__, "poll": None, "sweep": None}

    def on_step_end(self, iteration: int, trials: list, **info) -> None:
        if time.monotonic() - self.last >= self.every_s:
            self.last = time.monotonic()
            self.poll()

    def on_trial_result(self, iteration: int, trials: list, trial, result: dict, **info) -> None:
        self.finished += bool(result.get(FINISHED))

    def on_trial_recover(self, iteration: int, trials: list, trial, **info) -> None:
        self.sweep(trial.trial_id)

    def on_trial_error(self, iteration: int, trials: list, trial, **info) -> None:
        self.errored += 1
        self.sweep(trial.trial_id)
