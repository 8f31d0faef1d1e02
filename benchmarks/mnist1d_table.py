"""Reproduces the MNIST-1D paper's table (Greydanus 2020) with our training loop and zoo genomes.

Usage: ``python benchmarks/mnist1d_table.py [--epochs N] [--seeds N] [--write-results]``

Trains zoo ``mnist1d-mlp`` and ``mnist1d-cnn`` on ``mnist1d`` and ``mnist1d:permute`` (features in a fixed
shuffled order), several seeds each, with the paper's settings: Adam (AdamW, weight decay 0), lr 1e-2, batch 100,
constant lr. The paper trains 6000 steps (150 epochs of 4000 samples); ``--epochs`` defaults to that step
count for our training split. Prints mean ± std of test accuracy beside the paper's numbers.
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from evaluators.datasets import load_dataset
from evaluators.training import TrainConfig, train
from search_space import get_zoo

RESULTS = Path(__file__).with_name("RESULTS.md")
SECTION = "## MNIST-1D table"
PAPER_STEPS = 6000
PAPER = {("mnist1d", "mnist1d-mlp"): 0.68, ("mnist1d", "mnist1d-cnn"): 0.94,
         ("mnist1d:permute", "mnist1d-mlp"): 0.68, ("mnist1d:permute", "mnist1d-cnn"): 0.56}


def run_cell(dataset: str, model: str, seeds: int, epochs: int, threads: int) -> dict:
    """Test accuracy (and the final val accuracy) of one model on one dataset over ``seeds`` seeds."""
    data = load_dataset(dataset)
    genome = get_zoo(model).build(data.input_shape, data.num_classes)
    tests, vals, started = [], [], time.perf_counter()
    for seed in range(seeds):
        config = TrainConfig(optimizer="adamw", lr=1e-2, weight_decay=0.0, batch_size=100, epochs=epochs,
                             schedule="constant", seed=seed, threads=threads)
        result = train(genome, data, config)
        tests.append(result.test_accuracy)
        vals.append(result.val_accuracy)
    return {"dataset": dataset, "model": model, "params": genome.params, "test": tests, "val": vals,
            "seconds": time.perf_counter() - started, "train_samples": len(data.x_train)}


def mean_std(values: list[float]) -> str:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * statistics.fmean(values):.1f} ± {100 * std:.1f}"


def format_table(cells: list[dict]) -> str:
    """A markdown table: dataset, model, params, ours (test, mean ± std over seeds), paper."""
    rows = ["| dataset | model | params | test accuracy % (ours) | paper % | val accuracy % (ours) |",
            "|---|---|---:|---:|---:|---:|"]
    for c in cells:
        paper = PAPER.get((c["dataset"], c["model"]))
        rows.append(f"| {c['dataset']} | {c['model']} | {c['params']:,} | {mean_std(c['test'])} | "
                    f"{'' if paper is None else f'{100 * paper:.0f}'} | {mean_std(c['val'])} |")
    return "\n".join(rows)


def format_section(table: str, meta: dict) -> str:
    return (f"{SECTION}\n\n{table}\n\nAdam (AdamW, weight decay 0), lr 1e-2, batch 100, constant lr, "
            f"{meta['epochs']} epochs of {meta['train_samples']} training samples ({meta['steps']} steps; the paper "
            f"uses {PAPER_STEPS}), {meta['seeds']} seeds (0..{meta['seeds'] - 1}); mean ± sample std of the final "
            f"model's accuracy.\n\n- date: {meta['date']}\n- torch: {meta['torch']}\n"
            f"- CPU threads: {meta['threads']} ({meta['cpu']})\n- total: {meta['seconds']:.0f} s\n"
            f"- command: `{meta['command']}`\n")


def write_results(section: str, path: Path = RESULTS) -> None:
    """Replaces the ``## MNIST-1D table`` section of RESULTS.md (creating the file with a title); others stay."""
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    lines = text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.rstrip() == SECTION), None)
    if start is None:
        new = text.rstrip("\n") + "\n\n" + section
    else:
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
        tail = "".join(lines[end:])
        new = "".join(lines[:start]) + section + ("\n" + tail if tail else "")
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".RESULTS.", suffix=".md")
    with os.fdopen(fd, "w") as handle:
        handle.write(new)
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=None,
                        help=f"epochs per run (default: {PAPER_STEPS} steps at batch 100 over our training split)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--write-results", action="store_true", help=f"replace the '{SECTION}' section of {RESULTS}")
    args = parser.parse_args(argv)
    if args.seeds < 1 or args.threads < 1 or (args.epochs is not None and args.epochs < 1):
        parser.error("--epochs, --seeds and --threads must be >= 1")
    train_samples = len(load_dataset("mnist1d").x_train)
    epochs = args.epochs or max(1, round(PAPER_STEPS / (train_samples // 100)))
    started = time.perf_counter()
    cells = []
    for dataset in ("mnist1d", "mnist1d:permute"):
        for model in ("mnist1d-mlp", "mnist1d-cnn"):
            cells.append(run_cell(dataset, model, args.seeds, epochs, args.threads))
            c = cells[-1]
            print(f"{dataset:16s} {model:12s} test {mean_std(c['test'])}  val {mean_std(c['val'])}  "
                  f"({c['seconds']:.0f} s)", file=sys.stderr, flush=True)
    table = format_table(cells)
    print(table)
    meta = {"epochs": epochs, "train_samples": train_samples, "steps": epochs * (train_samples // 100),
            "seeds": args.seeds, "date": datetime.date.today().isoformat(), "torch": torch.__version__,
            "threads": args.threads, "cpu": platform.processor() or platform.machine(),
            "seconds": time.perf_counter() - started,
            "command": " ".join(["python", "benchmarks/mnist1d_table.py", *map(shlex.quote, sys.argv[1:] if argv is None else argv)])}
    if args.write_results:
        write_results(format_section(table, meta))
        print(f"wrote '{SECTION}' to {RESULTS}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
