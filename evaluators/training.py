"""Trains one genome on one dataset's splits: a loop you can read in one screen, val after every epoch.

The search drives early stopping through ``callback(EpochReport) -> True`` (stop); the trial's result is
plain data (``TrainResult.to_dict()``) plus the trained model. On CPU a run is deterministic: the model is
built after ``torch.manual_seed(seed)`` and every epoch's data order comes from a generator seeded from
``(seed, epoch)``, so the same genome, data and seed give the same numbers to the last digit.
"""
from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from search_space import Genome, build_model

if TYPE_CHECKING:
    from evaluators.datasets import Splits

OPTIMIZERS = ("adamw", "sgd")
SCHEDULES = ("constant", "cosine", "onecycle")
DEVICES = ("cpu", "cuda", "auto")
INITS = ("default", "lsuv")


@dataclass
class TrainConfig:
    """How one trial trains; every field is JSON-able so a study can store it."""

    optimizer: str = "adamw"        # adamw | sgd (sgd uses momentum, nesterov off)
    lr: float = 1e-2                # peak learning rate (onecycle warms up to it)
    weight_decay: float = 0.0       # decoupled for adamw, L2 for sgd
    momentum: float = 0.9           # sgd only
    batch_size: int = 128           # every step sees exactly this many samples (the remainder rotates)
    epochs: int = 10
    schedule: str = "constant"      # constant | cosine | onecycle (stepped per batch)
    label_smoothing: float = 0.0
    mixup: float = 0.0              # Beta(alpha, alpha) mixup alpha; 0 = off
    seed: int = 0
    threads: int | None = None      # torch.set_num_threads for this trial; None = leave as is
    device: str = "cpu"             # cpu | cuda | auto (cuda when available)
    init: str = "default"           # default | lsuv (search_space.layers.lsuv_init on one train batch)
    trial_timeout_s: float | None = None   # stop with reason 'timeout' when exceeded (checked per batch)

    def __post_init__(self) -> None:
        for name, valid in (("optimizer", OPTIMIZERS), ("schedule", SCHEDULES), ("device", DEVICES),
                            ("init", INITS)):
            if getattr(self, name) not in valid:
                raise ValueError(f"TrainConfig.{name} must be one of {', '.join(valid)}, got {getattr(self, name)!r}")
        checks = [("lr", self.lr > 0, "> 0"), ("batch_size", self.batch_size >= 1, ">= 1"),
                  ("epochs", self.epochs >= 0, ">= 0"), ("weight_decay", self.weight_decay >= 0, ">= 0"),
                  ("label_smoothing", 0 <= self.label_smoothing < 1, "in [0, 1)"),
                  ("mixup", self.mixup >= 0, ">= 0"),
                  ("threads", self.threads is None or self.threads >= 1, ">= 1 or None"),
                  ("trial_timeout_s", self.trial_timeout_s is None or self.trial_timeout_s > 0, "> 0 or None")]
        for name, ok, rule in checks:
            if not ok:
                raise ValueError(f"TrainConfig.{name} must be {rule}, got {getattr(self, name)!r}")


@dataclass
class EpochReport:
    """What the callback sees after each epoch; ``epoch`` counts epochs completed (1-based)."""

    epoch: int
    train_loss: float
    val_loss: float
    val_accuracy: float
    elapsed_s: float                # since the trial started
    ended_at: float = 0.0           # wall clock (time.time()) when its validation ended; 0 when simulated
    threads: int = 0                # torch.get_num_threads() while this epoch trained; 0 when simulated
    epoch_s: float = 0.0            # this epoch's own training pass and validation (no model build, no start-up)

    def to_dict(self) -> dict:
        return {f.name: _json_number(getattr(self, f.name)) for f in fields(self)}


@dataclass
class TrainResult:
    """One trial's outcome; ``to_dict()`` is JSON-able (non-finite floats become None) and leaves out the model."""

    val_accuracy: float
    val_loss: float
    test_accuracy: float | None     # None: not asked for, or the fit stopped early
    test_loss: float | None
    params: int
    flops: int
    latency_ms: float
    train_time_s: float
    epochs: int                     # epochs completed, counting start_epoch
    curve: list[dict]               # EpochReport.to_dict() per epoch
    stopped: str | None             # None (ran all epochs) | 'callback' | 'nan' | 'timeout'
    reason: str | None              # human one-liner for stopped
    model: nn.Module = field(repr=False, compare=False)   # trained, on CPU, eval mode
    val_samples: int = 0            # what val_accuracy was measured on (its standard error needs it)

    def to_dict(self) -> dict:
        return {f.name: _json_number(getattr(self, f.name)) for f in fields(self) if f.name != "model"}


def _json_number(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value


# -- small pure helpers ---------------------------------------------------------------------------
def resolve_device(name: str) -> torch.device:
    """1) 'cuda' must exist; 2) 'auto' is cuda when available; 3) otherwise cpu."""
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("TrainConfig.device is 'cuda' but torch.cuda.is_available() is False; use 'cpu' or 'auto'")
    if name == "cuda" or name == "auto" and torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """AdamW (Adam when weight_decay is 0) or SGD with momentum, nesterov off."""
    params = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay,
                           nesterov=False)


def lr_factor(schedule: str, step: int, total_steps: int) -> float:
    """Multiplier of the peak lr at ``step`` of ``total_steps``, t = step / total_steps.

    1) constant: 1.  2) cosine: (1 + cos(pi t)) / 2.  3) onecycle (as torch's OneCycleLR, lr only): cosine
    from 1/25 up to 1 over the first 30% of steps, then cosine from 1 down to 1/25e4.
    """
    t = min(step / max(total_steps, 1), 1.0)
    if schedule == "constant":
        return 1.0
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * t))
    warm, start, end = 0.3, 1.0 / 25.0, 1.0 / 25e4
    if t < warm:
        return start + (1.0 - start) * 0.5 * (1.0 - math.cos(math.pi * t / warm))
    return end + (1.0 - end) * 0.5 * (1.0 + math.cos(math.pi * (t - warm) / (1.0 - warm)))


def make_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig, total_steps: int,
                   start_step: int = 0) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-batch schedule over ``total_steps``; ``start_step`` resumes it part-way (training from start_epoch)."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(config.schedule, start_step + step, total_steps))


def mixup_batch(x: torch.Tensor, y: torch.Tensor, alpha: float,
                generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
    """Mixup: ``lam * x + (1 - lam) * x[perm]`` with lam ~ Beta(alpha, alpha); returns (x, y, y[perm], lam).

    The partner order comes from ``generator``; lam from torch's global RNG (seeded per trial).
    """
    lam = float(torch.distributions.Beta(alpha, alpha).sample())
    perm = torch.randperm(len(x), generator=generator).to(x.device)
    return lam * x + (1.0 - lam) * x[perm], y, y[perm], lam


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """Data order of one epoch, from (seed, epoch) alone, so resuming at start_epoch sees the same order."""
    return torch.Generator().manual_seed(int(seed) * 1_000_003 + int(epoch))


@contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """``torch.set_num_threads(threads)`` inside the block, restored after; None leaves it as is."""
    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def check_compatible(genome: Genome, data: Splits) -> None:
    """The genome must read the dataset's input shape and emit one logit per class."""
    if tuple(genome.input_shape) != tuple(data.input_shape):
        raise ValueError(f"genome input shape {list(genome.input_shape)} does not match the dataset's "
                         f"input shape {list(data.input_shape)}")
    if genome.num_classes != data.num_classes:
        raise ValueError(f"genome has {genome.num_classes} outputs but the dataset has {data.num_classes} classes")
    if len(data.x_train) == 0:
        raise ValueError("the dataset's training split is empty")


# -- evaluation -----------------------------------------------------------------------------------
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1024,
             device: str | torch.device = "cpu") -> tuple[float, float]:
    """(accuracy, mean cross-entropy) of ``model`` on ``x, y`` in eval mode; the model's mode is restored."""
    if len(x) == 0:
        raise ValueError("evaluate needs at least one sample, got an empty split")
    was_training = model.training
    model.eval()
    correct, total_loss = 0, 0.0
    with torch.inference_mode():
        for start in range(0, len(x), batch_size):
            xb, yb = x[start:start + batch_size].to(device), y[start:start + batch_size].to(device)
            logits = model(xb)
            total_loss += float(F.cross_entropy(logits, yb, reduction="sum"))
            correct += int((logits.argmax(1) == yb).sum())
    model.train(was_training)
    return correct / len(x), total_loss / len(x)


def measure_latency_ms(model: nn.Module, input_shape: Sequence[int], repeats: int = 50, warmup: int = 5) -> float:
    """Median ms of single-sample CPU forward passes (eval mode, inference_mode) after ``warmup`` passes.

    Moves the model to the CPU (in place, like ``Module.to``) and restores its train/eval mode.
    """
    model.cpu()
    was_training = model.training
    model.eval()
    x = torch.randn(1, *input_shape)
    times = []
    with torch.inference_mode():
        for i in range(warmup + repeats):
            start = time.perf_counter()
            model(x)
            if i >= warmup:
                times.append((time.perf_counter() - start) * 1000.0)
    model.train(was_training)
    return statistics.median(times)


# -- the loop -------------------------------------------------------------------------------------
def train(genome: Genome, data: Splits, config: TrainConfig,
          callback: Callable[[EpochReport], bool | None] | None = None, evaluate_test: bool = True,
          start_epoch: int = 0, model: nn.Module | None = None) -> TrainResult:
    """Trains ``genome`` (or continues ``model``) on ``data`` from ``start_epoch`` to ``config.epochs``.

    Never raises for a diverging run: NaN/inf loss ends it with ``stopped='nan'``.
    """
    check_compatible(genome, data)
    if start_epoch < 0:
        raise ValueError(f"start_epoch must be >= 0, got {start_epoch}")
    device = resolve_device(config.device)
    with torch_threads(config.threads):
        return _train(genome, data, config, callback, evaluate_test, start_epoch, model, device)


def _train(genome, data, config, callback, evaluate_test, start_epoch, model, device) -> TrainResult:
    started = time.perf_counter()
    torch.manual_seed(config.seed)
    if model is None:
        pick = torch.randperm(len(data.x_train), generator=epoch_generator(config.seed, -1))[:config.batch_size]
        model = build_model(genome, init=config.init, batch=data.x_train[pick] if config.init == "lsuv" else None)
    layout = image_layout(data.input_shape)
    model.to(device, memory_format=layout)
    n, bs = len(data.x_train), min(config.batch_size, len(data.x_train))
    steps_per_epoch = n // bs                          # full batches only: BatchNorm never sees a batch of one
    optimizer = make_optimizer(model, config)
    scheduler = make_scheduler(optimizer, config, steps_per_epoch * config.epochs, steps_per_epoch * start_epoch)
    curve, stopped, reason = [], None, None
    epochs_done, final = start_epoch, None             # final: (val acc, val loss) of the model as it stands
    for epoch in range(start_epoch, config.epochs):
        # 1) one pass over the training data in this epoch's order
        epoch_started = time.perf_counter()
        model.train()
        generator = epoch_generator(config.seed, epoch)
        order = torch.randperm(n, generator=generator)
        losses = []
        for step in range(steps_per_epoch):
            if config.trial_timeout_s is not None and time.perf_counter() - started > config.trial_timeout_s:
                stopped, reason = "timeout", f"trial ran past its {config.trial_timeout_s:g} s limit in epoch {epoch + 1}"
                break
            idx = order[step * bs:(step + 1) * bs]
            x, y = data.x_train[idx].to(device, memory_format=layout), data.y_train[idx].to(device)
            loss = batch_loss(model, x, y, config, generator)
            if not torch.isfinite(loss):
                stopped, reason = "nan", (f"training loss became {loss.item()} in epoch {epoch + 1}, step {step + 1} "
                                          f"(lr {scheduler.get_last_lr()[0]:.3g})")
                break
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            losses.append(loss.item())
            final = None
        if stopped:
            break
        # 2) validate, report, let the callback stop us
        val_accuracy, val_loss = final = evaluate(model, data.x_val, data.y_val, device=device)
        epochs_done = epoch + 1
        now = time.perf_counter()
        report = EpochReport(epochs_done, statistics.fmean(losses) if losses else math.nan, val_loss, val_accuracy,
                             now - started, time.time(), torch.get_num_threads(), now - epoch_started)
        curve.append(report.to_dict())
        if not math.isfinite(val_loss):
            stopped, reason = "nan", f"validation loss became {val_loss} after epoch {epochs_done}"
            break
        if callback is not None and callback(report):
            stopped, reason = "callback", f"callback stopped training after epoch {epochs_done}"
            break
    train_time = time.perf_counter() - started
    # 3) final numbers: val (reused when fresh); test (only for reporting) and cost on the CPU only for a fit that
    # ran all its epochs: a stopped one's were thrown away, and a slow genome's pass over the test split cost as much
    # as 40-80 s after its stop (benchmarks/RESULTS.md "Peers (permuted-fashion-small, 15 minutes)")
    val_accuracy, val_loss = final or evaluate(model, data.x_val, data.y_val, device=device)
    test_accuracy, test_loss = evaluate(model, data.x_test, data.y_test, device=device) \
        if evaluate_test and stopped is None else (None, None)
    model.cpu().eval()
    return TrainResult(val_accuracy, val_loss, test_accuracy, test_loss, genome.params, genome.flops,
                       measure_latency_ms(model, data.input_shape) if stopped is None else math.nan,  # only full fits
                       train_time, epochs_done, curve, stopped,
                       reason, model, val_samples=len(data.y_val))


def image_layout(input_shape: tuple[int, ...]) -> torch.memory_format:
    """channels_last for images (C, H, W), else the default. Measured in one run on this project's 2-core Xeon: a
    training step of the studies' separable 5x5 genomes 1.5-1.9x faster, LeNet-5, Twist and grouped convs level
    (benchmarks/RESULTS.md, "Training throughput"); conv weights and batches then share the layout."""
    return torch.channels_last if len(input_shape) == 3 else torch.preserve_format


def batch_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, config: TrainConfig,
               generator: torch.Generator) -> torch.Tensor:
    """Cross-entropy with label smoothing; with mixup, the lam-weighted loss against both label sets."""
    if config.mixup > 0:
        x, y_a, y_b, lam = mixup_batch(x, y, config.mixup, generator)
        logits = model(x)
        return lam * F.cross_entropy(logits, y_a, label_smoothing=config.label_smoothing) + \
            (1.0 - lam) * F.cross_entropy(logits, y_b, label_smoothing=config.label_smoothing)
    return F.cross_entropy(model(x), y, label_smoothing=config.label_smoothing)
