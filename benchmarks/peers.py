"""Search quality against the tools a user would pick instead, side by side: same problem, same wall clock.

Usage: ``python benchmarks/peers.py [--problem quickstart|permuted-fashion-small] [--minutes M] [--seeds ...]
[--contenders ...] [--keep RUNS.json] [--merge RUNS.json ...] [--score-only] [--write-results]``
(``--merge`` reuses kept runs instead of running them again; ``--score-only`` runs nothing and scores what the merged
files hold, so seeds can be added across sessions)

Every contender searches the same preset's genomes, trains them with the same function (``evaluators.training.
train``) on the same data and full budget, with 2 workers, for the same wall clock, one after another (contenders
interleaved per seed so a drifting machine load hits them alike). Contenders (``peer_contenders.py``):

- ``ours``: ``nas run``'s default (multi-objective TPE + Pareto-aware ASHA, warm starts, dedup, spread start),
  local backend; ``ours-random-start``: the default with the sampler's own random start (``sampler.start: random``,
  the default until 2026-12-07); ``ours-no-slow``: the default without stopping slow trials
  (``pruner.max_slowdown: null``, the default until 2026-12-08);
  ``ours-ray``: the same on the Ray backend; ``ours-cold``: the default without its warm starts (the peers start
  cold); ``ours-nsga2``: the default with NSGA-II instead of TPE (the default until 2026-11-29); ``ours-mv``: the
  default with ``sampler.multivariate`` (TPE modelling co-occurring parameters jointly);
- ``ray-tune``: Ray Tune as its docs set it up, OptunaSearch on both metrics and ASHAScheduler on accuracy;
- ``syne-tune``: Syne Tune's MOASHA with its random searcher (extra ``peers``: ``pip install -e '.[peers]'``);
- ``optuna-nsga2``, ``optuna-random``: plain ``study.optimize(n_jobs=2)``, no pruning.

Scored on the *honest* front (trials trained to the full budget by the stop instant, feasible): hypervolume of
(val accuracy, -log10 params) from (0, -log10 max_params); for Ray Tune also the front it reports (each trial's
last result, however few epochs). Time to target = the share of the budget a contender needs to reach random
search's final hypervolume on the same seed.
"""
from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]
os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "benchmarks"), os.environ.get("PYTHONPATH", "")])

from _results import write_section  # noqa: E402
from nas.scheduling.pareto import hypervolume_2d  # noqa: E402

PEERS_INSTALL = "pip install -e '.[peers]'"
CONTENDERS = ["ours", "ours-random-start", "ours-no-slow", "ours-cold", "ours-ray", "ours-nsga2", "ours-mv",
              "ray-tune", "syne-tune", "optuna-nsga2", "optuna-random"]
NEEDS = {"ours-ray": "ray", "ray-tune": "ray", "syne-tune": "syne_tune"}


def problem_config(name: str) -> dict:
    """The study config of a benchmark problem: the quickstart, or permuted Fashion-MNIST on 5,000 images."""
    if name == "quickstart":
        config = yaml.safe_load((ROOT / "studies" / "quickstart.yaml").read_text())
    else:
        config = yaml.safe_load((ROOT / "studies" / "permuted-fashion.yaml").read_text())
        config["dataset"] = {**config["dataset"], "train_samples": 5000}
    config.update(baseline={"trials": 0})
    return config


def missing_package(contender: str) -> str | None:
    """Why ``contender`` cannot run here (its package is not installed), or None."""
    import importlib.util

    module = NEEDS.get(contender)
    if module is None or importlib.util.find_spec(module) is not None:
        return None
    return f"{module} is not installed: {PEERS_INSTALL if module == 'syne_tune' else 'make venv'}"


# -- running ------------------------------------------------------------------------------------------------------

def run_ours(config: dict, seed: int, seconds: float, folder: Path, backend_name: str,
             sampler_name: str, multivariate: bool = False, start: str | None = None) -> tuple[list[dict], float]:
    """``nas run`` with the problem's settings and ``sampler_name`` (TPE: ``multivariate`` or not; ``start``: the
    sampler's ``start``, None for its default) for ``seconds``: its trials as records (:func:`records_of_study`)
    and its clock start."""
    from nas.execution.local import LocalBackend
    from nas.search.samplers import default_population
    from nas.study.config import parse_config
    from nas.study.plan import RunPlan
    from nas.study.run import QuietReporter, run_plan

    url = f"sqlite:///{folder}/ours.db"
    # the population the problem's own trial budget gives (as plain NSGA-II gets): the 100,000-trial budget that
    # lets the clock stop the run would otherwise raise it to 50, about one generation in 5 minutes here
    sampler = {"name": "nsga2", "seed": seed, "population_size": default_population(config["budget"]["trials"])} \
        if sampler_name == "nsga2" else {"name": sampler_name, "seed": seed,
                                         **({"multivariate": True} if multivariate else {})}
    sampler.update({"start": start} if start else {})
    study_config = parse_config({**config, "name": "peers", "storage": url, "sampler": sampler,
                                 "budget": {"trials": 100_000, "minutes": seconds / 60},
                                 "execution": {**config["execution"], "backend": backend_name, "workers": 2}})
    if backend_name == "ray":
        from nas.execution.ray.driver import RayBackend
        backend = RayBackend(warn=lambda _: None)
    else:
        backend = LocalBackend(2)
    started = time.time()
    with backend.session(study_config, url) as session_url:
        from nas.study.plan import create_study
        create_study(study_config, session_url)
        study = run_plan(RunPlan(study_config, session_url), backend, started + seconds, QuietReporter(), "peers")
    return records_of_study(study), started


def records_of_study(study) -> list[dict]:
    """Each trial as (start, epoch times and accuracies, params, infeasible), from its stored record."""
    from nas.study.records import TrialRecord

    out = []
    for trial in study.get_trials(deepcopy=False):
        record = TrialRecord.of(trial)
        start = trial.datetime_start.timestamp() if trial.datetime_start else None
        if start is None:
            continue
        copy = record.duplicate_of is not None  # it trained nothing: the curve it carries is its twin's
        epochs = [] if copy else [(e.get("ended_at") or start + e["elapsed_s"], e["val_accuracy"], e["elapsed_s"])
                                  for e in record.curve]  # when each epoch really ended (start is the reservation)
        out.append({"start": start, "epochs": epochs, "params": record.params, "summary": record.summary,
                    "infeasible": record.infeasible is not None or record.params is None, "copy": copy,
                    "end": trial.datetime_complete.timestamp() if trial.datetime_complete else None})
    return out


def records_of_log(events: list[dict]) -> list[dict]:
    """The same records from a peer's event log (``peer_contenders.fit``)."""
    trials: dict[str, dict] = {}
    for e in events:
        trial = trials.setdefault(e["key"], {"start": e["t"], "epochs": [], "params": None, "infeasible": False,
                                             "end": None})
        if e["event"] == "genome":
            trial.update(summary=e["summary"], params=e["params"])
        elif e["event"] == "infeasible":
            trial.update(infeasible=True, end=e["t"], params=e["params"])
        elif e["event"] == "epoch":
            trial["epochs"].append((e["t"], e["val_accuracy"], e["fit_s"]))
            trial.update(params=e["params"], end=e["t"])
    return list(trials.values())


def run_contender(name: str, config: dict, seed: int, seconds: float) -> dict:
    """One run: the records of its trials, its clock start, and what the tool itself reports (Ray Tune)."""
    import peer_contenders as pc

    with tempfile.TemporaryDirectory(prefix=f"peers-{name}-") as tmp:
        folder = Path(tmp)
        if name.startswith("ours"):
            changed = {"ours-cold": {"warm_start": []},
                       "ours-no-slow": {"pruner": {**config["pruner"], "max_slowdown": None}}}.get(name, {})
            records, started = run_ours({**config, **changed}, seed, seconds, folder,
                                        "ray" if name == "ours-ray" else "local",
                                        "nsga2" if name == "ours-nsga2" else config["sampler"]["name"],
                                        multivariate=name == "ours-mv",
                                        start="random" if name == "ours-random-start" else None)
            return {"records": records, "started": started, "reported": None}
        log = str(folder / "events.jsonl")
        config_json = json.dumps(config)
        pc.problem(config_json)  # data and orders ready before the clock starts, as for ours
        started = time.time()
        reported = None
        if name == "ray-tune":
            reported = pc.run_ray_tune(config_json, seed, seconds, log)["reported"]
        elif name == "syne-tune":
            pc.run_syne_tune(config_json, seed, seconds, log)
        else:
            pc.run_optuna(config_json, name.split("-")[1], seed, seconds, log)
        return {"records": records_of_log(pc.read_log(log)), "started": started, "reported": reported}


# -- scoring ------------------------------------------------------------------------------------------------------

def honest_points(records: list[dict], full: int, instant: float) -> list[tuple[float, float, float]]:
    """(time its last epoch ended, accuracy, params) of every feasible trial trained ``full`` epochs by ``instant``."""
    points = []
    for r in records:
        done = [e for e in r["epochs"] if e[0] <= instant]
        if not r["infeasible"] and len(done) >= full and r["params"]:
            points.append((done[full - 1][0], done[full - 1][1], float(r["params"])))
    return points


def hv(points: list[tuple[float, float]], max_params: float) -> float:
    """Hypervolume of (accuracy, params) points in (accuracy, -log10 params) from (0, -log10 max_params)."""
    return hypervolume_2d([(a, -math.log10(max(1.0, p))) for a, p in points], (0.0, -math.log10(max_params)))


def score(run: dict, full: int, seconds: float, max_params: float) -> dict:
    """Everything the table reports for one run."""
    stop = run["started"] + seconds
    records = run["records"]
    points = honest_points(records, full, stop)
    curve = [(t - run["started"], hv([(a, p) for tt, a, p in points if tt <= t], max_params))
             for t in sorted(tt for tt, _, _ in points)]
    started = [r for r in records if r["start"] <= stop]
    fit_s = sum(max((e[2] for e in r["epochs"] if e[0] <= stop), default=0.0) for r in started)
    # trials training at once (from the first epoch's end less its fit time); a copy waiting for its running twin
    # trains nothing and holds no Ray slot
    spans = [(r["epochs"][0][0] - r["epochs"][0][2] if r["epochs"] else r["start"],
              min(stop, max([e[0] for e in r["epochs"]] + [r["end"] or stop]))) for r in started if not r.get("copy")]
    sizes = {budget: max((a for _, a, p in points if p <= budget), default=0.0) for budget in SIZE_BUDGETS}
    out = {"hv": hv([(a, p) for _, a, p in points], max_params), "curve": curve, "started": len(started),
           # the hypervolume's share from networks under SMALL params (the log axis weights them heavily) and the
           # best accuracy within each size budget: where one front's hypervolume comes from
           "hv_small": hv([(a, p) for _, a, p in points if p <= SMALL], SMALL), "best_within": sizes,
           "full": len(points), "epochs": sum(sum(e[0] <= stop for e in r["epochs"]) for r in started),
           "overhead": 1 - fit_s / (2 * seconds), "concurrency": max_running(spans)}
    if run.get("reported") is not None:  # the tool's own front: each trial's last result, whatever its epochs
        reported = [(r["val_accuracy"], float(r["params"]), r["epoch"]) for r in run["reported"]
                    if r.get("val_accuracy") and r.get("params") and r["params"] <= max_params]
        out["hv_reported"] = hv([(a, p) for a, p, _ in reported], max_params)
        front = [x for x in reported if not any(o[0] >= x[0] and o[1] <= x[1] and o[:2] != x[:2] for o in reported)]
        out["front_short"] = sum(e < full for _, _, e in front) / max(1, len(front))
    return out


SMALL = 1000  # params: the "tiny network" end of the hypervolume
SIZE_BUDGETS = (1000, 10000, 100000)


def sources(scores: dict[str, list[dict]]) -> list[str]:
    """Where each contender's hypervolume comes from: its part below SMALL params, best accuracy per size budget."""
    lines = [f"| contender | HV below {SMALL:,} params | HV above | " +
             " | ".join(f"best val <= {b:,} params" for b in SIZE_BUDGETS) + " |",
             "|---|---:|---:|" + "---:|" * len(SIZE_BUDGETS)]
    for name, runs in scores.items():
        small = [r["hv_small"] for r in runs]
        lines.append(f"| {name} | {mean_sd(small)} | {mean_sd([r['hv'] - r['hv_small'] for r in runs])} | " +
                     " | ".join(f"{100 * statistics.fmean(r['best_within'][b] for r in runs):.1f}%"
                                for b in SIZE_BUDGETS) + " |")
    return lines


def max_running(spans: list[tuple[float, float]]) -> int:
    """The most trials running at one instant."""
    edges = sorted([(a, 1) for a, _ in spans] + [(b, -1) for _, b in spans], key=lambda e: (e[0], e[1]))
    running = best = 0
    for _, step in edges:
        running += step
        best = max(best, running)
    return best


def time_to_target(curve: list[tuple[float, float]], target: float, seconds: float) -> float | None:
    """The share of the budget after which ``curve`` reaches ``target`` (None: never)."""
    return next((t / seconds for t, value in curve if value >= target), None) if target > 0 else None


# -- report -------------------------------------------------------------------------------------------------------

def mean_sd(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{statistics.fmean(values):.3f} ± {statistics.stdev(values) if len(values) > 1 else 0.0:.3f}"


def table(scores: dict[str, list[dict]]) -> list[str]:
    """One row per contender. Comparisons with ours and with random search's final hypervolume pair runs by seed,
    over the seeds both have (a contender may hold fewer seeds than ours: reused runs)."""
    ours = {o["seed"]: o["hv"] for o in scores.get("ours", [])}
    lines = ["| contender | HV honest (mean ± sd) | ours / it | ours ahead | time to random's HV | trials started | "
             "full-budget | epochs | outside training | most running at once | HV reported by the tool | "
             "its front < full budget |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    random_final = {s["seed"]: s["hv"] for s in scores.get("optuna-random", [])}
    for name, runs in scores.items():
        values = [r["hv"] for r in runs]
        paired = [(ours[r["seed"]], r["hv"]) for r in runs if r["seed"] in ours]
        mine = statistics.fmean(v for _, v in paired) if paired else 0.0
        ratio = statistics.fmean(o for o, _ in paired) / mine if mine > 0 else None
        wins = f"{sum(o > v for o, v in paired)}/{len(paired)}" if paired and name != "ours" else "-"
        reach = [time_to_target(r["curve"], random_final[r["seed"]], r["budget_s"])
                 for r in runs if r["seed"] in random_final]
        reached = [x for x in reach if x is not None]
        reach_text = "-" if not reach else f"never (0/{len(reach)} seeds)" if not reached else \
            f"{statistics.fmean(reached):.0%} ({len(reached)}/{len(reach)} seeds)"
        reported = [r["hv_reported"] for r in runs if "hv_reported" in r]
        short = [r["front_short"] for r in runs if "front_short" in r]
        lines.append(
            f"| {name} | {mean_sd(values)} | {'-' if ratio is None else f'{ratio:.2f}x'} | {wins} | {reach_text} | "
            f"{statistics.fmean(r['started'] for r in runs):.1f} | {statistics.fmean(r['full'] for r in runs):.1f} | "
            f"{statistics.fmean(r['epochs'] for r in runs):.0f} | {statistics.fmean(r['overhead'] for r in runs):.0%} | "
            f"{max(r['concurrency'] for r in runs)} | {mean_sd(reported)} | "
            f"{f'{statistics.fmean(short):.0%}' if short else '-'} |")
    return lines


def plot(scores: dict[str, list[dict]], seconds: float, path: Path) -> None:
    """Mean honest hypervolume against the share of the budget, one line per contender."""
    import plotly.graph_objects as go

    grid = [seconds * i / 60 for i in range(61)]
    figure = go.Figure()
    for name, runs in scores.items():
        means = [statistics.fmean(max([v for t, v in r["curve"] if t <= g], default=0.0) for r in runs) for g in grid]
        figure.add_trace(go.Scatter(x=[g / 60 for g in grid], y=means, mode="lines", name=name))
    figure.update_layout(title="Honest-front hypervolume against wall clock (mean over seeds)",
                         xaxis={"title": "minutes"}, yaxis={"title": "hypervolume", "rangemode": "tozero"})
    figure.write_html(path, include_plotlyjs="cdn")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problem", choices=["quickstart", "permuted-fashion-small"], default="quickstart")
    parser.add_argument("--minutes", type=float, default=5)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--contenders", nargs="+", choices=CONTENDERS, default=CONTENDERS)
    parser.add_argument("--keep", type=Path, help="write every run's trial records to this JSON file")
    parser.add_argument("--merge", type=Path, nargs="+", default=[], help="reuse the runs these --keep files hold "
                                                                          "(contender, seed) instead of running them")
    parser.add_argument("--score-only", action="store_true", help="run nothing: score the (contender, seed) runs "
                        "that --merge holds, pairing contenders by seed")
    parser.add_argument("--write-results", action="store_true")
    args = parser.parse_args(argv)
    config = problem_config(args.problem)
    kept: dict[str, list] = {}
    seconds = 60 * args.minutes
    full, max_params = config["pruner"]["max_epochs"], float(config["constraints"]["max_params"])
    skipped = {c: why for c in args.contenders if (why := missing_package(c))}
    for name, why in skipped.items():
        print(f"skipped {name}: {why}", file=sys.stderr)
    scores: dict[str, list[dict]] = {c: [] for c in args.contenders if c not in skipped}
    load_before = os.getloadavg()[0]
    if args.score_only and not args.merge:
        parser.error("--score-only needs --merge RUNS.json ...")
    merged: dict[str, list] = {}
    for path in args.merge:
        for name, runs in json.loads(path.read_text()).items():
            merged.setdefault(name, []).extend(runs)
    for seed in args.seeds:
        for name in scores:
            run = next((r for r in merged.get(name, []) if r["seed"] == seed), None)
            if run is None and args.score_only:
                continue
            run = run or {"seed": seed, **run_contender(name, config, seed, seconds)}
            kept.setdefault(name, []).append(run)
            if args.keep:
                args.keep.write_text(json.dumps(kept))
            result = {**score(run, full, seconds, max_params), "budget_s": seconds, "seed": seed}
            scores[name].append(result)
            print(f"seed {seed} {name:14s} hv {result['hv']:.3f} started {result['started']} full {result['full']} "
                  f"epochs {result['epochs']} outside training {result['overhead']:.0%}", file=sys.stderr, flush=True)
    scores = {name: runs for name, runs in scores.items() if runs}
    command = "python benchmarks/peers.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    text = "\n".join([f"## Peers ({args.problem}, {args.minutes:g} minutes)", "", f"Command: `{command}`", "",
                      f"{datetime.date.today()}, {os.cpu_count()} CPUs, load average before {load_before:.1f}, after "
                      f"{os.getloadavg()[0]:.1f}. {args.minutes:g} minutes of wall clock per run, 2 workers, "
                      f"seeds {' '.join(map(str, args.seeds))}." +
                      (f" Skipped: {'; '.join(f'{k} ({v})' for k, v in skipped.items())}." if skipped else ""), "",
                      *table(scores), "", *sources(scores)])
    print(text)
    if args.write_results:
        write_section(text)
        plot(scores, seconds, ROOT / "benchmarks" / f"peers-{args.problem}-{args.minutes:g}min.html")
    return 0


if __name__ == "__main__":
    sys.exit(main())
