"""The local backend: N worker processes share the study's storage and one trial budget."""
from __future__ import annotations

import multiprocessing
import os
from typing import Callable

import optuna
from optuna.trial import TrialState

from nas.execution.worker import StudyWorker
from nas.study.config import StudyConfig, parse_config
from nas.study.plan import RunPlan
from nas.study.run import no_session
from nas.study.storage import fail_stale_trials, open_storage


class LocalBackend:
    """Runs ``workers`` processes on this machine (in this process for one), each with
    ``torch.set_num_threads(max(1, cores // workers))``."""

    session = staticmethod(no_session)

    def __init__(self, workers: int):
        self.workers = workers

    def describe(self, config: StudyConfig) -> str:
        return f"{self.workers} worker(s)"

    def run(self, plan: RunPlan, deadline: float | None, poll: Callable[[], None]) -> None:
        run_workers(plan, self.workers, deadline, poll)


def worker_loop(plan: RunPlan, worker: int, threads: int, deadline: float | None, stored: int,
                on_trial: Callable[[int, TrialState], None] | None = None) -> None:
    """Runs the study's trials until the budget or the deadline is reached; ``stored`` is how many trials the
    study held when the run started (the sampler's seed depends on it)."""
    study_worker = StudyWorker(plan, worker, threads, stored)
    while (ran := study_worker.next_trial(deadline)) is not None:
        if on_trial is not None:
            on_trial(*ran)


def _spawned_worker(config_data: dict, url: str, worker: int, threads: int, deadline: float | None,
                    stored: int) -> None:
    worker_loop(RunPlan(parse_config(config_data), url), worker, threads, deadline, stored)


def run_workers(plan: RunPlan, workers: int, deadline: float | None,
                poll: Callable[[], None] | None = None) -> None:
    """Runs ``workers`` processes (in-process for one) until the budget or deadline; ``poll`` runs each second."""
    threads = max(1, (os.cpu_count() or 1) // workers)
    study = optuna.load_study(study_name=plan.config.name, storage=open_storage(plan.url))
    stored = len(study.get_trials(deepcopy=False))  # counted once: every worker seeds from the same number
    if workers == 1:
        worker_loop(plan, 0, threads, deadline, stored, on_trial=(lambda *_: poll()) if poll else None)
        return
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=_spawned_worker, daemon=False,
                                 args=(plan.config.model_dump(mode="json"), plan.url, i, threads, deadline, stored))
                 for i in range(workers)]
    for process in processes:
        process.start()
    swept = 0
    try:
        while any(p.is_alive() for p in processes):
            if poll is not None:
                poll()
            for p in processes:
                p.join(timeout=1.0 / workers)
            crashed_now = sum(p.exitcode not in (0, None) for p in processes)
            if crashed_now > swept:  # a crashed worker's trial is released at once: a live one may wait for it
                fail_stale_trials(study, plan.config.execution.stale_limit_s, url=plan.url)
                swept = crashed_now
    finally:
        for p in processes:
            if p.is_alive():
                p.terminate()
                p.join()
    if poll is not None:
        poll()
    crashed = [p.exitcode for p in processes if p.exitcode not in (0, None)]
    if crashed:
        fail_stale_trials(study, plan.config.execution.stale_limit_s, url=plan.url)
        raise RuntimeError(f"{len(crashed)} worker process(es) exited with codes {crashed}; "
                           "their running trials were marked FAIL, run again to finish the budget")
