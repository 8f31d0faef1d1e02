"""How many trials the dense baseline needs: its best validation accuracy against the number of trials it ran.

Runs the quickstart's dense baseline (``nas.study.plan.baseline_config``: TPE over depth, widths within the size
limit, dropout, lr, weight decay and epochs) for ``--trials`` trials per seed, each seed in its own SQLite storage,
and reports the best validation accuracy (and the test accuracy of that trial) after each number of trials.

    python benchmarks/baseline_plateau.py [--trials 40] [--seeds 0 1 2] [--workers 2] [--write-results]
"""
from __future__ import annotations

import argparse
import datetime
import os
import statistics
import sys
import tempfile
from pathlib import Path

import optuna
import torch
import yaml

from _results import write_section  # benchmarks/ is the script's folder
from evaluators.datasets import load_dataset
from nas.execution.local import LocalBackend
from nas.study.config import parse_config
from nas.study.plan import RunPlan, baseline_config
from nas.study.run import QuietReporter, run_plan
from nas.study.summary import trained

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINTS = (4, 8, 12, 16, 20, 24, 30, 40, 60)


def best_so_far(trials: list[optuna.trial.FrozenTrial]) -> list[tuple[float, float]]:
    """(best val accuracy, its test accuracy) after each trial, in trial order (untrained trials count as trials)."""
    best, out = (0.0, 0.0), []
    for trial in sorted(trials, key=lambda t: t.number):
        if trained(trial) and trial.user_attrs["val_accuracy"] > best[0]:
            best = (trial.user_attrs["val_accuracy"], trial.user_attrs.get("test_accuracy") or 0.0)
        out.append(best)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--write-results", action="store_true")
    args = parser.parse_args(argv)
    study = yaml.safe_load((ROOT / "studies" / "quickstart.yaml").read_text())
    load_dataset(study["dataset"])
    curves = []
    for seed in args.seeds:
        with tempfile.TemporaryDirectory() as tmp:
            url = f"sqlite:///{tmp}/study.db"
            config = parse_config({**study, "sampler": {"name": "nsga2", "seed": seed}, "storage": url,
                                   "baseline": {"trials": args.trials}, "execution": {"workers": args.workers}})
            plan = RunPlan(baseline_config(config), url)
            done = run_plan(plan, LocalBackend(args.workers), None, QuietReporter(), "baseline")
            curves.append(best_so_far(done.get_trials(deepcopy=False)))
            print(f"seed {seed}: best val {curves[-1][-1][0]:.3f} after {len(curves[-1])} trials", flush=True)
    marks = [n for n in CHECKPOINTS if n <= args.trials]
    rows = ["| trials | best val accuracy (mean ± sd) | test accuracy of that trial | below the final best |",
            "|---:|---:|---:|---:|"]
    final = [c[-1][0] for c in curves]
    for n in marks:
        val = [c[n - 1][0] for c in curves]
        test = [c[n - 1][1] for c in curves]
        gap = [f - v for f, v in zip(final, val)]
        rows.append(f"| {n} | {100 * statistics.fmean(val):.1f} ± {100 * statistics.pstdev(val):.1f} | "
                    f"{100 * statistics.fmean(test):.1f} | {100 * statistics.fmean(gap):.1f} points |")
    text = "\n".join([
        "## Dense baseline plateau", "",
        f"The quickstart's dense baseline (permuted MNIST-1D, max_params 20000), {args.trials} TPE trials per seed "
        f"(seeds {', '.join(map(str, args.seeds))}), {args.workers} workers; the first trial is the MNIST-1D "
        "paper's MLP. Best validation accuracy after n trials, and how far that is below the best after all "
        "of them.", "", *rows, "",
        f"- date: {datetime.date.today()}, torch {torch.__version__}, {os.cpu_count()} CPUs, load average "
        f"{os.getloadavg()[0]:.1f}",
        f"- command: `python benchmarks/baseline_plateau.py --trials {args.trials} --seeds "
        f"{' '.join(map(str, args.seeds))} --workers {args.workers}{' --write-results' if args.write_results else ''}`",
    ])
    print(text)
    if args.write_results:
        write_section(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
