"""Where the workers' CPU goes: a CPU-time profile of every worker process of a simulated study, summed.

Usage: ``python benchmarks/worker_profile.py [--workers 32] [--base 200] [--add 300] [--top 30]``

The study of ``benchmarks/scale.py`` (simulated trials, NSGA-II, rungs at 2 and 6 of 18 epochs, SQLite in a
temporary folder) is first filled to ``--base`` trials by one worker (not profiled), then ``--workers`` processes
add ``--add`` trials, each under ``cProfile`` with CPU time (``time.process_time``), so the shares stay readable
when the machine is busy. Prints the functions with the most cumulative CPU over all workers. RESULTS.md "Scale"
quotes its shares (the ledger's reads, Optuna's ``_get_trials``).
"""
from __future__ import annotations

import argparse
import cProfile
import multiprocessing
import pstats
import sys
import tempfile
import time
from pathlib import Path

import optuna

from nas.execution.local import worker_loop
from nas.study.config import parse_config
from nas.study.plan import RunPlan
from nas.study.storage import open_storage
from scale import STUDY, grow


def profiled_worker(config_data: dict, url: str, worker: int, stored: int, out: str) -> None:
    profile = cProfile.Profile(time.process_time)
    profile.enable()
    worker_loop(RunPlan(parse_config(config_data), url), worker, 1, None, stored)
    profile.disable()
    profile.dump_stats(f"{out}/worker{worker}.prof")


def profiled_workers(folder: Path, url: str, workers: int, size: int) -> None:
    """Grows study ``scale`` to ``size`` trials with ``workers`` profiled processes."""
    config = parse_config({**STUDY, "name": "scale", "storage": url, "budget": {"trials": size},
                           "execution": {**STUDY["execution"], "workers": workers}})
    stored = len(optuna.load_study(study_name="scale", storage=open_storage(url)).get_trials(deepcopy=False))
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=profiled_worker,
                                 args=(config.model_dump(mode="json"), url, i, stored, str(folder)))
                 for i in range(workers)]
    for process in processes:
        process.start()
    for process in processes:
        process.join()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=32)
    parser.add_argument("--base", type=int, default=200, help="trials stored before profiling (one worker)")
    parser.add_argument("--add", type=int, default=300, help="trials the profiled workers add")
    parser.add_argument("--top", type=int, default=30)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        url = f"sqlite:///{folder}/study.db"
        grow(folder, url, "scale", 1, args.base)  # `nas run`, unprofiled
        started = time.perf_counter()
        profiled_workers(folder, url, args.workers, args.base + args.add)
        print(f"{args.workers} workers added {args.add} trials in {time.perf_counter() - started:.0f} s (wall, "
              "profiled)")
        stats = pstats.Stats(*map(str, folder.glob("worker*.prof")), stream=sys.stdout)
        stats.sort_stats("cumulative").print_stats(args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
