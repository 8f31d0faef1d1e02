"""Reproduces the MNIST-1D paper's table (Greydanus 2020) with our training loop and zoo genomes.

Usage: ``python benchmarks/mnist1d_table.py [--epochs N] [--seeds N] [--jobs N] [--search-split] [--write-results]``

Trains zoo ``mnist1d-mlp`` and ``mnist1d-cnn`` on ``mnist1d`` and ``mnist1d:permute`` (features in one fixed
shuffled order), several seeds each, with the paper's settings: Adam (AdamW, weight decay 0), lr 1e-2, batch 100,
constant lr, 6000 steps, the final model scored on the 1000 test samples. Prints mean ± std of test accuracy
beside the paper's numbers.

The paper trains on all 4000 training samples and keeps no validation set, so by default the loader's
validation split is put back into training (the loop's per-epoch "val" then reads the test set; nothing is
selected on it). ``--search-split`` keeps the search's split instead (3200 train / 800 val), which costs a
few points: MNIST-1D accuracy is still climbing steeply with the number of samples at this size.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import multiprocessing
import os
import platform
import shlex
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor

import torch

from evaluators.datasets import Splits, load_dataset
from evaluators.training import TrainConfig, train
from search_space import get_zoo

from _results import RESULTS, write_section  # benchmarks/ is the script's folder

SECTION = "## MNIST-1D table"
PAPER_STEPS, BATCH = 6000, 100
DATASETS = ("mnist1d", "mnist1d:permute")
MODELS = ("mnist1d-mlp", "mnist1d-cnn")
PAPER = {("mnist1d", "mnist1d-mlp"): 68, ("mnist1d", "mnist1d-cnn"): 94,
         ("mnist1d:permute", "mnist1d-mlp"): 68, ("mnist1d:permute", "mnist1d-cnn"): 56}


def paper_split(data: Splits) -> Splits:
    """The paper's split: train on train + val (all 4000 samples), no validation; val reads the test set."""
    return dataclasses.replace(data, x_train=torch.cat([data.x_train, data.x_val]),
                               y_train=torch.cat([data.y_train, data.y_val]), x_val=data.x_test, y_val=data.y_test)


def splits_for(dataset: str, search_split: bool) -> Splits:
    """The loader's splits (``search_split``) or the paper's."""
    data = load_dataset(dataset)
    return data if search_split else paper_split(data)


def run_one(dataset: str, model: str, seed: int, epochs: int, search_split: bool) -> dict:
    """Final test accuracy of one model on one dataset for one seed (runs in a worker process, one thread)."""
    data = splits_for(dataset, search_split)
    genome = get_zoo(model).build(data.input_shape, data.num_classes)
    config = TrainConfig(optimizer="adamw", lr=1e-2, weight_decay=0.0, batch_size=BATCH, epochs=epochs,
                         schedule="constant", seed=seed, threads=1)
    cpu_started = time.process_time()
    result = train(genome, data, config)
    return {"dataset": dataset, "model": model, "seed": seed, "params": genome.params,
            "test": result.test_accuracy, "seconds": result.train_time_s, "cpu_s": time.process_time() - cpu_started}


def run_table(epochs: int, seeds: int, jobs: int, search_split: bool) -> list[dict]:
    """Every (dataset, model) cell over ``seeds`` seeds, ``jobs`` runs at a time; one dict per cell."""
    tasks = [(d, m, s) for d in DATASETS for m in MODELS for s in range(seeds)]
    runs = []
    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(run_one, d, m, s, epochs, search_split) for d, m, s in tasks]
        for future in futures:
            r = future.result()
            runs.append(r)
            print(f"{r['dataset']:16s} {r['model']:12s} seed {r['seed']}: test {100 * r['test']:.1f}%  "
                  f"({r['seconds']:.0f} s wall, {r['cpu_s']:.0f} s CPU)", file=sys.stderr, flush=True)
    cells = []
    for d in DATASETS:
        for m in MODELS:
            mine = [r for r in runs if (r["dataset"], r["model"]) == (d, m)]
            cells.append({"dataset": d, "model": m, "params": mine[0]["params"], "test": [r["test"] for r in mine],
                          "cpu_s": sum(r["cpu_s"] for r in mine)})
    return cells


def mean_std(values: list[float]) -> str:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * statistics.fmean(values):.1f} ± {100 * std:.1f}"


def format_table(cells: list[dict]) -> str:
    """A markdown table: dataset, model, params, ours (test %, mean ± std over seeds), the paper's."""
    rows = ["| dataset | model | params | test accuracy % (ours) | paper % |", "|---|---|---:|---:|---:|"]
    for c in cells:
        rows.append(f"| {c['dataset']} | {c['model']} | {c['params']:,} | {mean_std(c['test'])} | "
                    f"{PAPER[(c['dataset'], c['model'])]} |")
    return "\n".join(rows)


def format_section(table: str, meta: dict) -> str:
    split = ("the search's split (validation held out of training)" if meta["search_split"]
             else "the paper's split (the loader's validation samples put back into training)")
    return (f"{SECTION}\n\n{table}\n\nAdam (AdamW, weight decay 0), lr 1e-2, batch {BATCH}, constant lr; "
            f"{meta['epochs']} epochs of {meta['train_samples']} training samples = {meta['steps']} steps (the paper: "
            f"{PAPER_STEPS}), {split}; final model on the 1000 test samples; mean ± sample std over seeds "
            f"0..{meta['seeds'] - 1}. Paper: Greydanus 2020, \"Scaling down deep learning\" (MNIST-1D).\n\n"
            f"- date: {meta['date']}\n- torch: {meta['torch']}\n"
            f"- CPU: {meta['jobs']} runs in parallel, 1 torch thread each ({meta['cpu']}, {os.cpu_count()} visible)\n"
            f"- total: {meta['seconds']:.0f} s wall, {meta['cpu_s']:.0f} s CPU in training (load average "
            f"{meta['load'][0]:.1f} before, {meta['load'][1]:.1f} after)\n- command: `{meta['command']}`\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=None,
                        help=f"epochs per run (default: {PAPER_STEPS} steps at batch {BATCH}, 150 epochs on 4000 samples)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=2, help="runs in parallel, one torch thread each")
    parser.add_argument("--search-split", action="store_true",
                        help="train on the search's split (validation held out) instead of the paper's 4000 samples")
    parser.add_argument("--write-results", action="store_true", help=f"replace the '{SECTION}' section of {RESULTS}")
    args = parser.parse_args(argv)
    if args.seeds < 1 or args.jobs < 1 or (args.epochs is not None and args.epochs < 1):
        parser.error("--epochs, --seeds and --jobs must be >= 1")
    train_samples = len(splits_for("mnist1d", args.search_split).x_train)  # also fills the dataset cache once
    steps_per_epoch = train_samples // BATCH
    epochs = args.epochs or max(1, round(PAPER_STEPS / steps_per_epoch))
    started = time.perf_counter()
    load_before = os.getloadavg()[0]
    cells = run_table(epochs, args.seeds, args.jobs, args.search_split)
    table = format_table(cells)
    print(table)
    command = sys.argv[1:] if argv is None else argv
    meta = {"epochs": epochs, "train_samples": train_samples, "steps": epochs * steps_per_epoch,
            "seeds": args.seeds, "search_split": args.search_split, "date": datetime.date.today().isoformat(),
            "torch": torch.__version__, "jobs": args.jobs, "cpu": platform.processor() or platform.machine(),
            "seconds": time.perf_counter() - started, "cpu_s": sum(c["cpu_s"] for c in cells),
            "load": (load_before, os.getloadavg()[0]),
            "command": " ".join(["python", "benchmarks/mnist1d_table.py", *map(shlex.quote, command)])}
    if args.write_results:
        write_section(format_section(table, meta))
        print(f"wrote '{SECTION}' to {RESULTS}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
