"""A stand-in for training that costs nothing: ``nas run --simulate`` measures the search machinery with it.

The learning curve is a deterministic function of the genome (its canonical key and size) and the training values
that define a trial (lr, weight decay; not the seed, as for twins): no torch training, no sleep. Bigger genomes
reach higher, a hash of the key spreads genomes of one size, and the curve rises with epochs and saturates, so
rung decisions, the Pareto front and the samplers have something real-looking to work on.
"""
from __future__ import annotations

import hashlib
import math
from typing import Callable

from torch import nn

from evaluators.datasets import Splits
from evaluators.training import EpochReport, TrainConfig, TrainResult
from search_space import Genome

SIMULATED_LATENCY_MS_PER_MFLOP = 0.01  # a latency that grows with the genome's multiply-adds
SIMULATED_MACS_PER_S = 1e9  # an epoch's simulated seconds: forward and backward (3x the forward) over the training set


def unit_hash(*parts: object) -> float:
    """A number in [0, 1) fixed by ``parts``."""
    digest = hashlib.sha256(":".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def simulated_accuracy(genome: Genome, config: TrainConfig, epoch: int, classes: int, key: str | None = None) -> float:
    """Validation accuracy after ``epoch`` epochs: chance at 0, rising to a ceiling set by size and the hash
    (``key``: the genome's canonical key, when the caller has it)."""
    chance = 1.0 / classes
    key = key or genome.key()
    size = 1.0 - 1.0 / (1.0 + genome.params / 3000.0)  # 0 for no parameters, towards 1 for big networks
    luck = unit_hash(key, f"{config.lr:.6g}", f"{config.weight_decay:.6g}")
    ceiling = chance + (0.97 - chance) * size * (0.75 + 0.25 * luck)
    pace = 1.5 + 4.0 * unit_hash(key, "pace")  # epochs to reach ~63% of the ceiling
    return chance + (ceiling - chance) * (1.0 - math.exp(-epoch / pace))


def simulated_epoch_s(genome: Genome, train_samples: int) -> float:
    """Seconds an epoch of ``genome`` would take on a machine doing ``SIMULATED_MACS_PER_S`` multiply-adds: what
    the slow-trial rule (``pruner.max_slowdown``) reads; no clock is involved."""
    return 3 * genome.flops * train_samples / SIMULATED_MACS_PER_S


def simulated_train(genome: Genome, data: Splits, config: TrainConfig,
                    callback: Callable[[EpochReport], bool | None] | None = None, evaluate_test: bool = True,
                    start_epoch: int = 0, model: nn.Module | None = None) -> TrainResult:
    """What ``evaluators.training.train`` returns, from the synthetic curve; the callback sees every epoch."""
    classes, key, epoch_s = data.num_classes, genome.key(), simulated_epoch_s(genome, len(data.y_train))
    curve, stopped, reason, epochs_done = [], None, None, start_epoch
    for epoch in range(start_epoch + 1, config.epochs + 1):
        accuracy = simulated_accuracy(genome, config, epoch, classes, key)
        # simulated seconds and no wall clock (ended_at 0): the same genome gives the same curve every run
        report = EpochReport(epoch, 1.0 - accuracy, 1.0 - accuracy, accuracy, epoch_s * (epoch - start_epoch),
                             epoch_s=epoch_s)
        curve.append(report.to_dict())
        epochs_done = epoch
        if callback is not None and callback(report):
            stopped, reason = "callback", f"callback stopped training after epoch {epoch}"
            break
    accuracy = simulated_accuracy(genome, config, epochs_done, classes, key)
    test = accuracy - 0.01 * unit_hash(key, "test") if evaluate_test else None
    return TrainResult(accuracy, 1.0 - accuracy, test, None if test is None else 1.0 - test, genome.params,
                       genome.flops, SIMULATED_LATENCY_MS_PER_MFLOP * genome.flops / 1e6,
                       epoch_s * (epochs_done - start_epoch), epochs_done, curve,
                       stopped, reason, nn.Identity(), val_samples=len(data.y_val))
