"""Hypervolume reached at equal wall-clock budget: the default (multi-objective TPE + Pareto-aware ASHA) against
NSGA-II + ASHA, random + ASHA, random and NSGA-II without pruning, so the gain of the sampler and of the scheduler
can be told apart.

Runs the quickstart study (dense baseline off) once per (method, seed), each in its own SQLite storage, one after
another (methods interleaved per seed) so they get the same machine. Every run stops at the same wall-clock
instant: only trials finished by then count (running ones are cut). NSGA-II gets the population a user of the
study would get for its real trial budget. ``--keep DIR`` keeps each run's storage (``rung_floor.py`` replays
the no-pruning runs).

    python benchmarks/search.py [--minutes 5] [--seeds 0 1 2 3 4] [--workers 2] [--keep DIR] [--write-results]
"""
from __future__ import annotations

import argparse
import datetime
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import optuna
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _results import write_section  # noqa: E402  (benchmarks/ is the script's folder)
from evaluators.datasets import load_dataset  # noqa: E402
from nas.execution.local import LocalBackend  # noqa: E402
from nas.study.config import parse_config  # noqa: E402
from nas.study.plan import RunPlan  # noqa: E402
from nas.study.run import QuietReporter, run_plan  # noqa: E402
from nas.search.samplers import default_population  # noqa: E402
from nas.study.summary import hypervolume, params_reference  # noqa: E402

METHODS = {
    "tpe+asha (default)": {"sampler": "tpe", "pruner": "asha"},
    "nsga2+asha": {"sampler": "nsga2", "pruner": "asha"},
    "random+asha": {"sampler": "random", "pruner": "asha"},
    "random, no pruning": {"sampler": "random", "pruner": "none"},
    "nsga2, no pruning": {"sampler": "nsga2", "pruner": "none"},
}


def study_config(base: dict, method: dict, seed: int, minutes: float, workers: int, url: str) -> dict:
    """The quickstart as one contender: its sampler and pruner, time as the only budget, NSGA-II's population
    the one the quickstart's own trial budget gives."""
    config = dict(base)
    pruner = dict(base["pruner"])
    if method["pruner"] == "none":
        pruner = {"name": "none", "min_epochs": pruner["max_epochs"], "max_epochs": pruner["max_epochs"]}
    sampler = {"name": method["sampler"], "seed": seed}
    if method["sampler"] == "nsga2":
        sampler["population_size"] = default_population(base["budget"]["trials"])
    config.update(name="bench", sampler=sampler, pruner=pruner, budget={"trials": 10_000, "minutes": minutes},
                  baseline={"trials": 0}, execution={"backend": "local", "workers": workers}, storage=url)
    return config


def finished_by(trials: list, instant: float) -> list:
    """Trials that ended (any state) by the wall-clock ``instant``: what a run stopped then would have."""
    return [t for t in trials if t.datetime_complete is not None and t.datetime_complete.timestamp() <= instant]


def run_one(base: dict, method: dict, seed: int, minutes: float, workers: int, keep: Path | None, name: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        folder = keep / f"{name.split(' ')[0].replace(',', '')}-{method['pruner']}-seed{seed}" if keep else Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "study.db").unlink(missing_ok=True)
        url = f"sqlite:///{folder}/study.db"
        config = parse_config(study_config(base, method, seed, minutes, workers, url))
        started = time.time()
        stop = started + 60 * minutes
        study = run_plan(RunPlan(config, url), LocalBackend(workers), stop, QuietReporter(), "bench")
        wall = time.time() - started
        trials = finished_by(study.get_trials(deepcopy=False), stop)
        trained = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE and "infeasible" not in
                   t.user_attrs and "duplicate_of" not in t.user_attrs]
        epochs = sum(len(t.user_attrs.get("curve", [])) for t in trials)
        return {"hv": hypervolume(trained, params_reference(study)), "trials": len(trials), "epochs": epochs,
                "complete": len(trained), "wall_s": wall,
                "best_acc": max((t.user_attrs["val_accuracy"] for t in trained), default=0.0)}


def summarize(results: dict[str, list[dict]]) -> list[dict]:
    rows = []
    for name, runs in results.items():
        hv = [r["hv"] for r in runs]
        rows.append({"method": name, "hv_mean": statistics.fmean(hv), "hv_sd": statistics.pstdev(hv),
                     "trials": statistics.fmean(r["trials"] for r in runs),
                     "complete": statistics.fmean(r["complete"] for r in runs),
                     "epochs": statistics.fmean(r["epochs"] for r in runs),
                     "best_acc": statistics.fmean(r["best_acc"] for r in runs)})
    return rows


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b > 0 else "n/a"


def table(rows: list[dict]) -> str:
    default = rows[0]
    lines = ["| method | hypervolume (mean ± sd) | vs default | trials | full-budget trials | epochs trained | "
             "best val acc on front |", "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['method']} | {r['hv_mean']:.3f} ± {r['hv_sd']:.3f} | "
                     f"{_ratio(r['hv_mean'], default['hv_mean'])} | {r['trials']:.1f} | {r['complete']:.1f} | "
                     f"{r['epochs']:.0f} | {100 * r['best_acc']:.1f}% |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=5, help="wall-clock budget per run")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--keep", type=Path, help="keep each run's storage in this folder")
    parser.add_argument("--write-results", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // args.workers))
    base = yaml.safe_load((ROOT / "studies" / "quickstart.yaml").read_text())
    load_dataset(base["dataset"])  # generated and cached once, before the clock of any contender starts
    load_before = os.getloadavg()[0]
    results: dict[str, list[dict]] = {name: [] for name in METHODS}
    for seed in args.seeds:  # interleave methods so drifting machine load hits them alike
        for name, method in METHODS.items():
            run = run_one(base, method, seed, args.minutes, args.workers, args.keep, name)
            results[name].append(run)
            print(f"seed {seed} {name:22s} hv {run['hv']:.3f} trials {run['trials']} complete {run['complete']} "
                  f"epochs {run['epochs']} ({run['wall_s']:.0f}s)", flush=True)
    rows = summarize(results)
    by_name = {r["method"]: r for r in rows}

    def paired(a: str, b: str) -> str:
        """Hypervolume of ``a`` over ``b``, seed by seed: mean ratio ± sd, and on how many seeds ``a`` was ahead."""
        ratios = [x["hv"] / y["hv"] for x, y in zip(results[a], results[b]) if y["hv"] > 0]
        wins = sum(x["hv"] > y["hv"] for x, y in zip(results[a], results[b]))
        spread = statistics.stdev(ratios) if len(ratios) > 1 else 0.0
        return f"{statistics.fmean(ratios):.2f}x ± {spread:.2f} (ahead on {wins} of {len(results[a])} seeds)" \
            if ratios else "n/a"

    per_trial = {n: r["epochs"] / max(r["trials"], 1) for n, r in by_name.items()}
    text = "\n".join([
        "Quickstart study (permuted MNIST-1D, max_params 20000, 18-epoch budget), dense baseline off, each run alone",
        f"with {args.workers} worker(s) for {args.minutes:g} minutes of wall clock, all stopped at the same instant "
        "(trials still running then are not counted); NSGA-II's population is "
        f"{default_population(base['budget']['trials'])}, what the quickstart's {base['budget']['trials']}-trial "
        "budget gives. Hypervolume of (val accuracy, -log10 params) from (0, -log10 20000) over the trials trained "
        "to full budget.", "", table(rows), "",
        "Paired by seed (same seed, same machine state as far as interleaving gets):",
        f"- the whole default vs random search: {paired('tpe+asha (default)', 'random, no pruning')}",
        f"- the sampler, under ASHA (TPE + ASHA vs NSGA-II + ASHA): {paired('tpe+asha (default)', 'nsga2+asha')}",
        f"- the sampler, under ASHA (NSGA-II + ASHA vs random + ASHA): {paired('nsga2+asha', 'random+asha')}",
        f"- the sampler, without pruning (NSGA-II vs random): {paired('nsga2, no pruning', 'random, no pruning')}",
        f"- the scheduler, with random sampling (random + ASHA vs random): "
        f"{paired('random+asha', 'random, no pruning')}",
        f"- the scheduler, with NSGA-II: {paired('nsga2+asha', 'nsga2, no pruning')}",
        f"- epochs per trial: {', '.join(f'{n} {v:.1f}' for n, v in per_trial.items())}",
        f"- date: {datetime.date.today()}, torch {torch.__version__}, {os.cpu_count()} CPUs, load average before: "
        f"{load_before:.1f}, after: {os.getloadavg()[0]:.1f}",
        f"- command: `python benchmarks/search.py --minutes {args.minutes:g} --seeds {' '.join(map(str, args.seeds))} "
        f"--workers {args.workers}{' --write-results' if args.write_results else ''}`",
    ])
    print(text)
    if args.write_results:
        write_section("## Search\n\n" + text.strip())


if __name__ == "__main__":
    main()
