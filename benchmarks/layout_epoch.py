"""One epoch of ``evaluators.training.train`` in the trainer's image layout (channels_last) against the default
layout, side by side, for genomes stored in a study (2D Fashion-MNIST genomes).

Usage: ``python benchmarks/layout_epoch.py --storage URL --study NAME --trials N [N ...] [--images 6000]``

Each genome trains one epoch (1 thread, batch 128, AdamW, cosine) on a fixed, stratified part of Fashion-MNIST's
training split, twice per layout, the layouts alternated; the ratio is default / channels_last of the faster run
of each (> 1: channels_last wins).
"""
from __future__ import annotations

import argparse

import optuna
import torch

import evaluators.training as training
from evaluators.datasets import load_dataset, training_part
from search_space import Genome


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--storage", required=True)
    parser.add_argument("--study", required=True)
    parser.add_argument("--trials", type=int, nargs="+", required=True)
    parser.add_argument("--images", type=int, default=6000)
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    data = load_dataset({"name": "fashion-mnist", "val_fraction": 0.1, "seed": 42})
    data = training_part(data, args.images, "--images")
    study = optuna.load_study(study_name=args.study, storage=args.storage)
    config = training.TrainConfig(epochs=1, threads=1, lr=0.01, schedule="cosine")
    layouts = {"channels_last": training.image_layout, "default": lambda shape: torch.preserve_format}
    print("| trial | params | channels_last epoch (s) | default epoch (s) | default / channels_last |")
    print("|---:|---:|---:|---:|---:|")
    try:
        for number in args.trials:
            genome = Genome.from_json(study.trials[number].user_attrs["genome"])
            times = {name: [] for name in layouts}
            for order in (("channels_last", "default"), ("default", "channels_last")):
                for name in order:
                    training.image_layout = layouts[name]  # the trainer reads its layout from here
                    times[name].append(training.train(genome, data, config, evaluate_test=False).train_time_s)
            last, default = min(times["channels_last"]), min(times["default"])
            print(f"| {number} | {genome.params:,} | {last:.2f} | {default:.2f} | {default / last:.2f} |", flush=True)
    finally:
        training.image_layout = layouts["channels_last"]


if __name__ == "__main__":
    main()
