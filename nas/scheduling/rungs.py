"""The rung rule as the backends ask it: gather the rung's records from the storage, rank them, give a verdict.

The ranking itself is ``nas.scheduling.pareto.rung_survivors``, a pure function; every backend's trials call
:func:`rung_verdict` (through ``nas.execution.trial.EpochRecorder``) and nothing else. The slow-trial rule
(``pruner.max_slowdown``) is here too: :func:`slow_verdict` after a trial's first epoch, its arithmetic
:func:`slowdown`.
"""
from __future__ import annotations

import statistics
from typing import Mapping

import optuna

from nas.scheduling.pareto import oriented, rung_survivors
from nas.study.config import Objective, StudyConfig
from nas.study.ledger import ledger


RUNG_METRICS = ("params", "flops")  # known before training, the same for every trial at a rung
SCREEN_RUNG = 0  # the rung key of ``pruner.screen`` (``rung_0``): before epoch 1 of the full fit, on less data
SLOW_PEERS = 4  # other trials' first epochs the slow-trial rule needs before it judges
SLOW_MIN_EXCESS_S = 0.5  # and a first epoch at least this much over their median: milliseconds of noise never stop one


def rung_metrics(genome) -> dict[str, float]:
    """The genome's ``RUNG_METRICS``: what a rung ranks beside the accuracy, known before training."""
    return {name: getattr(genome, name) for name in RUNG_METRICS}


def rung_point(val_accuracy: float, metrics: Mapping[str, float], objectives: list[Objective]) -> tuple:
    """(accuracy at the rung, the analytic objectives) oriented to maximize.

    Objectives measured after training (``latency_ms``) are left out: at a rung they exist only for finished
    trials, and a latency measured while other workers train is not comparable anyway.
    """
    ranked = [objectives[0], *(o for o in objectives[1:] if o.metric in RUNG_METRICS)]
    values = [val_accuracy, *(float(metrics[o.metric]) for o in ranked[1:])]
    return oriented(values, [o.direction for o in ranked])


def rung_records(study: optuna.Study, epoch: int, objectives: list[Objective], exclude: int) -> dict[int, tuple]:
    """The rung point of every trial that reached rung ``epoch`` (running, complete or pruned), but trial
    ``exclude``; finished trials' points come from the study's ledger, computed once."""
    key = tuple((o.metric, o.direction) for o in objectives)
    return ledger(study).rung_points(epoch, exclude, key,
                                     lambda accuracy, metrics: rung_point(accuracy, metrics, objectives))


def rung_verdict(study: optuna.Study, config: StudyConfig, number: int, epoch: int, val_accuracy: float,
                 metrics: Mapping[str, float]) -> str | None:
    """Why trial ``number`` stops at rung ``epoch`` (``SCREEN_RUNG``: the screen), or None if it continues.

    It continues when ``rung_survivors`` (top ``ceil(n / reduction_factor)`` by Pareto rank; the screen's own factor
    at the screen) keeps it among the ``n`` trials that reached the rung: the others' ``rung_<E>`` records plus its
    own ``val_accuracy``.
    """
    records = rung_records(study, epoch, config.objectives, number)
    records[number] = rung_point(val_accuracy, metrics, config.objectives)
    factor = config.pruner.screen_factor if epoch == SCREEN_RUNG else config.pruner.reduction_factor
    if number in rung_survivors(records, factor, config.pruner.floor):
        return None
    where = "screen" if epoch == SCREEN_RUNG else f"rung at epoch {epoch}"
    return f"{where}: not in the top 1/{factor} of {len(records)} trials by Pareto rank"


def slowdown(seconds: float, others: list[float], limit: float) -> float | None:
    """``seconds / median(others)`` when that breaks ``limit`` (and by ``SLOW_MIN_EXCESS_S``), else None; None too
    before ``SLOW_PEERS`` others. The slow-trial rule's arithmetic, which benchmarks/slow_trials.py replays."""
    if len(others) < SLOW_PEERS:
        return None
    median = statistics.median(others)
    if median <= 0 or seconds <= max(limit * median, median + SLOW_MIN_EXCESS_S):
        return None
    return seconds / median


def slow_verdict(study: optuna.Study, config: StudyConfig, number: int, seconds: float,
                 setup: str) -> tuple[str, float] | None:
    """Why trial ``number``, whose first epoch took ``seconds`` on ``setup`` (device and threads: only the first
    epochs of the study's other trials on the same are compared), stops there for being slow, and how far it breaks
    ``pruner.max_slowdown`` (``slowdown / max_slowdown - 1``, the constraint violation its sampler is told); None
    when it goes on.

    On a wall-clock budget a trial many times slower per epoch than the study's median costs many others' places;
    replayed on kept runs, the trials this rule stops took 16-46% of the training time and held almost none of
    the final front (benchmarks/RESULTS.md "Slow trials (permuted-fashion-small, replayed)"). A first epoch less
    than ``SLOW_MIN_EXCESS_S`` over the median is never slow, whatever the ratio: on tiny data a hiccup of the
    machine is many times an epoch.
    """
    limit = config.pruner.max_slowdown
    if limit is None or config.pruner.name == "none":
        return None
    others = ledger(study).first_epochs(number, setup)
    ratio = slowdown(seconds, others, limit)
    if ratio is None:
        return None
    return (f"slow: first epoch {seconds:.2f} s, {ratio:.1f}x the median of {len(others)} trials "
            f"({seconds / ratio:.2f} s; pruner.max_slowdown {limit:g})", ratio / limit - 1)
