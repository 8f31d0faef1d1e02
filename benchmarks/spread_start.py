"""What the spread start costs and what it changes, read from kept peer runs (``peers.py --keep``).

Usage: ``python benchmarks/spread_start.py RUNS.json ... [--problem permuted-fashion-small] [--contenders ours ...]``

1. The start's own cost: :func:`nas.search.start.spread_start` timed on the problem (the 400 draws every worker
   makes before its first trial), and the chosen genomes' parameters and multiply-adds beside random draws'.
2. Per kept run: the training time of its first 10 sampled trials (after the zoo warm starts; each trial's last
   ``elapsed_s``) and its share of all training time, their parameter range, trials trained, and full-budget
   trials under 1,000 parameters.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from itertools import islice
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from peers import problem_config  # noqa: E402

FIRST = 10  # sampled trials that make the start (TPE's startup trials at the benchmark's budget)


def start_cost(problem: str, seeds: list[int]) -> list[str]:
    """The spread start's time and its genomes' sizes and costs against random draws', per sampler seed."""
    import optuna

    from nas.execution.trial import trial_context
    from nas.search.genomes import sample_genome
    from nas.search.start import random_genomes, spread_start
    from nas.study.config import parse_config
    from nas.study.plan import RunPlan

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    lines = []
    for seed in seeds:
        config = parse_config({**problem_config(problem), "name": "start", "storage": "sqlite:///unused.db",
                               "sampler": {"name": "tpe", "seed": seed}, "budget": {"trials": 100_000}})
        ctx = trial_context(RunPlan(config, "sqlite:///unused.db"), None)
        shape, classes = ctx.data.input_shape, ctx.data.num_classes
        began = time.perf_counter()
        sets = spread_start(config, ctx.space, shape, classes, ctx.orders)
        took = time.perf_counter() - began
        chosen = [sample_genome(optuna.trial.FixedTrial(p), ctx.space, shape, classes, ctx.orders) for p in sets]
        # what the sampler's own start would have drawn: the first feasible draws of another seed
        draws = random_genomes(config, ctx.space, shape, classes, ctx.orders, 1000 + seed)
        drawn = list(islice((genome for genome, _ in draws if genome is not None), len(chosen)))
        lines.append(f"seed {seed}: spread_start {took:.2f} s for {len(sets)} sets; chosen params "
                     f"{min(g.params for g in chosen):,}-{max(g.params for g in chosen):,}, median multiply-adds "
                     f"{statistics.median(g.flops for g in chosen):,.0f} (total {sum(g.flops for g in chosen):,}); "
                     f"{len(drawn)} random draws: params {min(g.params for g in drawn):,}-"
                     f"{max(g.params for g in drawn):,}, median multiply-adds "
                     f"{statistics.median(g.flops for g in drawn):,.0f} (total {sum(g.flops for g in drawn):,})")
    return lines


def run_lines(runs: dict[str, list[dict]], contenders: list[str], warm_starts: int, full: int) -> list[str]:
    """Per run: the first sampled trials' training time and share, sizes, trials trained, small full-budget ones."""
    lines = []
    for name in contenders:
        for run in runs.get(name, []):
            records = sorted((r for r in run["records"] if not r.get("copy")), key=lambda r: r["start"])
            fit = {id(r): max((e[2] for e in r["epochs"]), default=0.0) for r in records}
            first = records[warm_starts:warm_starts + FIRST]  # trials are reserved in number order
            total = sum(fit.values())
            spent = sum(fit[id(r)] for r in first)
            small = sum(1 for r in records if len(r["epochs"]) >= full and r["params"] is not None
                        and r["params"] < 1000)
            lines.append(f"{name} seed {run['seed']}: first {FIRST} sampled trials trained {spent:.0f} s "
                         f"({spent / total:.0%} of {total:.0f} s), params {min(r['params'] or 0 for r in first):,}-"
                         f"{max(r['params'] or 0 for r in first):,}; {sum(1 for r in records if r['epochs'])} "
                         f"trials trained, {small} full-budget under 1,000 params")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=Path, nargs="*", help="kept peer runs (peers.py --keep)")
    parser.add_argument("--problem", choices=["quickstart", "permuted-fashion-small"],
                        default="permuted-fashion-small")
    parser.add_argument("--contenders", nargs="+", default=["ours", "ours-random-start"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    args = parser.parse_args(argv)
    print("\n".join(start_cost(args.problem, args.seeds)))
    runs: dict[str, list[dict]] = {}
    for path in args.runs:
        for name, kept in json.loads(path.read_text()).items():
            runs.setdefault(name, []).extend(kept)
    config = problem_config(args.problem)
    print("\n".join(run_lines(runs, args.contenders, len(config.get("warm_start", [])),
                               config["pruner"]["max_epochs"])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
