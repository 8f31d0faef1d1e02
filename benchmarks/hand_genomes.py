"""Does the conv2d space hold small genomes that the search missed? Hand-built conv-pool stacks under a tenth of
LeNet-5's 61,684 parameters, trained the way ``studies/fashion-tenth*.yaml`` train a trial.

Usage: ``python benchmarks/hand_genomes.py [NAME ...] [--epochs 12] [--lr 5e-3] [--seed 0]``

Each network is a stack of stages (a conv-like op without bias, BatchNorm, ReLU, optionally 2x2 max pooling) with
a global-average-pool head, so each is a genome the ``conv2d`` preset can draw (stride 2 drawn with
``downsample: pool``). Data: Fashion-MNIST as the studies read it (15,000 training images, 10% of the training split
for validation, seed 42); AdamW, batch 128, cosine schedule. Prints validation and test accuracy after the last
epoch (nothing is selected: the networks are fixed in advance).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from evaluators.datasets import load_dataset  # noqa: E402
from evaluators.training import TrainConfig, train  # noqa: E402
from search_space.genome import Genome  # noqa: E402

DATA = {"name": "fashion-mnist", "val_fraction": 0.1, "seed": 42, "train_samples": 15000}

# name -> stages: (op, out channels, kernel, 2x2 max pool after)
NETWORKS: dict[str, list[tuple[str, int, int, bool]]] = {
    "plain-16-32": [("conv", 16, 3, True), ("conv", 32, 3, True)],
    "sep-16-32-64": [("conv", 16, 3, True), ("separable_conv", 32, 3, True), ("separable_conv", 64, 3, False)],
    "sep-16-32-48-48": [("conv", 16, 3, True), ("separable_conv", 32, 3, False), ("separable_conv", 48, 3, True),
                        ("separable_conv", 48, 3, False)],
    "fact-16-24-16": [("factorized_conv", 16, 3, True), ("factorized_conv", 24, 3, True),
                      ("factorized_conv", 16, 3, False)],
    # the same budgets with the pooling moved later: more multiply-adds per parameter
    "sep-16-32p-48-48p": [("conv", 16, 3, False), ("separable_conv", 32, 3, True), ("separable_conv", 48, 3, False),
                          ("separable_conv", 48, 3, True)],
    "sep-24-32p-48-32p": [("conv", 24, 3, False), ("separable_conv", 32, 3, True), ("separable_conv", 48, 3, False),
                          ("separable_conv", 32, 3, True)],
    "sep-16-32-48p-48p": [("conv", 16, 3, False), ("separable_conv", 32, 3, False), ("separable_conv", 48, 3, True),
                          ("separable_conv", 48, 3, True)],
    "conv32p-sep48-48p": [("conv", 32, 3, True), ("separable_conv", 48, 3, False), ("separable_conv", 48, 3, True)],
    "sep5-16-32p-48-32p": [("conv", 16, 3, False), ("separable_conv", 32, 5, True), ("separable_conv", 48, 5, False),
                           ("separable_conv", 32, 3, True)],
}


def stack(stages: list[tuple[str, int, int, bool]], shape: tuple[int, ...] = (1, 28, 28),
          classes: int = 10) -> Genome:
    """The stages as a genome: op -> BatchNorm -> ReLU [-> max pool], then GAP and a dense layer to classes."""
    g = Genome()
    x = g.add("input", "input", shape=list(shape))
    for i, (op, channels, kernel, pool) in enumerate(stages):
        x = g.chain(x, [(f"c{i}", op, {"out_channels": channels, "kernel": kernel, "bias": False}),
                        (f"bn{i}", "norm", {}), (f"r{i}", "act", {"fn": "relu"})])
        if pool:
            x = g.add(f"p{i}", "pool", [x], kind="max", kernel=2)
    x = g.chain(x, [("gap", "global_pool", {"kind": "avg"}), ("logits", "dense", {"out_features": classes})])
    g.add("output", "output", [x])
    return g.validate()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help=f"networks to train (default: all): {', '.join(NETWORKS)}")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--lr", type=float, default=5e-3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    unknown = [name for name in args.names if name not in NETWORKS]
    if unknown:
        parser.error(f"unknown network {unknown[0]!r}; valid: {', '.join(NETWORKS)}")
    torch.set_num_threads(2)
    data = load_dataset(DATA)
    print("| network | params | multiply-adds | val | test | seconds |\n|---|---:|---:|---:|---:|---:|")
    for name in args.names or NETWORKS:
        genome = stack(NETWORKS[name])
        config = TrainConfig(optimizer="adamw", lr=args.lr, batch_size=128, epochs=args.epochs, schedule="cosine",
                             seed=args.seed)
        start = time.time()
        result = train(genome, data, config)
        print(f"| {name} | {genome.params:,} | {genome.flops:,} | {100 * result.val_accuracy:.2f}% | "
              f"{100 * result.test_accuracy:.2f}% | {time.time() - start:.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
