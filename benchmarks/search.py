"""Hypervolume reached at equal wall-clock budget: NSGA-II + Pareto-aware ASHA vs random and NSGA-II without pruning.

Runs the quickstart study (dense baseline off) once per (method, seed), each in its own SQLite storage, one after
another so they get the same machine, and compares the final hypervolume of (val accuracy, -log10 params) and the
epochs trained.

    python benchmarks/search.py [--minutes 1.5] [--seeds 0 1 2] [--workers 1] [--write-results]
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
from nas.execution.local import LocalBackend  # noqa: E402
from nas.study.config import parse_config  # noqa: E402
from nas.study.plan import RunPlan  # noqa: E402
from nas.study.run import QuietReporter, run_plan  # noqa: E402
from nas.study.summary import hypervolume, pareto_trials, params_reference  # noqa: E402

METHODS = {
    "nsga2+asha (default)": {"sampler": "nsga2", "pruner": "asha"},
    "random, no pruning": {"sampler": "random", "pruner": "none"},
    "nsga2, no pruning": {"sampler": "nsga2", "pruner": "none"},
}


def study_config(base: dict, method: dict, seed: int, minutes: float, workers: int, url: str) -> dict:
    config = dict(base)
    pruner = dict(base["pruner"])
    if method["pruner"] == "none":
        pruner = {"name": "none", "min_epochs": pruner["max_epochs"], "max_epochs": pruner["max_epochs"]}
    config.update(name="bench", sampler={"name": method["sampler"], "seed": seed}, pruner=pruner,
                  budget={"trials": 10_000, "minutes": minutes}, baseline={"trials": 0},
                  execution={"backend": "local", "workers": workers}, storage=url)
    return config


def run_one(base: dict, method: dict, seed: int, minutes: float, workers: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/study.db"
        config = parse_config(study_config(base, method, seed, minutes, workers, url))
        started = time.perf_counter()
        study = run_plan(RunPlan(config, url), LocalBackend(workers), time.time() + 60 * minutes, QuietReporter(),
                         "bench")
        wall = time.perf_counter() - started
        trials = study.get_trials(deepcopy=False)
        epochs = sum(len(t.user_attrs.get("curve", [])) for t in trials)
        front = pareto_trials(study)
        return {"hv": hypervolume(front, params_reference(study)), "trials": len(trials), "epochs": epochs,
                "complete": sum(t.state == optuna.trial.TrialState.COMPLETE for t in trials),
                "best_acc": max((t.user_attrs["val_accuracy"] for t in front), default=0.0), "wall_s": wall}


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


def table(rows: list[dict]) -> str:
    default = rows[0]
    lines = ["| method | hypervolume (mean ± sd) | vs default | trials | full-budget trials | epochs trained | "
             "best val acc on front |", "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['method']} | {r['hv_mean']:.3f} ± {r['hv_sd']:.3f} | "
                     f"{r['hv_mean'] / default['hv_mean']:.2f}x | {r['trials']:.1f} | {r['complete']:.1f} | "
                     f"{r['epochs']:.0f} | {100 * r['best_acc']:.1f}% |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=1.5, help="wall-clock budget per run")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--write-results", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // args.workers))
    base = yaml.safe_load((ROOT / "studies" / "quickstart.yaml").read_text())
    results: dict[str, list[dict]] = {name: [] for name in METHODS}
    for seed in args.seeds:  # interleave methods so drifting machine load hits them alike
        for name, method in METHODS.items():
            run = run_one(base, method, seed, args.minutes, args.workers)
            results[name].append(run)
            print(f"seed {seed} {name:22s} hv {run['hv']:.3f} trials {run['trials']} complete {run['complete']} "
                  f"epochs {run['epochs']} ({run['wall_s']:.0f}s)", flush=True)
    rows = summarize(results)
    default, random_row = rows[0], rows[1]
    no_prune = rows[2]
    saved = 1 - default["epochs"] / default["trials"] / (no_prune["epochs"] / max(no_prune["trials"], 1))
    text = "\n".join([
        "Quickstart study (permuted MNIST-1D, max_params 20000, 18-epoch budget), dense baseline off, each run alone",
        f"with {args.workers} worker(s) for {args.minutes:g} minutes of wall clock; hypervolume of (val accuracy, "
        "-log10 params) from (0, -log10 20000).", "", table(rows), "",
        f"- Default vs random search: {default['hv_mean'] / random_row['hv_mean']:.2f}x the hypervolume "
        f"({'beats' if default['hv_mean'] > random_row['hv_mean'] else 'does NOT beat'} random search).",
        f"- Pareto-aware ASHA trained {100 * saved:.0f}% fewer epochs per trial than NSGA-II without pruning, "
        f"ran {default['trials'] / max(no_prune['trials'], 1):.1f}x as many trials in the same time, and reached "
        f"{default['hv_mean'] / no_prune['hv_mean']:.2f}x its hypervolume.",
        f"- date: {datetime.date.today()}, torch {torch.__version__}, load average before: {os.getloadavg()[0]:.1f}",
        f"- command: `python benchmarks/search.py --minutes {args.minutes:g} --seeds {' '.join(map(str, args.seeds))} "
        f"--workers {args.workers}{' --write-results' if args.write_results else ''}`",
    ])
    print(text)
    if args.write_results:
        write_section("## Search\n\n" + text.strip())


if __name__ == "__main__":
    main()
