"""Datasets: spec parsing, real loaders (generated, bundled and tiny files in the real formats), splits, errors."""
from __future__ import annotations

import gzip
import json
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from evaluators.datasets import (DATASET_NAMES, DataSpec, Splits, feature_permutation, load_dataset,
                                 parse_dataset_spec)
from evaluators.errors import DatasetError
from evaluators.readers import FASHION_CLASSES, IDX_FILES


def _rows(x: torch.Tensor) -> set[bytes]:
    """Each sample's bytes, to compare splits as sets."""
    return {row.tobytes() for row in x.reshape(len(x), -1).numpy()}


def _unnormalize(x: torch.Tensor, splits: Splits) -> np.ndarray:
    """Undo the recorded normalization (no permutation): back to pixels in [0, 1]."""
    mean = np.asarray(splits.normalization["mean"], dtype=np.float64).reshape(-1, *[1] * (x.dim() - 2))
    std = np.asarray(splits.normalization["std"], dtype=np.float64).reshape(mean.shape)
    return x.numpy().astype(np.float64) * std + mean


def _one_line_error(excinfo: pytest.ExceptionInfo, *needles: str) -> str:
    """The error's message, checked to be one line that contains every needle."""
    message = str(excinfo.value)
    assert "\n" not in message
    for needle in needles:
        assert needle in message, f"{needle!r} not in {message!r}"
    return message


# --- mnist1d -------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def mnist1d(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """MNIST-1D generated once into a fresh cache folder, with the global numpy RNG state around it."""
    cache_dir = tmp_path_factory.mktemp("cache")
    before = np.random.get_state()[1].copy()
    splits = load_dataset("mnist1d", cache_dir=cache_dir)
    return {"splits": splits, "cache_dir": cache_dir, "rng_untouched": np.array_equal(before, np.random.get_state()[1])}


def test_mnist1d_default_spec_is_the_papers_4000_1000_split(mnist1d):
    splits = mnist1d["splits"]
    assert len(splits.x_train) + len(splits.x_val) == 4000
    assert len(splits.x_val) == 800
    assert len(splits.x_test) == 1000
    assert splits.input_shape == (40,) and splits.x_train.shape[1:] == (40,)
    assert splits.num_classes == 10 and set(splits.y_test.tolist()) == set(range(10))
    assert splits.x_train.dtype == torch.float32 and splits.y_train.dtype == torch.int64
    assert mnist1d["rng_untouched"], "generating mnist1d must not reseed numpy's global RNG"


def test_mnist1d_second_load_hits_the_cache(mnist1d):
    (cache_file,) = Path(mnist1d["cache_dir"]).glob("mnist1d-*.npz")
    stamp = os.stat(cache_file).st_mtime_ns
    again = load_dataset(DataSpec("mnist1d"), cache_dir=mnist1d["cache_dir"])
    assert os.stat(cache_file).st_mtime_ns == stamp  # read, not regenerated and rewritten
    for name in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test"):
        assert torch.equal(getattr(again, name), getattr(mnist1d["splits"], name))


def test_permuted_mnist1d_is_a_fixed_column_permutation(mnist1d):
    plain = mnist1d["splits"]
    permuted = load_dataset("mnist1d:permute", cache_dir=mnist1d["cache_dir"])
    order = torch.from_numpy(feature_permutation(40, 0))
    for name in ("x_train", "x_val", "x_test"):
        a, b = getattr(plain, name), getattr(permuted, name)
        assert not torch.equal(a, b)
        assert torch.equal(b, a[:, order])
        assert torch.equal(b.sort(dim=1).values, a.sort(dim=1).values)
    assert torch.equal(plain.y_train, permuted.y_train) and permuted.input_shape == (40,)
    assert permuted.normalization["permute_seed"] == 0 and plain.normalization["permute_seed"] is None


def test_mnist1d_splits_are_disjoint_and_train_normalized(mnist1d):
    splits = mnist1d["splits"]
    train, val, test = _rows(splits.x_train), _rows(splits.x_val), _rows(splits.x_test)
    assert len(train) == len(splits.x_train)
    assert not train & val and not train & test and not val & test
    assert abs(splits.x_train.mean().item()) < 1e-4 and abs(splits.x_train.std().item() - 1) < 1e-3
    assert isinstance(splits.normalization["mean"], float)


# --- bundled and synthetic -----------------------------------------------------------------------------------

def test_digits_shape_fixed_test_split_and_seeded_val():
    splits = load_dataset("digits")
    assert splits.input_shape == (1, 8, 8) and splits.num_classes == 10
    assert len(splits.x_train) + len(splits.x_val) + len(splits.x_test) == 1797
    assert len(splits.x_test) == 359  # a stratified 20% holdout
    assert torch.equal(load_dataset("digits").x_val, splits.x_val)  # deterministic
    other = load_dataset({"name": "digits", "seed": 7})
    # the test set does not move with the split seed (only its normalization, fitted on the new train split)
    assert torch.equal(other.y_test, splits.y_test)
    np.testing.assert_allclose(_unnormalize(other.x_test, other), _unnormalize(splits.x_test, splits), atol=1e-5)
    assert not torch.equal(other.y_val, splits.y_val)


def test_digits_normalization_uses_train_statistics_only():
    splits = load_dataset("digits")
    assert splits.normalization["axis"] == "channel" and splits.normalization["pixel_scale"] == 1 / 16
    assert abs(splits.x_train.mean().item()) < 1e-5 and abs(splits.x_train.std().item() - 1) < 1e-3
    pixels = [_unnormalize(x, splits) for x in (splits.x_train, splits.x_val, splits.x_test)]
    assert pixels[0].min() >= -1e-5 and pixels[0].max() <= 1 + 1e-5
    assert splits.normalization["mean"][0] == pytest.approx(pixels[0].mean(), abs=1e-6)
    assert splits.normalization["mean"][0] != pytest.approx(np.concatenate(pixels).mean(), abs=1e-6)


@pytest.mark.parametrize("shape", [(20,), (1, 16), (3, 8, 8)])
def test_synthetic_shapes_classes_and_determinism(shape):
    spec = {"name": "synthetic", "shape": list(shape), "classes": 3, "samples": 300}
    splits = load_dataset(spec)
    assert splits.input_shape == shape and splits.num_classes == 3
    assert len(splits.x_train) + len(splits.x_val) + len(splits.x_test) == 300
    assert len(splits.x_test) == 60
    for x, y in ((splits.x_train, splits.y_train), (splits.x_val, splits.y_val), (splits.x_test, splits.y_test)):
        assert x.shape[1:] == shape and set(y.tolist()) == {0, 1, 2}
    train, val, test = _rows(splits.x_train), _rows(splits.x_val), _rows(splits.x_test)
    assert not train & val and not train & test and not val & test
    again = load_dataset(spec)
    assert torch.equal(again.x_train, splits.x_train) and torch.equal(again.y_val, splits.y_val)
    if len(shape) > 1:
        assert len(splits.normalization["mean"]) == shape[0]
        channel_means = splits.x_train.transpose(0, 1).reshape(shape[0], -1).mean(dim=1)
        assert torch.allclose(channel_means, torch.zeros(shape[0]), atol=1e-5)


# --- tiny files in the real formats ----------------------------------------------------------------------------

def _pickle_like_cifar(obj: dict, file: Path) -> None:
    """Pickle as the real batches are: protocol 2, arrays referenced through numpy.core.multiarray."""
    blob = pickle.dumps(obj, protocol=2).replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n")
    file.write_bytes(blob)


def _write_cifar(root: Path, name: str, per_batch: int = 6, test: int = 5) -> tuple[Path, np.ndarray]:
    """A tiny CIFAR-10 or CIFAR-100 folder under `root`; returns it and the test images."""
    rng = np.random.default_rng(0)
    num_classes = 10 if name == "cifar10" else 100
    folder = root / ("cifar-10-batches-py" if name == "cifar10" else "cifar-100-python")
    folder.mkdir(parents=True)
    label_key = b"labels" if name == "cifar10" else b"fine_labels"
    files = [f"data_batch_{i}" for i in range(1, 6)] if name == "cifar10" else ["train"]
    count = per_batch if name == "cifar10" else 5 * per_batch
    for file, n in [*((f, count) for f in files), ("test_batch" if name == "cifar10" else "test", test)]:
        data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        batch = {b"batch_label": file.encode(), label_key: rng.integers(0, num_classes, n).tolist(),
                 b"data": data, b"filenames": [f"img_{i}.png".encode() for i in range(n)]}
        if name == "cifar100":
            batch[b"coarse_labels"] = [label // 5 for label in batch[label_key]]
        _pickle_like_cifar(batch, folder / file)
    if name == "cifar10":
        meta = {b"num_cases_per_batch": per_batch, b"num_vis": 3072,
                b"label_names": [f"class{i}".encode() for i in range(10)]}
        _pickle_like_cifar(meta, folder / "batches.meta")
    else:
        meta = {b"fine_label_names": [f"fine{i}".encode() for i in range(100)],
                b"coarse_label_names": [f"coarse{i}".encode() for i in range(20)]}
        _pickle_like_cifar(meta, folder / "meta")
    return folder, data


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
@pytest.mark.parametrize("point_at", ["folder", "parent"])
def test_cifar_tiny_files_load(tmp_path, name, point_at):
    folder, test_images = _write_cifar(tmp_path, name)
    splits = load_dataset({"name": name, "path": str(folder if point_at == "folder" else tmp_path)})
    assert splits.input_shape == (3, 32, 32)
    assert len(splits.x_train) + len(splits.x_val) == 30 and len(splits.x_test) == 5
    assert splits.num_classes == (10 if name == "cifar10" else 100)
    assert splits.classes[1] == ("class1" if name == "cifar10" else "fine1")
    assert len(splits.normalization["mean"]) == 3 and splits.normalization["pixel_scale"] == 1 / 255
    expected = test_images.reshape(-1, 3, 32, 32) / 255
    np.testing.assert_allclose(_unnormalize(splits.x_test, splits), expected, atol=1e-5)


def _idx(file: Path, array: np.ndarray, magic: int) -> None:
    """Write `array` as an IDX file (gzipped when the name ends in .gz)."""
    blob = struct.pack(f">I{array.ndim}I", magic, *array.shape) + array.astype(np.uint8).tobytes()
    file.write_bytes(gzip.compress(blob) if file.suffix == ".gz" else blob)


def _write_idx_folder(folder: Path, gz: bool, train: int = 20, test: int = 6) -> np.ndarray:
    """The four MNIST IDX files with random 28x28 images; returns the test images."""
    rng = np.random.default_rng(1)
    folder.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if gz else ""
    images = {n: rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8) for n in (train, test)}
    _idx(folder / (IDX_FILES[0] + suffix), images[train], 2051)
    _idx(folder / (IDX_FILES[1] + suffix), np.arange(train) % 10, 2049)
    _idx(folder / (IDX_FILES[2] + suffix), images[test], 2051)
    _idx(folder / (IDX_FILES[3] + suffix), np.arange(test) % 10, 2049)
    return images[test]


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
@pytest.mark.parametrize("gz", [False, True])
def test_idx_tiny_files_load(tmp_path, name, gz):
    test_images = _write_idx_folder(tmp_path / "data", gz)
    splits = load_dataset({"name": name, "path": str(tmp_path / "data")})
    assert splits.input_shape == (1, 28, 28)
    assert len(splits.x_train) + len(splits.x_val) == 20 and len(splits.x_test) == 6
    assert splits.classes == (FASHION_CLASSES if name == "fashion-mnist" else [str(d) for d in range(10)])
    assert splits.y_test.tolist() == list(range(6))
    np.testing.assert_allclose(_unnormalize(splits.x_test, splits), test_images[:, None] / 255, atol=1e-5)


def test_missing_folder_names_the_path(tmp_path):
    missing = tmp_path / "nowhere"
    for name in ("cifar10", "mnist"):
        with pytest.raises(DatasetError) as excinfo:
            load_dataset({"name": name, "path": str(missing)})
        _one_line_error(excinfo, str(missing), "folder not found")
    with pytest.raises(DatasetError) as excinfo:
        load_dataset("cifar100")
    _one_line_error(excinfo, "'path'", "nothing is downloaded")


def test_missing_file_names_the_folder_and_the_file(tmp_path):
    folder, _ = _write_cifar(tmp_path, "cifar10")
    (folder / "data_batch_3").unlink()
    with pytest.raises(DatasetError) as excinfo:
        load_dataset({"name": "cifar10", "path": str(tmp_path)})
    _one_line_error(excinfo, str(folder), "missing data_batch_3", "test_batch")
    _write_idx_folder(tmp_path / "idx", gz=True)
    (tmp_path / "idx" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DatasetError) as excinfo:
        load_dataset({"name": "mnist", "path": str(tmp_path / "idx")})
    _one_line_error(excinfo, str(tmp_path / "idx"), "missing t10k-labels-idx1-ubyte")


def test_truncated_or_hostile_cifar_batch_is_a_dataset_error(tmp_path):
    folder, _ = _write_cifar(tmp_path, "cifar10")
    batch = folder / "test_batch"
    batch.write_bytes(batch.read_bytes()[:5000])
    with pytest.raises(DatasetError) as excinfo:
        load_dataset({"name": "cifar10", "path": str(folder)})
    _one_line_error(excinfo, str(batch), "unreadable pickle")
    batch.write_bytes(pickle.dumps(os.getcwd, protocol=2))  # a global outside numpy: refused, never called
    with pytest.raises(DatasetError) as excinfo:
        load_dataset({"name": "cifar10", "path": str(folder)})
    _one_line_error(excinfo, str(batch), "not allowed")


@pytest.mark.parametrize("gz", [False, True])
def test_truncated_idx_is_a_dataset_error(tmp_path, gz):
    _write_idx_folder(tmp_path, gz)
    file = tmp_path / (IDX_FILES[0] + (".gz" if gz else ""))
    file.write_bytes(file.read_bytes()[:-40])
    with pytest.raises(DatasetError) as excinfo:
        load_dataset({"name": "mnist", "path": str(tmp_path)})
    _one_line_error(excinfo, str(file))


def test_wrong_magic_is_a_dataset_error(tmp_path):
    _write_idx_folder(tmp_path, gz=False)
    labels = tmp_path / IDX_FILES[1]
    _idx(labels, np.arange(20) % 10, 2051)
    with pytest.raises(DatasetError) as excinfo:
        load_dataset({"name": "fashion-mnist", "path": str(tmp_path)})
    _one_line_error(excinfo, str(labels), "magic number 2051", "2049")


# --- parse_dataset_spec ----------------------------------------------------------------------------------------

def test_parse_names_suffix_dicts_and_files(tmp_path):
    assert parse_dataset_spec("mnist1d") == DataSpec("mnist1d")
    assert parse_dataset_spec("mnist1d:permute") == DataSpec("mnist1d", permute=True)
    spec = DataSpec("synthetic", shape=(3, 8, 8), classes=5, val_fraction=0.25, path=None)
    assert parse_dataset_spec(spec.to_dict()) == spec
    assert json.loads(json.dumps(spec.to_dict())) == spec.to_dict()
    (tmp_path / "spec.yaml").write_text("name: synthetic\nshape: [3, 8, 8]\nclasses: 5\nval_fraction: 0.25\n")
    (tmp_path / "spec.json").write_text(json.dumps(spec.to_dict()))
    assert parse_dataset_spec(str(tmp_path / "spec.yaml")) == spec
    assert parse_dataset_spec(str(tmp_path / "spec.json")) == spec
    assert parse_dataset_spec(spec) is spec


def test_parse_unknown_key_lists_valid_keys(tmp_path):
    with pytest.raises(DatasetError) as excinfo:
        parse_dataset_spec({"name": "mnist1d", "val_frac": 0.1})
    _one_line_error(excinfo, "'val_frac'", "val_fraction", "permute_seed")
    (tmp_path / "bad.yaml").write_text("name: digits\nbatch: 3\n")
    with pytest.raises(DatasetError) as excinfo:
        parse_dataset_spec(str(tmp_path / "bad.yaml"))
    _one_line_error(excinfo, str(tmp_path / "bad.yaml"), "'batch'")


@pytest.mark.parametrize("value", ["imagenet", {"name": "svhn"}, "CIFAR10"])
def test_parse_unknown_name_lists_valid_names(value):
    with pytest.raises(DatasetError) as excinfo:
        parse_dataset_spec(value)
    _one_line_error(excinfo, "unknown", *DATASET_NAMES)


def test_parse_unknown_suffix_names_permute():
    with pytest.raises(DatasetError) as excinfo:
        parse_dataset_spec("mnist1d:shuffle")
    _one_line_error(excinfo, "'shuffle'", "':permute'")


@pytest.mark.parametrize("fraction", [0, 1, 1.5, -0.1, "0.2", True])
def test_parse_bad_val_fraction_names_the_field(fraction):
    with pytest.raises(DatasetError) as excinfo:
        parse_dataset_spec({"name": "digits", "val_fraction": fraction})
    _one_line_error(excinfo, "'val_fraction'")


@pytest.mark.parametrize("field, value", [("seed", "42"), ("permute", 1), ("shape", [0, 3]), ("classes", 1),
                                          ("shape", [1, 2, 3, 4]), ("path", 3)])
def test_parse_wrong_types_name_the_field(field, value):
    with pytest.raises(DatasetError) as excinfo:
        parse_dataset_spec({"name": "synthetic", field: value})
    _one_line_error(excinfo, f"'{field}'")


def test_missing_spec_file_names_the_file(tmp_path):
    with pytest.raises(DatasetError) as excinfo:
        parse_dataset_spec(str(tmp_path / "nope.yaml"))
    _one_line_error(excinfo, str(tmp_path / "nope.yaml"))


def test_fashion_mnist_without_a_path_reads_debians_folder_or_names_the_package(tmp_path, monkeypatch):
    from evaluators import readers

    monkeypatch.setitem(readers.DEBIAN_FOLDERS, "fashion-mnist", (str(tmp_path / "absent"), "dataset-fashion-mnist"))
    with pytest.raises(DatasetError) as excinfo:
        load_dataset("fashion-mnist")
    _one_line_error(excinfo, "apt-get install dataset-fashion-mnist", str(tmp_path / "absent"))
    folder = tmp_path / "debian"
    _write_idx_folder(folder, gz=True)
    monkeypatch.setitem(readers.DEBIAN_FOLDERS, "fashion-mnist", (str(folder), "dataset-fashion-mnist"))
    assert load_dataset("fashion-mnist").classes == FASHION_CLASSES


@pytest.mark.skipif(not Path("/usr/share/datasets/fashion-mnist").is_dir(),
                    reason="Debian's dataset-fashion-mnist is not installed (.ci/run installs it)")
def test_the_installed_fashion_mnist_loads_with_a_training_subset():
    splits = load_dataset({"name": "fashion-mnist", "train_samples": 3000})
    assert splits.x_train.shape == (3000, 1, 28, 28) and len(splits.y_val) == 12_000 and len(splits.y_test) == 10_000
    assert torch.bincount(splits.y_train, minlength=10).tolist() == [300] * 10  # stratified: 10 balanced classes


def test_train_samples_keeps_a_seeded_stratified_subset_and_leaves_val_and_test_alone():
    full = load_dataset({"name": "digits"})
    small = load_dataset({"name": "digits", "train_samples": 500})
    assert len(small.y_train) == 500 and torch.equal(small.y_val, full.y_val) and torch.equal(small.y_test, full.y_test)
    share = torch.bincount(full.y_train, minlength=10).float() * 500 / len(full.y_train)
    assert (torch.bincount(small.y_train, minlength=10).float() - share).abs().max() <= 1.0
    again = load_dataset({"name": "digits", "train_samples": 500})
    assert torch.equal(again.x_train, small.x_train)
    with pytest.raises(DatasetError) as excinfo:
        load_dataset({"name": "digits", "train_samples": 10_000})
    _one_line_error(excinfo, "'train_samples'", "10000")
