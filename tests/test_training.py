"""The training loop: deterministic, stoppable by the callback, safe on divergence, honest in its result."""
from __future__ import annotations

import dataclasses
import json
import math
import time

import pytest
import torch

from evaluators.datasets import load_dataset
from evaluators.training import (
    EpochReport,
    TrainConfig,
    evaluate,
    lr_factor,
    measure_latency_ms,
    mixup_batch,
    train,
)
from search_space import Genome, get_zoo
from search_space.zoo import mlp

REPORT_KEYS = {"epoch", "train_loss", "val_loss", "val_accuracy", "elapsed_s", "ended_at", "threads", "epoch_s"}
RESULT_KEYS = {"val_accuracy", "val_loss", "test_accuracy", "test_loss", "params", "flops", "latency_ms",
               "train_time_s", "epochs", "curve", "stopped", "reason", "val_samples"}


@pytest.fixture(scope="module")
def data():
    return load_dataset({"name": "synthetic", "shape": [40], "classes": 4, "samples": 512})


@pytest.fixture(scope="module")
def genome(data) -> Genome:
    return mlp(data.input_shape, data.num_classes, [32]).validate()


def fast(**overrides) -> TrainConfig:
    return TrainConfig(**{"epochs": 2, "batch_size": 64, "threads": 1, **overrides})


def test_same_seed_gives_identical_results(data, genome):
    first, second = (train(genome, data, fast(epochs=3, mixup=0.2)) for _ in range(2))
    assert first.val_accuracy == second.val_accuracy and first.test_accuracy == second.test_accuracy
    assert [c["train_loss"] for c in first.curve] == [c["train_loss"] for c in second.curve]
    other = train(genome, data, fast(epochs=3, mixup=0.2, seed=1))
    assert [c["train_loss"] for c in other.curve] != [c["train_loss"] for c in first.curve]


def test_callback_sees_every_epoch_and_can_stop(data, genome):
    reports: list[EpochReport] = []
    before = time.time()
    result = train(genome, data, fast(epochs=5), callback=lambda r: reports.append(r) or r.epoch == 2)
    assert [r.epoch for r in reports] == [1, 2]
    assert before < reports[0].ended_at < reports[1].ended_at <= time.time()  # wall clock, for time-to-result plots
    assert all(set(r.to_dict()) == REPORT_KEYS for r in reports)
    assert result.stopped == "callback" and result.epochs == 2 and "epoch 2" in result.reason
    assert result.curve == [r.to_dict() for r in reports]
    assert result.val_accuracy == reports[-1].val_accuracy


def test_full_run_is_not_stopped(data, genome):
    result = train(genome, data, fast(epochs=2), callback=lambda r: None)
    assert result.stopped is None and result.reason is None and result.epochs == 2 and len(result.curve) == 2


@pytest.mark.parametrize("how", ["absurd lr", "nan features"])
def test_divergence_stops_with_nan_instead_of_raising(data, genome, how):
    if how == "absurd lr":
        result = train(genome, data, fast(epochs=5, optimizer="sgd", lr=1e6))
    else:
        broken = dataclasses.replace(data, x_train=torch.full_like(data.x_train, float("nan")))
        result = train(genome, broken, fast(epochs=5))
    assert result.stopped == "nan" and result.reason
    assert result.epochs < 5
    json.dumps(result.to_dict(), allow_nan=False)


def test_timeout_stops_the_trial(data, genome):
    result = train(genome, data, fast(epochs=1000, trial_timeout_s=0.3))
    assert result.stopped == "timeout" and "0.3 s" in result.reason
    assert result.epochs < 1000 and 0 <= result.val_accuracy <= 1


@pytest.mark.parametrize("overrides", [
    {"optimizer": "adamw", "schedule": "constant"},
    {"optimizer": "adamw", "schedule": "cosine", "weight_decay": 0.01},
    {"optimizer": "sgd", "schedule": "onecycle", "lr": 0.1},
    {"optimizer": "sgd", "schedule": "cosine", "label_smoothing": 0.1, "mixup": 0.4},
    {"init": "lsuv"},
], ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()))
def test_variants_train_one_epoch(data, genome, overrides):
    result = train(genome, data, fast(epochs=1, **overrides))
    assert result.stopped is None and result.epochs == 1
    assert math.isfinite(result.curve[0]["train_loss"]) and 0 <= result.val_accuracy <= 1


def test_lsuv_gives_unit_variance_first_layer(data):
    genome = get_zoo("mnist1d-cnn").build(data.input_shape, data.num_classes)
    result = train(genome, data, fast(epochs=0, init="lsuv"))
    captured = []
    result.model.conv0.register_forward_hook(lambda _m, _i, out: captured.append(out))
    with torch.no_grad():
        result.model(data.x_train[:64])
    assert abs(float(captured[0].std()) - 1.0) < 0.2


def test_result_is_json_and_counts_match_the_genome(data, genome):
    result = train(genome, data, fast(epochs=1))
    record = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert set(record) == RESULT_KEYS and "model" not in record and record["val_samples"] == len(data.y_val) > 0
    assert sum(p.numel() for p in result.model.parameters()) == genome.params  # the analytic count is the model's
    assert result.latency_ms > 0
    assert not result.model.training and next(result.model.parameters()).device.type == "cpu"


def test_evaluate_test_off_leaves_test_empty(data, genome):
    result = train(genome, data, fast(epochs=1), evaluate_test=False)
    assert result.test_accuracy is None and result.test_loss is None


def test_a_stopped_fit_does_not_read_the_test_split(data, genome):
    """Its result is thrown away; a pass over the test split cost a slow genome up to 80 s after its stop."""
    full = train(genome, data, fast(epochs=2))
    stopped = train(genome, data, fast(epochs=2), callback=lambda report: report.epoch == 1)
    assert full.test_accuracy is not None and stopped.stopped == "callback" and stopped.epochs == 1
    assert stopped.test_accuracy is None and stopped.test_loss is None and math.isnan(stopped.latency_ms)


def test_resume_continues_the_given_model(data, genome):
    first = train(genome, data, fast(epochs=1))
    resumed = train(genome, data, fast(epochs=3), start_epoch=1, model=first.model)
    assert [c["epoch"] for c in resumed.curve] == [2, 3] and resumed.epochs == 3
    assert resumed.model is first.model


def test_mismatched_genome_is_a_clear_error(data):
    with pytest.raises(ValueError, match="input shape"):
        train(mlp((20,), 4, [8]).validate(), data, fast())


def test_cuda_without_cuda_is_a_clear_error(data, genome):
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(ValueError, match="cuda"):
        train(genome, data, fast(device="cuda"))


@pytest.mark.parametrize("field,value", [("optimizer", "adam"), ("schedule", "step"), ("lr", 0.0), ("init", "xavier")])
def test_bad_config_names_the_field(field, value):
    with pytest.raises(ValueError, match=f"TrainConfig.{field}"):
        TrainConfig(**{field: value})


@pytest.mark.parametrize("schedule", ["constant", "cosine", "onecycle"])
def test_schedules_peak_at_the_configured_lr(schedule):
    factors = [lr_factor(schedule, step, 100) for step in range(101)]
    assert max(factors) == pytest.approx(1.0, abs=1e-3) and min(factors) >= 0
    if schedule != "constant":
        assert factors[-1] < 1e-3


def test_mixup_mixes_pairs_with_one_lambda():
    x, y = torch.arange(8.0).view(4, 2), torch.arange(4)
    mixed, y_a, y_b, lam = mixup_batch(x, y, 0.4, torch.Generator().manual_seed(0))
    assert 0 <= lam <= 1 and torch.equal(y_a, y) and sorted(y_b.tolist()) == [0, 1, 2, 3]
    assert torch.allclose(mixed, lam * x + (1 - lam) * x[y_b])


def test_evaluate_and_latency_on_a_fixed_model():
    model = torch.nn.Linear(3, 2)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0, 0, 0], [0, 1.0, 0]]))
        model.bias.zero_()
    x = torch.tensor([[2.0, 0, 0], [0, 2.0, 0], [2.0, 0, 0]])
    accuracy, loss = evaluate(model, x, torch.tensor([0, 1, 1]), batch_size=2)
    assert accuracy == pytest.approx(2 / 3) and loss > 0
    assert measure_latency_ms(model, (3,), repeats=5) > 0 and model.training


def test_zoo_cnn_learns_mnist1d(tmp_path):
    data = load_dataset("mnist1d", cache_dir=tmp_path)
    genome = get_zoo("mnist1d-cnn").build(data.input_shape, data.num_classes)
    result = train(genome, data, TrainConfig(lr=1e-2, batch_size=100, epochs=5, threads=1))
    assert result.val_accuracy > 0.5, result.curve


def test_images_train_in_channels_last_and_flat_features_in_the_default_layout():
    """Convs on images train in channels_last (faster on this project's CPUs: benchmarks/RESULTS.md)."""
    from evaluators.training import image_layout
    from search_space import get_zoo
    assert image_layout((1, 40)) == torch.preserve_format and image_layout((40,)) == torch.preserve_format
    images = load_dataset({"name": "synthetic", "shape": [1, 28, 28], "classes": 10, "samples": 300})
    result = train(get_zoo("lenet5").build(images.input_shape, 10), images, TrainConfig(epochs=1, batch_size=64))
    convs = [m.weight for m in result.model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(w.is_contiguous(memory_format=torch.channels_last) for w in convs)
    assert not all(w.is_contiguous() for w in convs)  # one input channel is both layouts; six are not
    assert result.stopped is None and 0.0 <= result.val_accuracy <= 1.0
