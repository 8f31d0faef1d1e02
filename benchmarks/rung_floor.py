"""Which rung rule to default to: the Pareto rank alone (extremes kept whatever their accuracy) or with the median
accuracy floor (``pruner.floor``), replayed on real learning curves.

The no-pruning runs of ``search.py --keep DIR`` trained every trial to full budget and recorded every epoch, so the
rung rule can be replayed on them offline: trials in the order they started, each ranked at the rung against
those before it; a kept trial pays the full budget and its final accuracy counts, a stopped one pays the rung's
epochs. Both rules keep the same number of trials at each decision; they differ in which.

    python benchmarks/rung_floor.py DIR [--write-results]
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import optuna
from optuna.trial import TrialState

from _results import write_section  # benchmarks/ is the script's folder
from nas.scheduling.pareto import rung_survivors
from nas.study.config import parse_config
from nas.study.summary import hypervolume, params_reference

optuna.logging.set_verbosity(optuna.logging.WARNING)
RULES = ("none", "median")


def replay(trials: list[optuna.trial.FrozenTrial], rung: int, full: int, factor: int, floor: str) -> dict:
    """The trials a rung at epoch ``rung`` would have kept, in start order, and the epochs that would cost."""
    points, kept, epochs = {}, [], 0
    for trial in trials:
        points[trial.number] = (trial.user_attrs["curve"][rung - 1]["val_accuracy"], -trial.user_attrs["params"])
        keep = trial.number in rung_survivors(points, factor, floor)
        kept += [trial] if keep else []
        epochs += full if keep else rung
    return {"kept": kept, "epochs": epochs}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="the --keep folder of benchmarks/search.py")
    parser.add_argument("--write-results", action="store_true")
    args = parser.parse_args(argv)
    runs = sorted(args.folder.glob("random-none-seed*/study.db"))
    if not runs:
        print(f"no random-none-seed*/study.db under {args.folder}: run benchmarks/search.py --keep it first",
              file=sys.stderr)
        return 2
    rows = {rule: [] for rule in RULES}
    for db in runs:
        study = optuna.load_study(study_name="bench", storage=f"sqlite:///{db}")
        config = parse_config(study.user_attrs["config"])
        full = config.max_epochs
        trials = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE
                  and "infeasible" not in t.user_attrs and len(t.user_attrs.get("curve", [])) == full]
        trials.sort(key=lambda t: t.datetime_start)
        for rule in RULES:
            result = replay(trials, 6, full, 3, rule)
            hv = hypervolume(result["kept"], params_reference(study))
            rows[rule].append({"hv": hv, "epochs": result["epochs"], "kept": len(result["kept"]),
                               "trials": len(trials), "run": db.parent.name})
            print(f"{db.parent.name} floor={rule}: hv {hv:.3f}, {len(result['kept'])}/{len(trials)} kept, "
                  f"{result['epochs']} epochs", flush=True)
    ratios = [m["hv"] / n["hv"] for m, n in zip(rows["median"], rows["none"]) if n["hv"] > 0]
    wins = sum(m["hv"] > n["hv"] for m, n in zip(rows["median"], rows["none"]))
    lines = ["| rung rule | hypervolume (mean ± sd) | trials kept | epochs |", "|---|---:|---:|---:|"]
    for rule in RULES:
        hv = [r["hv"] for r in rows[rule]]
        lines.append(f"| {'Pareto rank' if rule == 'none' else 'Pareto rank, median floor'} | "
                     f"{statistics.fmean(hv):.3f} ± {statistics.pstdev(hv):.3f} | "
                     f"{statistics.fmean(r['kept'] for r in rows[rule]):.1f} | "
                     f"{statistics.fmean(r['epochs'] for r in rows[rule]):.0f} |")
    spread = statistics.stdev(ratios) if len(ratios) > 1 else 0.0
    text = "\n".join([
        "## Rung floor", "",
        f"The quickstart's rung (epoch 6 of 18, reduction factor 3) replayed on the {len(runs)} random, no-pruning "
        "runs of the Search section (every trial trained to 18 epochs, curves recorded): trials in start order, "
        "each ranked at the rung against those before it.", "", *lines, "",
        f"- median floor / Pareto rank alone, paired by run: {statistics.fmean(ratios):.2f}x ± {spread:.2f} "
        f"(ahead on {wins} of {len(ratios)} runs)" if ratios else "- no run with a non-zero hypervolume",
        f"- runs: {', '.join(r['run'] for r in rows['none'])}; {statistics.fmean(r['trials'] for r in rows['none']):.0f} "
        "trials each on average",
        f"- command: `python benchmarks/rung_floor.py {args.folder}{' --write-results' if args.write_results else ''}`",
    ])
    print(text)
    if args.write_results:
        write_section(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
