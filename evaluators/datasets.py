"""Datasets for the search: a validated spec, seeded disjoint splits, train-only normalization, nothing downloaded."""
from __future__ import annotations

import hashlib
import json
import math
import os
import random
import zipfile
from dataclasses import dataclass, replace
from importlib import metadata
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from evaluators import readers
from evaluators.cache_files import write_atomically
from evaluators.errors import DatasetError
from evaluators.specs import DATASET_NAMES, DataSpec, parse_dataset_spec

__all__ = ["DATASET_NAMES", "DataSpec", "Splits", "load_dataset", "parse_dataset_spec", "feature_permutation",
           "fit_normalization", "stratified_holdout", "stratified_subset"]

TEST_FRACTION = 0.2  # digits and synthetic have no test split: hold out this share
TEST_HOLDOUT_SEED = 0  # fixed, so every split seed is scored on the same test set
SYNTHETIC_SNR = 8.0  # squared norm of each class pattern against unit noise: learnable, not trivial


@dataclass
class Splits:
    """Train/val/test tensors ready for a model: inputs = permute((pixels * pixel_scale - mean) / std)."""

    spec: DataSpec
    x_train: torch.Tensor  # float32 (N, *input_shape)
    y_train: torch.Tensor  # int64 (N,)
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    input_shape: tuple[int, ...]  # without batch dim: (F,) flat, (C, L) 1D, (C, H, W) 2D
    classes: list[str]
    normalization: dict  # mean/std from the train split only, already applied; see `fit_normalization`

    @property
    def num_classes(self) -> int:
        """How many classes the labels index."""
        return len(self.classes)


@dataclass
class _Source:
    """One dataset before splitting: train and test arrays as stored, and the factor that maps pixels to [0, 1]."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: list[str]
    pixel_scale: float = 1.0


def load_dataset(spec: str | dict | DataSpec, cache_dir: str | Path | None = None) -> Splits:
    """Load, split (val carved from train), normalize with train statistics, and optionally permute features."""
    spec = parse_dataset_spec(spec)
    source = _SOURCES[spec.name](spec, cache_dir)
    keep, held = stratified_holdout(source.y_train, spec.val_fraction, spec.seed, "val_fraction")
    if spec.train_samples is not None:
        keep = keep[stratified_subset(source.y_train[keep], spec.train_samples, spec.seed)]
    arrays = [_to_float(source.x_train[keep], source.pixel_scale), _to_float(source.x_train[held], source.pixel_scale),
              _to_float(source.x_test, source.pixel_scale)]
    input_shape = tuple(int(d) for d in arrays[0].shape[1:])
    per_channel = len(input_shape) > 1
    mean, std = fit_normalization(arrays[0], per_channel)
    positions = math.prod(input_shape) // mean.size
    for x in arrays:
        view = x.reshape(len(x), mean.size, positions)  # a view: every array is a fresh contiguous float32 copy
        view -= mean.astype(np.float32)[None, :, None]
        view /= std.astype(np.float32)[None, :, None]
    if spec.permute:
        order = feature_permutation(math.prod(input_shape), spec.permute_seed)
        arrays = [_permute_features(x, order) for x in arrays]
    normalization = {
        "mean": mean.tolist() if per_channel else float(mean[0]),
        "std": std.tolist() if per_channel else float(std[0]),
        "axis": "channel" if per_channel else "global",
        "pixel_scale": source.pixel_scale,
        "permute_seed": spec.permute_seed if spec.permute else None,
    }
    labels = [source.y_train[keep], source.y_train[held], source.y_test]
    x_train, x_val, x_test = (torch.from_numpy(np.ascontiguousarray(x)) for x in arrays)
    y_train, y_val, y_test = (torch.from_numpy(np.asarray(y, dtype=np.int64)) for y in labels)
    return Splits(spec, x_train, y_train, x_val, y_val, x_test, y_test, input_shape, list(source.classes),
                  normalization)


def stratified_holdout(labels: np.ndarray, fraction: float, seed: int, field: str) -> tuple[np.ndarray, np.ndarray]:
    """Seeded split into (kept, held) sorted indices; each class gives floor-spread `fraction` of its samples."""
    order = np.random.default_rng(seed).permutation(len(labels))
    order = order[np.argsort(labels[order], kind="stable")]  # grouped by class, shuffled within
    position = np.arange(len(labels))
    held = np.floor((position + 1) * fraction) > np.floor(position * fraction)  # every 1/fraction-th sample
    if held.all() or not held.any():
        raise DatasetError(f"dataset field {field!r}: {fraction} of {len(labels)} samples leaves an empty split")
    return np.sort(order[~held]), np.sort(order[held])


def training_part(data: Splits, count: int, field: str) -> Splits:
    """``data`` with its training split cut to a seeded, stratified ``count`` samples, the same part on every call
    (so every trial of a study sees the same one); validation and test untouched. ``field`` names it in errors."""
    available = len(data.y_train)
    if count >= available:
        raise DatasetError(f"{field}: {count:,} is not fewer than the {available:,} training samples (after "
                           "validation is carved out)")
    keep = stratified_subset(data.y_train.numpy(), count, data.spec.seed)
    return replace(data, x_train=data.x_train[keep], y_train=data.y_train[keep])


def stratified_subset(labels: np.ndarray, count: int, seed: int) -> np.ndarray:
    """Sorted indices of a seeded subset of exactly ``count`` samples, each class giving its share (floor-spread),
    so a study can trade training data for speed without changing validation or test."""
    if count > len(labels):
        raise DatasetError(f"dataset field 'train_samples': {count} is more than the {len(labels)} training samples "
                           "left after validation is carved out")
    order = np.random.default_rng([seed, 1]).permutation(len(labels))
    order = order[np.argsort(labels[order], kind="stable")]  # grouped by class, shuffled within
    position = np.arange(len(labels))
    picked = (position + 1) * count // len(labels) > position * count // len(labels)  # exactly `count`, spread
    return np.sort(order[picked])


def fit_normalization(x: np.ndarray, per_channel: bool) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std over (samples, positions) per channel (axis 1), or one global pair; std 0 becomes 1."""
    grouped = x.reshape(len(x), x.shape[1] if per_channel else 1, -1)
    total = np.zeros(grouped.shape[1])
    squares = np.zeros(grouped.shape[1])
    for start in range(0, len(grouped), 4096):  # float64 sums in chunks: no full-size float64 copy
        chunk = grouped[start:start + 4096].astype(np.float64)
        total += chunk.sum(axis=(0, 2))
        squares += np.square(chunk).sum(axis=(0, 2))
    count = grouped.shape[0] * grouped.shape[2]
    mean = total / count
    std = np.sqrt(np.maximum(squares / count - mean**2, 0.0))
    return mean, np.where(std < 1e-8, 1.0, std)


def feature_permutation(num_features: int, seed: int) -> np.ndarray:
    """The fixed order applied to flattened features when `permute` is set: RandomState(seed).permutation."""
    return np.random.RandomState(seed).permutation(num_features)


def _permute_features(x: np.ndarray, order: np.ndarray) -> np.ndarray:
    """`x` with its flattened features reordered by `order`, same shape; row chunks keep the gather in cache."""
    flat = x.reshape(len(x), -1)
    out = np.empty_like(flat)
    for start in range(0, len(flat), 1024):
        np.take(flat[start:start + 1024], order, axis=1, out=out[start:start + 1024])
    return out.reshape(x.shape)


def _to_float(x: np.ndarray, scale: float) -> np.ndarray:
    """A fresh contiguous float32 copy of `x` times `scale`."""
    out = np.array(x, dtype=np.float32, copy=True, order="C")
    if scale != 1.0:
        out *= np.float32(scale)
    return out


# --- sources -----------------------------------------------------------------------------------------------------

def default_cache_dir() -> Path:
    """$NAS_CACHE_DIR, else ~/.cache/nas-explorer."""
    return Path(os.environ.get("NAS_CACHE_DIR") or Path.home() / ".cache" / "nas-explorer").expanduser()


def _mnist1d(spec: DataSpec, cache_dir: str | Path | None) -> _Source:
    """MNIST-1D generated locally by the mnist1d package (never downloaded), cached as .npz."""
    key = {"name": "mnist1d", "num_samples": spec.num_samples, "seed": spec.seed, "length": spec.length,
           "generator": metadata.version("mnist1d")}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    folder = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    cache_file = folder / f"mnist1d-{digest}.npz"
    data = _read_cache(cache_file)
    if data is None:
        data = _generate_mnist1d(spec)
        _write_cache(cache_file, data)
    return _Source(data["x"], data["y"], data["x_test"], data["y_test"], [str(d) for d in range(10)])


def _generate_mnist1d(spec: DataSpec) -> dict[str, np.ndarray]:
    """Run mnist1d's `make_dataset` with the spec's size, seed and length, leaving global RNG state untouched."""
    from mnist1d.data import get_dataset_args, make_dataset  # imports matplotlib: load only when generating

    args = get_dataset_args()
    args.num_samples, args.seed, args.final_seq_length = spec.num_samples, spec.seed, spec.length
    py_state, np_state = random.getstate(), np.random.get_state()
    try:
        data = make_dataset(args)  # seeds numpy's global RNG itself
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
    return {"x": np.asarray(data["x"], np.float32), "y": np.asarray(data["y"], np.int64),
            "x_test": np.asarray(data["x_test"], np.float32), "y_test": np.asarray(data["y_test"], np.int64)}


def _read_cache(path: Path) -> dict[str, np.ndarray] | None:
    """The cached arrays, or None when absent or unreadable (it is then regenerated and overwritten)."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {key: archive[key] for key in ("x", "y", "x_test", "y_test")}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None


def _write_cache(path: Path, data: dict[str, np.ndarray]) -> None:
    """Write the arrays atomically so concurrent runs never read half a file."""
    write_atomically(path, lambda handle: np.savez(handle, **data))


def _digits(spec: DataSpec, cache_dir: str | Path | None) -> _Source:
    """scikit-learn's bundled 8x8 digits (1797 images, values 0..16) with a fixed stratified 20% test split."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = bunch.images.reshape(-1, 1, 8, 8)
    y = np.asarray(bunch.target, dtype=np.int64)
    keep, held = stratified_holdout(y, TEST_FRACTION, TEST_HOLDOUT_SEED, "test split")
    return _Source(x[keep], y[keep], x[held], y[held], [str(d) for d in range(10)], pixel_scale=1 / 16)


def _synthetic(spec: DataSpec, cache_dir: str | Path | None) -> _Source:
    """Seeded Gaussian classes: x = pattern[y] + N(0, 1), ||pattern||^2 = SYNTHETIC_SNR; 20% held out as test."""
    rng = np.random.default_rng(spec.seed)
    features = math.prod(spec.shape)
    patterns = rng.normal(size=(spec.classes, features)) * math.sqrt(SYNTHETIC_SNR / features)
    y = rng.permutation(np.arange(spec.samples) % spec.classes).astype(np.int64)
    x = (patterns[y] + rng.normal(size=(spec.samples, features))).reshape(spec.samples, *spec.shape)
    keep, held = stratified_holdout(y, TEST_FRACTION, TEST_HOLDOUT_SEED, "samples")
    return _Source(x[keep], y[keep], x[held], y[held], [f"class_{i}" for i in range(spec.classes)])


def _from_files(read: Callable[[str | None, str], readers.ImageArrays]) -> Callable[..., _Source]:
    """A source that reads uint8 images from `spec.path` and scales them by 1/255."""
    def source(spec: DataSpec, cache_dir: str | Path | None) -> _Source:
        arrays = read(spec.path, spec.name)
        return _Source(arrays.x_train, arrays.y_train, arrays.x_test, arrays.y_test, arrays.classes, 1 / 255)
    return source


_SOURCES: dict[str, Callable[[DataSpec, str | Path | None], _Source]] = {
    "mnist1d": _mnist1d,
    "digits": _digits,
    "synthetic": _synthetic,
    "cifar10": _from_files(readers.read_cifar),
    "cifar100": _from_files(readers.read_cifar),
    "mnist": _from_files(readers.read_idx_dataset),
    "fashion-mnist": _from_files(readers.read_idx_dataset),
}
