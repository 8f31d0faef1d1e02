"""The quickstart study three ways, side by side: local with 1 worker, local with 2 workers, Ray with 2 workers.

Each way is one ``nas run`` in a fresh process (imports, preflight and, for Ray, starting the local Ray runtime
all count, as a user waits for them) with the same fixed trial budget, no dense baseline, no warm start and no
time budget, each with its own SQLite storage in a temporary folder. So that every way trains the same work,
the trials' genomes and training values are sampled once (at random, define-by-run as a run samples them) and
enqueued into each storage; only which trials the rung rule stops can differ, with the order trials reach a
rung. Targets: Ray-2 at most 0.75x local-1 and at most 1.15x local-2. From the storage: ``startup`` is the
command's start to its first trial, ``in trials`` the seconds trials ran (summed), ``overhead/trial`` the
worker-seconds after startup not spent inside a trial, per trial: ``((wall - startup) * workers - in_trials) /
trials``.

Usage: ``python benchmarks/backends.py [--trials 12] [--study studies/quickstart.yaml] [--write-results]``
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import optuna
import ray
import torch
import yaml

from evaluators.datasets import load_dataset
from nas.study.config import load_config
from nas.search.genomes import resolve_space, sample_genome
from nas.study.config import suggest_value
from search_space import GenomeError

from _results import write_section  # benchmarks/ is the script's folder

ROOT = Path(__file__).resolve().parent.parent
optuna.logging.set_verbosity(optuna.logging.WARNING)
WAYS = [("local-1", "local", 1), ("local-2", "local", 2), ("ray-2", "ray", 2)]
TARGETS = {"ray-2 / local-1": 0.75, "ray-2 / local-2": 1.15}


@dataclass
class Run:
    """One way's measurements (seconds) and its trials' outcomes."""

    label: str
    workers: int
    wall: float
    startup: float
    in_trials: float
    trials: int
    states: dict[str, int]

    @property
    def overhead_per_trial(self) -> float:
        return ((self.wall - self.startup) * self.workers - self.in_trials) / max(1, self.trials)


def study_file(folder: Path, study: Path, trials: int, backend: str, workers: int) -> tuple[Path, str, str]:
    """The study with a fixed budget, no baseline, no warm start, no time limit, its own storage.

    Returns (file, study name, storage URL).
    """
    data = yaml.safe_load(study.read_text())
    url = f"sqlite:///{folder}/study.db"
    data.update(budget={"trials": trials}, baseline={"trials": 0}, warm_start=[], storage=url,
                execution={**(data.get("execution") or {}), "backend": backend, "workers": workers})
    path = folder / study.name
    path.write_text(yaml.safe_dump(data))
    return path, data["name"], url


def sampled_trials(study: Path, trials: int) -> list[dict]:
    """``trials`` parameter sets (genome and training values) drawn at random as a run draws them."""
    config = load_config(study)
    data, space = load_dataset(config.dataset), resolve_space(config.search_space)
    sampler = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=config.sampler.seed))
    drawn = []
    for _ in range(trials):
        trial = sampler.ask()
        try:
            sample_genome(trial, space, data.input_shape, data.num_classes).validate()
        except GenomeError:
            pass  # the run records it as infeasible, in every way alike
        suggest_value(trial, "lr", config.training.lr)
        suggest_value(trial, "weight_decay", config.training.weight_decay)
        drawn.append(trial.params)
    return drawn


def enqueue(name: str, url: str, study: Path, params: list[dict]) -> None:
    """Creates the study in its storage with ``params`` queued, so its run trains exactly those trials."""
    directions = [o.direction for o in load_config(study).objectives]
    queued = optuna.create_study(study_name=name, storage=url, directions=directions)
    for values in params:
        queued.enqueue_trial(values)


def run_way(label: str, backend: str, workers: int, study: Path, params: list[dict]) -> Run:
    with tempfile.TemporaryDirectory(prefix=f"nas-bench-{label}-") as tmp:
        folder = Path(tmp)
        path, name, url = study_file(folder, study, len(params), backend, workers)
        enqueue(name, url, study, params)
        start = time.time()
        done = subprocess.run([sys.executable, "-m", "nas.cli", "run", str(path)], cwd=folder,
                              capture_output=True, text=True)
        wall = time.time() - start
        if done.returncode != 0:
            raise SystemExit(f"{label}: nas run exited {done.returncode}:\n{done.stderr[-3000:]}")
        finished = [t for t in optuna.load_study(study_name=name, storage=url).get_trials() if t.state.is_finished()]
    if len(finished) != len(params) or any(t.params.items() - params[t.number].items() for t in finished):
        raise SystemExit(f"{label}: the run did not train exactly the queued trials")  # infeasible ones ask fewer
    first = min(t.datetime_start.timestamp() for t in finished)
    in_trials = sum((t.datetime_complete - t.datetime_start).total_seconds() for t in finished)
    states: dict[str, int] = {}
    for t in finished:
        key = "infeasible" if "infeasible" in t.user_attrs else t.state.name.lower()
        states[key] = states.get(key, 0) + 1
    return Run(label, workers, wall, first - start, in_trials, len(finished), states)


def table(runs: dict[str, Run]) -> list[str]:
    lines = ["| way | wall (s) | startup (s) | in trials (s) | overhead/trial (s) | trials |",
             "|---|---:|---:|---:|---:|---|"]
    for run in runs.values():
        states = ", ".join(f"{v} {k}" for k, v in sorted(run.states.items()))
        lines.append(f"| {run.label} | {run.wall:.1f} | {run.startup:.1f} | {run.in_trials:.1f} | "
                     f"{run.overhead_per_trial:.2f} | {states} |")
    lines += ["", "| ratio | value | target |", "|---|---:|---|"]
    for name, target in TARGETS.items():
        mine, other = name.split(" / ")
        ratio = runs[mine].wall / runs[other].wall
        lines.append(f"| {name} | {ratio:.2f}x | **<= {target} {'PASS' if ratio <= target else 'FAIL'}** |")
    extra = (runs["ray-2"].wall - runs["local-2"].wall) / runs["ray-2"].trials
    lines.append(f"| (ray-2 - local-2) / trials | {extra:+.2f} s | |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--study", type=Path, default=ROOT / "studies" / "quickstart.yaml")
    parser.add_argument("--write-results", action="store_true")
    args = parser.parse_args(argv)
    load_dataset(load_config(args.study).dataset)  # fills the dataset cache, so no way pays for generating it
    params = sampled_trials(args.study, args.trials)
    load_before, started = os.getloadavg()[0], time.time()
    runs = {}
    for label, backend, workers in WAYS:
        runs[label] = run_way(label, backend, workers, args.study, params)
        print(f"{label}: {runs[label].wall:.1f} s", flush=True)
    load_after = os.getloadavg()[0]
    command = " ".join(["python", "benchmarks/backends.py", *(argv if argv is not None else sys.argv[1:])])
    section = "\n".join([
        "## Backends", "",
        *table(runs), "",
        f"`{args.study.relative_to(ROOT) if args.study.is_relative_to(ROOT) else args.study}` with "
        f"`budget.trials: {args.trials}`, no baseline, no warm start, no time budget, pruner as in the study; each "
        "way is one `nas run` in a fresh process (imports, preflight and starting Ray included) with its own SQLite "
        "storage, and trains the same trials (drawn once at random and enqueued), so only which ones the rung "
        "rule stops may differ. `startup`: command start to first trial; `in trials`: seconds inside trials, "
        "summed; `overhead/trial`: worker-seconds after startup not spent in a trial, per trial. local-1 trains "
        f"each trial with {os.cpu_count()} torch threads (`cpu_count // workers`), local-2 with "
        f"{max(1, (os.cpu_count() or 1) // 2)} and ray-2 with `int(execution.cpu)`, so on a busy machine local-1 "
        "can take more than twice local-2.",
        "",
        f"- date: {dt.datetime.now(dt.timezone.utc).isoformat(timespec='seconds')}",
        f"- torch: {torch.__version__}, ray: {ray.__version__}, optuna: {optuna.__version__}",
        f"- CPU threads: {os.cpu_count()} ({platform.machine()}); load average {load_before:.1f} before, "
        f"{load_after:.1f} after (shared machine)",
        f"- total {time.time() - started:.0f} s",
        f"- command: `{command}`",
    ])
    print(section)
    if args.write_results:
        write_section(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
