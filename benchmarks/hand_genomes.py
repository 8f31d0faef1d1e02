"""Does the conv2d space hold small genomes that the search missed? Hand-built conv-pool stacks under a tenth of
LeNet-5's 61,684 parameters, trained the way ``studies/fashion-tenth*.yaml`` train a trial.

Usage: ``python benchmarks/hand_genomes.py [NAME ...] [--epochs 12] [--lr 5e-3] [--seeds 0] [--full]``

Each network is a stack of stages (a conv-like op without bias, BatchNorm, ReLU, optionally 2x2 max pooling) with
a global-average-pool head, so each is a genome the ``conv2d`` preset can draw (stride 2 drawn with
``downsample: pool``). Data: Fashion-MNIST as the studies read it (15,000 training images, 10% of the training split
for validation, seed 42); AdamW, batch 128, cosine schedule. Prints validation and test accuracy after the last
epoch (nothing is selected: the networks are fixed in advance).

``--full`` trains as ``nas findings --final`` retrains a pick: on all 60,000 training images (train+val), test
accuracy only, once per seed; ``lenet5`` (the zoo's) may be named beside the stacks, for a side-by-side at one lr.
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
from nas.study.final import train_plus_val  # noqa: E402
from search_space.zoo import get_zoo  # noqa: E402
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


def network(name: str) -> Genome:
    """A stack of :data:`NETWORKS`, or ``lenet5`` from the zoo."""
    return get_zoo("lenet5").build() if name == "lenet5" else stack(NETWORKS[name])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help=f"networks to train (default: all): {', '.join(NETWORKS)}, lenet5")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--lr", type=float, default=5e-3)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--full", action="store_true", help="train on all of train+val; report test only")
    args = parser.parse_args(argv)
    unknown = [name for name in args.names if name not in NETWORKS and name != "lenet5"]
    if unknown:
        parser.error(f"unknown network {unknown[0]!r}; valid: {', '.join(NETWORKS)}, lenet5")
    torch.set_num_threads(2)
    if args.full:
        data = train_plus_val(load_dataset({k: v for k, v in DATA.items() if k != "train_samples"}))
    else:
        data = load_dataset(DATA)
    print(f"{len(data.x_train):,} training images, {args.epochs} epochs, lr {args.lr:g}")
    print("| network | params | multiply-adds | seed | val | test | seconds |\n|---|---:|---:|---:|---:|---:|---:|")
    for name in args.names or NETWORKS:
        genome = network(name)
        for seed in args.seeds:
            config = TrainConfig(optimizer="adamw", lr=args.lr, batch_size=128, epochs=args.epochs,
                                 schedule="cosine", seed=seed)
            start = time.time()
            result = train(genome, data, config, evaluate_test=True)
            val = "-" if args.full else f"{100 * result.val_accuracy:.2f}%"
            print(f"| {name} | {genome.params:,} | {genome.flops:,} | {seed} | {val} | "
                  f"{100 * result.test_accuracy:.2f}% | {time.time() - start:.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
