"""``nas run --backend ray``: the same study, storage, records and rung rule, with Ray Tune scheduling the trials.

The driver (this process) owns the study: ``StudySearcher`` reserves, samples and tells. Each Ray trial trains
one genome (``nas.execution.ray.trainable``), applies the Pareto-aware rung rule at its rung epochs as a local
worker does (Tune's scheduler is FIFO) and writes its own records into the same storage, so every node must reach
it (PostgreSQL on a cluster) and the weights land in the artifact folder of the node that trained them (a shared
filesystem keeps them together). The study plan (baseline, then search) is ``nas.study.run``'s, as on the local
backend.

``execution`` maps onto Ray: ``workers`` is the concurrency limit, ``{cpu, gpu}`` each trial's resources
(fractional GPUs share one device; a trial given a GPU trains on CUDA) and its torch threads
(``max(1, int(cpu))``), ``max_failures`` the ``FailureConfig`` (it retries trials whose actor or node died;
an error inside training is recorded as FAIL at once, as on the local backend). Ray's own results go under
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
    from ray.tune.search import ConcurrencyLimiter
except ImportError:  # the CLI imports this module only for backend 'ray'
    raise ConfigError("execution.backend: 'ray' needs Ray Tune; install it with "
                      "pip install 'nas-explorer[ray]'") from None

from nas.execution.ray.searcher import DriverOnly, StudySearcher
from nas.execution.ray.trainable import RaySetup, RayTrial
from nas.execution.trial import trial_context
from nas.search.samplers import make_sampler
from nas.study.plan import RunPlan
from nas.study.storage import mask_url, open_storage, sqlite_path
from nas.study.trial_cache import state_synced


class RayBackend:
    """Runs a plan's trials as one Ray Tune experiment; ``address`` joins a cluster instead of starting Ray."""

    def __init__(self, address: str | None = None, warn: Callable[[str], None] = print):
        self.address, self.warn = address, warn
        self.results_dir: Path | None = None

    @contextlib.contextmanager
    def session(self, config: StudyConfig, url: str) -> Iterator[str]:
        """Joins (or starts) Ray for the whole study; yields the storage URL with an absolute SQLite path."""
        if config.training.device == "cuda" and config.execution.gpu == 0:
            raise ConfigError("training.device: 'cuda' needs execution.gpu > 0 on the Ray backend (a Ray trial "
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
        return f"{config.execution.workers} concurrent Ray trial(s) of {describe_resources(config)}"

    def run(self, plan: RunPlan, deadline: float | None, poll: Callable[[], None]) -> None:
        """One search (the study or its baseline) as one Ray Tune experiment under ``runs/<study>/ray/``."""
        execution = plan.config.execution
        driver_study = optuna.load_study(study_name=plan.config.name, storage=state_synced(open_storage(plan.url)))
        driver_study.sampler = make_sampler(plan.config, 0, stored=len(driver_study.get_trials(deepcopy=False)))
        ctx = trial_context(plan, driver_study)
        searcher = StudySearcher(ctx, plan, deadline)
        setup = RaySetup(config=absolute_dataset(plan.config).model_dump(mode="json"), url=plan.url,
                         artifact_dir=str(ctx.artifact_dir.resolve()) if ctx.artifact_dir else None,
                         threads=max(1, int(execution.cpu)))
        trainable = tune.with_resources(tune.with_parameters(RayTrial, setup=setup),
                                        {"cpu": execution.cpu, "gpu": execution.gpu})
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # Ray's legacy reporter honours verbose=0; ours shows progress
        # Ray's CSV, JSON and TensorBoard loggers write each trial's result again (the storage holds it): 10 of a
        # simulated trial's 61 ms at 1,000 trials when trials reported every epoch (benchmarks/RESULTS.md "Scale");
        # "0" turns them back on
        os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
        results_dir = self.results_dir or (plan.config.run_dir() / "ray").resolve()
        tuner = tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(search_alg=ConcurrencyLimiter(searcher, max_concurrent=execution.workers),
                                        num_samples=-1, reuse_actors=True,
                                        trial_name_creator=trial_name, trial_dirname_creator=trial_name),
            run_config=tune.RunConfig(name=f"{plan.config.name}-{time.strftime('%Y%m%d-%H%M%S')}",
                                      storage_path=str(results_dir),
                                      failure_config=tune.FailureConfig(max_failures=execution.max_failures),
                                      checkpoint_config=tune.CheckpointConfig(checkpoint_at_end=False),
                                      callbacks=[ProgressCallback([poll, searcher.beat_waiting])], verbose=0))
        with quiet_result_files():
            results = tuner.fit()
        if searcher.unrecorded:
            raise RuntimeError(f"{len(searcher.unrecorded)} trial(s) could not be recorded in {mask_url(plan.url)}: "
                               f"{'; '.join(searcher.unrecorded[:3])}; run again to mark them FAIL and finish the "
                               "budget")
        if not searcher.finished or searcher.live:
            if results.num_errors:  # Tune gave up on errored trials: a failure, not an interrupt
                first = str(results.errors[0]).strip().splitlines()
                raise RuntimeError(f"Ray Tune ended the run with {results.num_errors} errored trial(s) "
                                   f"({first[0][:200] if first else 'no message'}); their error.txt is under "
                                   f"{results_dir}; run again to mark unfinished trials FAIL and finish the budget")
            # Tune ends fit() quietly on Ctrl-C; its untold trials stay RUNNING until the next run sweeps them
            raise KeyboardInterrupt


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


class ProgressCallback(DriverOnly, tune.Callback):
    """The driver's periodic duties (the progress bar, heartbeats of trials waiting on a twin), at most once a
    second."""

    driver_only = ("duties",)

    def __init__(self, duties: list[Callable[[], None]], every_s: float = 1.0):
        self.duties, self.every_s, self.last = duties, every_s, 0.0

    def on_step_end(self, iteration: int, trials: list, **info) -> None:
        if time.monotonic() - self.last >= self.every_s:
            self.last = time.monotonic()
            for duty in self.duties:
                duty()
