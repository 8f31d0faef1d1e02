"""What stopping slow trials (``pruner.max_slowdown``) would have saved in kept peer runs that ran without it.

Usage: ``python benchmarks/slow_trials.py RUNS.json [--problem permuted-fashion-small] [--minutes 15]
[--contenders ours-no-slow ...] [--limits 3 5 8] [--write-results]``

A replay, no training: each kept trial's first epoch is judged by the rule's own arithmetic
(``nas.scheduling.rungs.slowdown``) against the first epochs of the run's other trials that had ended by then; the
run's first trials (its zoo warm starts and a full spread start, which the rule leaves alone) are not judged. Kept
runs hold each epoch's ``elapsed_s`` since the trial started, so a first epoch here includes the model's build,
which the rule itself leaves out (milliseconds against the 0.5 s the rule needs over the median).
Per run and limit: how many trials the rule would have stopped, the training time after their first epoch (what it
would have saved) as a share of all training time, and the hypervolume of the honest front without them. What the
saved time would have bought is not replayed: ``peers.py`` runs the default against ``ours-no-slow`` for that.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from _results import write_section  # noqa: E402
from peers import honest_points, hv, problem_config  # noqa: E402

MINUTES = {"quickstart": 5.0, "permuted-fashion-small": 15.0}  # the wall clock of the kept runs in RESULTS.md


def replay(run: dict, limit: float, skip: int) -> list[dict]:
    """The trained records of ``run`` the rule would have stopped after epoch 1 (not the first ``skip`` started)."""
    from nas.scheduling.rungs import slowdown

    trained = sorted((r for r in run["records"] if r["epochs"] and not r["infeasible"] and not r.get("copy")),
                     key=lambda r: r["start"])
    stopped = []
    for r in trained[skip:]:
        ended = r["epochs"][0][0]
        others = [o["epochs"][0][2] for o in trained if o is not r and o["epochs"][0][0] <= ended]
        if slowdown(r["epochs"][0][2], others, limit) is not None:
            stopped.append(r)
    return stopped


def run_lines(name: str, run: dict, limits: list[float], skip: int, full: int, seconds: float,
              max_params: float) -> str:
    """One table row: the run, then per limit what the rule stops, saves and leaves of the front."""
    points = honest_points(run["records"], full, run["started"] + seconds)
    total = sum(r["epochs"][-1][2] for r in run["records"] if r["epochs"])
    cells = [name, str(run["seed"]), f"{hv([(a, p) for _, a, p in points], max_params):.3f}"]
    for limit in limits:
        stopped = replay(run, limit, skip)
        saved = sum(r["epochs"][-1][2] - r["epochs"][0][2] for r in stopped)
        ends = {r["epochs"][full - 1][0] for r in stopped if len(r["epochs"]) >= full}
        kept = [(a, p) for t, a, p in points if t not in ends]
        cells += [str(len(stopped)), f"{saved / total:.0%}", f"{hv(kept, max_params):.3f}"]
    return "| " + " | ".join(cells) + " |"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", type=Path, nargs="+", help="peers.py --keep files")
    parser.add_argument("--problem", choices=sorted(MINUTES), default="permuted-fashion-small")
    parser.add_argument("--minutes", type=float, help="each kept run's wall clock (default: 5 or 15 by problem)")
    parser.add_argument("--contenders", nargs="+", default=["ours-no-slow"], help="runs made without the rule")
    parser.add_argument("--limits", type=float, nargs="+", default=[3.0, 5.0, 8.0])
    parser.add_argument("--write-results", action="store_true")
    args = parser.parse_args(argv)
    from nas.search.samplers import tpe_startup_trials
    from nas.study.config import parse_config

    config = problem_config(args.problem)
    # peers.py's runs: a 100,000-trial budget that the clock stops, so TPE's start has its most trials
    start = tpe_startup_trials(parse_config({**config, "budget": {"trials": 100_000}}))
    skip = len(config.get("warm_start", [])) + start
    full, max_params = config["pruner"]["max_epochs"], float(config["constraints"]["max_params"])
    seconds = 60 * (args.minutes or MINUTES[args.problem])
    header = "| run | seed | HV | " + " | ".join(f"{k:g}x: stopped | saved | HV without" for k in args.limits) + " |"
    lines = [header, "|---|---:|---:|" + "---:|---:|---:|" * len(args.limits)]
    for path in args.runs:
        for name, runs in json.loads(path.read_text()).items():
            if name in args.contenders:
                lines += [run_lines(name, run, args.limits, skip, full, seconds, max_params)
                          for run in runs]
    print("\n".join(lines))
    if args.write_results:
        command = " ".join(["python benchmarks/slow_trials.py", *map(str, args.runs), "--problem", args.problem,
                            "--minutes", f"{seconds / 60:g}", "--contenders", *args.contenders, "--write-results"])
        write_section(f"## Slow trials ({args.problem}, replayed)\n\nCommand: `{command}`\n\n"
                      f"The first {skip} trials of each run (zoo warm starts and the spread start) are not judged; "
                      "'saved': training time after the first epoch of the trials the rule would stop, as a share "
                      "of the run's training time; 'HV without': the honest front's hypervolume without them.\n\n"
                      + "\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
