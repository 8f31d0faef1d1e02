"""The search machinery at scale: simulated trials (``nas run --simulate``), so every cost measured is ours.

Usage: ``python benchmarks/scale.py [--sizes 100 1000 10000] [--workers 1 8 32] [--storages sqlite postgresql]
[--postgres URL] [--backend local|ray] [--sampler nsga2|tpe|tpe-multivariate] [--write-results]``

For each storage (SQLite beside the study; PostgreSQL when ``--postgres`` or ``NAS_TEST_POSTGRES_URL`` gives a
server) and each worker count, one study on the quickstart problem (permuted MNIST-1D, the perm-cnn-1d preset,
NSGA-II unless ``--sampler tpe`` (or ``tpe-multivariate``: ``sampler.multivariate``), Pareto-aware ASHA with
rungs at 2 and 6 of 18 epochs) is grown through ``--sizes`` by resuming it with a larger budget, its workers
processes on the one storage (``--backend local``) or Ray actors (``--backend ray``: a local Ray runtime). Per
segment: the wall time per trial (training costs nothing, so this is the machinery: sampling, constraints, dedup,
rung decisions, storage writes, progress), and afterwards the latency of one rung decision (``rung_verdict``:
read the rung's records from the storage, rank them) against the study at that size, and the storage queries per
trial (SQL statements counted while ``--probe`` more trials run in this process, on the local backend whatever
grew the study: a Ray actor's statements would go uncounted).
Every study is then checked: trials in the storage equal to the budget, none left RUNNING, none FAILED (a simulated
trial has no reason to), no number twice.
The per-trial time against study size is drawn to ``benchmarks/scale.html``.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
import sqlalchemy
import yaml

from _results import write_section
from nas.scheduling.rungs import rung_verdict
from nas.study.config import parse_config

ROOT = Path(__file__).resolve().parents[1]
SECTION = "## Scale (simulated trials)"
STUDY = {
    "name": "scale",
    "dataset": {"name": "mnist1d", "permute": True, "permute_seed": 0, "num_samples": 5000, "seed": 42,
                "val_fraction": 0.2},
    "search_space": {"preset": "perm-cnn-1d"},
    "constraints": {"max_params": 20000},
    "sampler": {"name": "nsga2", "seed": 0},
    "pruner": {"name": "asha", "min_epochs": 2, "max_epochs": 18, "reduction_factor": 3},
    "baseline": {"trials": 0},
    "execution": {"backend": "local", "simulate": True},
}


def grow(folder: Path, url: str, name: str, workers: int, size: int) -> float:
    """Resumes study ``name`` up to ``size`` trials with ``workers`` processes; returns the wall time."""
    execution = {**STUDY["execution"], "workers": workers}
    if execution["backend"] == "ray":  # each actor a share of the machine's CPUs, so that all of them run at once
        execution["cpu"] = min(1.0, (os.cpu_count() or 1) / workers)
    study = {**STUDY, "name": name, "storage": url, "budget": {"trials": size}, "execution": execution}
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(study))
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "nas.cli", "run", str(path)], cwd=folder, check=True,
                   stdout=subprocess.DEVNULL, env={**os.environ, "NO_COLOR": "1"})
    return time.perf_counter() - started


def rung_latency_ms(url: str, name: str, repeats: int = 5) -> float:
    """Median time of one rung decision at the first rung against the study as it stands."""
    study = optuna.load_study(study_name=name, storage=url)
    config = parse_config({**STUDY, "name": name})
    epoch = config.pruner.rungs()[0]
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        rung_verdict(study, config, -1, epoch, 0.5, {"params": 5000, "flops": 100000})
        times.append(time.perf_counter() - started)
    return 1e3 * statistics.median(times)


def queries_per_trial(folder: Path, url: str, name: str, size: int, probe: int) -> float:
    """SQL statements per trial while this process grows the study by ``probe`` trials (one worker)."""
    from nas.cli.main import main as nas_main

    study = {**STUDY, "name": name, "storage": url, "budget": {"trials": size + probe},
             "execution": {**STUDY["execution"], "backend": "local"}}  # in this process, whatever grew the study
    path = folder / f"{name}-probe.yaml"
    path.write_text(yaml.safe_dump(study))
    count = [0]

    def counted(*_):
        count[0] += 1

    sqlalchemy.event.listen(sqlalchemy.engine.Engine, "before_cursor_execute", counted)
    try:
        with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
            nas_main(["run", str(path)])
    finally:
        sqlalchemy.event.remove(sqlalchemy.engine.Engine, "before_cursor_execute", counted)
    return count[0] / probe


def integrity(url: str, name: str, size: int) -> dict:
    trials = optuna.load_study(study_name=name, storage=url).get_trials(deepcopy=False)
    numbers = [t.number for t in trials]
    running = sum(t.state == optuna.trial.TrialState.RUNNING for t in trials)
    failed = sum(t.state == optuna.trial.TrialState.FAIL for t in trials)  # a simulated trial has no reason to fail
    return {"stored": len(trials), "lost": max(0, size - len(trials)), "extra": max(0, len(trials) - size),
            "running": running, "failed": failed, "numbers_twice": len(numbers) - len(set(numbers))}


def measure(sizes: list[int], workers: list[int], storages: dict[str, str], probe: int) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="nas-scale-") as tmp:
        folder = Path(tmp)
        for storage, base_url in storages.items():
            for count in workers:
                name = f"scale-{storage}-w{count}-{int(time.time())}"
                url = base_url or f"sqlite:///{folder}/{name}.db"
                done = 0
                for size in sizes:
                    wall = grow(folder, url, name, count, size)
                    fixed = grow(folder, url, name, count, size)  # a run with nothing left to do: start-up only
                    row = {"storage": storage, "backend": STUDY["execution"]["backend"], "workers": count,
                           "size": size, "startup_s": fixed,
                           "per_trial_ms": 1e3 * max(0.0, wall - fixed) / (size - done),
                           "rung_ms": rung_latency_ms(url, name), **integrity(url, name, size)}
                    row["queries"] = queries_per_trial(folder, url, name, size, probe) if probe else None
                    done = size + probe
                    if probe:
                        row["probe_ok"] = integrity(url, name, done)
                    rows.append(row)
                    print(row, file=sys.stderr, flush=True)
    return rows


def plot(rows: list[dict], path: Path) -> None:
    """Per-trial machinery time against study size, one line per storage, backend and worker count."""
    import plotly.graph_objects as go

    def line(row: dict) -> tuple:
        return row["storage"], row.get("backend", "local"), row["workers"]

    figure = go.Figure()
    for key in sorted({line(r) for r in rows}):
        mine = [r for r in rows if line(r) == key]
        figure.add_trace(go.Scatter(x=[r["size"] for r in mine], y=[r["per_trial_ms"] for r in mine],
                                    mode="lines+markers", name=f"{key[0]}, {key[1]}, {key[2]} worker(s)"))
    figure.update_layout(title="Machinery time per simulated trial against study size",
                         xaxis={"title": "trials in the study", "type": "log"},
                         yaxis={"title": "ms per trial", "rangemode": "tozero"})
    figure.write_html(path, include_plotlyjs="cdn")


def section(rows: list[dict], command: str) -> str:
    lines = [SECTION, "", f"Command: `{command}`", "",
             "Machine: 2 cores (shared). Per trial = wall time of the segment that grew the study to its size, "
             "divided by the trials it added, less the start-up (a run with nothing left to do: imports, data, "
             "worker processes), which is listed apart. Nothing is trained: this is all machinery, with workers "
             "as processes on the one storage or Ray actors (the backend column). Rung = one `rung_verdict` at the "
             "first rung against the study at that size (median of 5). Queries = SQL statements per trial while a "
             "few more trials run in the benchmark's own process. Plot: `benchmarks/scale.html`.", "",
             "| storage | backend | workers | study size | per trial (ms) | start-up (s) | rung decision (ms) "
             "| queries per trial | lost | extra | left RUNNING | failed |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        queries = "-" if r.get("queries") is None else f"{r['queries']:.0f}"
        lines.append(f"| {r['storage']} | {r['backend']} | {r['workers']} | {r['size']:,} | "
                     f"{r['per_trial_ms']:.0f} | {r['startup_s']:.1f} | {r['rung_ms']:.1f} | {queries} | "
                     f"{r['lost']} | {r['extra']} | {r['running']} | {r['failed']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000, 10000])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--postgres", default=os.environ.get("NAS_TEST_POSTGRES_URL"),
                        help="a PostgreSQL URL to measure too (default: $NAS_TEST_POSTGRES_URL)")
    parser.add_argument("--storages", nargs="+", choices=["sqlite", "postgresql"], default=["sqlite", "postgresql"],
                        help="postgresql is measured only with a URL (--postgres)")
    parser.add_argument("--probe", type=int, default=10, help="trials run in-process to count queries (0: skip)")
    parser.add_argument("--sampler", choices=["nsga2", "tpe", "tpe-multivariate"], default="nsga2",
                        help="the study's sampler (nsga2, as the first rows in RESULTS.md were measured; tpe: the "
                             "default; tpe-multivariate: tpe with sampler.multivariate)")
    parser.add_argument("--backend", choices=["local", "ray"], default="local",
                        help="workers as processes on the storage (local) or as Ray actors (ray)")
    parser.add_argument("--write-results", action="store_true")
    args = parser.parse_args(argv)
    STUDY["execution"] = {**STUDY["execution"], "backend": args.backend}
    STUDY["sampler"] = {"name": args.sampler.split("-")[0], "seed": 0,
                        **({"multivariate": True} if args.sampler == "tpe-multivariate" else {})}
    storages = {"sqlite": None, "postgresql": args.postgres}
    storages = {k: v for k, v in storages.items() if k in args.storages and (k == "sqlite" or v)}
    rows = measure(sorted(args.sizes), args.workers, storages, args.probe)
    text = section(rows, "python benchmarks/scale.py " + shlex.join(argv if argv is not None else sys.argv[1:]))
    print(text)
    if args.write_results:
        write_section(text)
        plot(rows, ROOT / "benchmarks" / "scale.html")
    probes = [r["probe_ok"] for r in rows if "probe_ok" in r]
    clean = all(r["lost"] == r["extra"] == r["running"] == r["failed"] == r["numbers_twice"] == 0
                for r in rows + probes)
    return 0 if clean else 1


if __name__ == "__main__":
    sys.exit(main())
