"""Readers for on-disk image datasets: CIFAR python-pickle batches and MNIST-style IDX files (plain or .gz)."""
from __future__ import annotations

import codecs
import gzip
import math
import pickle
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from evaluators.errors import DatasetError

IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
MNIST_CLASSES = [str(digit) for digit in range(10)]
FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                   "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
_IMAGES_MAGIC, _LABELS_MAGIC = 2051, 2049  # IDX: 0x0000 0x08 (ubyte) ndim
_IDX_SUBFOLDERS = {"mnist": ("raw", "MNIST/raw"), "fashion-mnist": ("raw", "FashionMNIST/raw")}
# Where Debian's packages put a dataset; read when the spec gives no path.
DEBIAN_FOLDERS = {"fashion-mnist": ("/usr/share/datasets/fashion-mnist", "dataset-fashion-mnist")}


class ImageArrays(NamedTuple):
    """A dataset's train and test arrays as stored: uint8 images (N, C, H, W) and int64 labels (N,)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: list[str]


@dataclass(frozen=True)
class CifarLayout:
    """Where one CIFAR variant keeps its batches and which keys hold labels and label names."""

    folder: str
    train: tuple[str, ...]
    test: str
    meta: str
    labels_key: bytes
    names_key: bytes

    @property
    def files(self) -> tuple[str, ...]:
        """Every file the folder must hold."""
        return (*self.train, self.test, self.meta)


CIFAR_LAYOUTS = {
    "cifar10": CifarLayout("cifar-10-batches-py", tuple(f"data_batch_{i}" for i in range(1, 6)), "test_batch",
                           "batches.meta", b"labels", b"label_names"),
    "cifar100": CifarLayout("cifar-100-python", ("train",), "test", "meta", b"fine_labels", b"fine_label_names"),
}


def _one_line(err: BaseException) -> str:
    """An exception as `Type: message` on one line."""
    text = " ".join(str(err).split())
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def _locate(path: str | None, name: str, files: tuple[str, ...], subfolders: tuple[str, ...],
            allow_gz: bool, expected: str) -> tuple[Path, dict[str, Path]]:
    """The folder (`path` or one of its `subfolders`) holding every file, and each file's path in it."""
    if path is None and name in DEBIAN_FOLDERS:
        path, package = DEBIAN_FOLDERS[name]
        if not Path(path).is_dir():
            raise DatasetError(f"dataset {name}: no 'path' given and {path} does not exist; install Debian's package "
                               f"(apt-get install {package}) or set dataset.path to a folder holding {expected}")
    if path is None:
        raise DatasetError(f"dataset field 'path': {name} needs a local folder holding {expected}; nothing is downloaded")
    root = Path(path).expanduser()
    if not root.is_dir():
        raise DatasetError(f"{name} path {root}: folder not found; expected a folder holding {expected}")
    best: tuple[Path, dict[str, Path]] = (root, {})  # the folder to report: the one holding most files
    for folder in (root, *(root / sub for sub in subfolders)):
        found = {}
        for stem in files:
            for candidate in (folder / stem, folder / f"{stem}.gz") if allow_gz else (folder / stem,):
                if candidate.is_file():
                    found[stem] = candidate
                    break
        if len(found) == len(files):
            return folder, found
        if len(found) > len(best[1]):
            best = (folder, found)
    folder, found = best
    missing = ", ".join(stem for stem in files if stem not in found)
    raise DatasetError(f"{name} folder {folder}: missing {missing}; expected {expected}")


# --- CIFAR ---------------------------------------------------------------------------------------------------

_RECONSTRUCT = np.zeros(0).__reduce__()[0]  # numpy's own array reconstructor, wherever this numpy keeps it
_SCALAR = np.float64(0).__reduce__()[0]


class _CifarUnpickler(pickle.Unpickler):
    """Unpickles only what CIFAR batches hold (dicts, lists, bytes, numpy arrays), never arbitrary code."""

    def find_class(self, module: str, name: str) -> Any:
        """Allow numpy's array machinery and bytes decoding; refuse every other global."""
        if module in ("numpy.core.multiarray", "numpy._core.multiarray") and name in ("_reconstruct", "scalar"):
            return _RECONSTRUCT if name == "_reconstruct" else _SCALAR
        allowed = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype, ("_codecs", "encode"): codecs.encode}
        if (module, name) in allowed:
            return allowed[(module, name)]
        raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a CIFAR batch")


def _unpickle(file: Path, name: str) -> dict:
    """One CIFAR pickle as a dict with bytes keys."""
    try:
        with open(file, "rb") as handle:
            batch = _CifarUnpickler(handle, encoding="bytes").load()
    except Exception as err:  # corrupt pickles raise many types (EOFError, UnpicklingError, ValueError, ...)
        raise DatasetError(f"{name} file {file}: unreadable pickle ({_one_line(err)}); "
                           f"expected a CIFAR python batch") from err
    if not isinstance(batch, dict):
        raise DatasetError(f"{name} file {file}: holds a {type(batch).__name__}; expected a dict of CIFAR fields")
    return batch


def _field(batch: dict, key: bytes, file: Path, name: str) -> Any:
    """One field of a CIFAR dict, or an error naming the file and the key."""
    if key not in batch:
        raise DatasetError(f"{name} file {file}: missing key {key!r}; has {sorted(batch)}")
    return batch[key]


def _cifar_batch(file: Path, name: str, layout: CifarLayout, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 3, 32, 32) uint8 and labels (N,) int64 from one batch file."""
    batch = _unpickle(file, name)
    data = _field(batch, b"data", file, name)
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        got = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise DatasetError(f"{name} file {file}: field b'data' is {got}; expected a uint8 array of shape (N, 3072)")
    try:
        labels = np.asarray(_field(batch, layout.labels_key, file, name), dtype=np.int64)
    except (TypeError, ValueError) as err:
        raise DatasetError(f"{name} file {file}: field {layout.labels_key!r} is not a list of integers") from err
    if labels.shape != (len(data),):
        raise DatasetError(f"{name} file {file}: field {layout.labels_key!r} has shape {labels.shape}; "
                           f"expected ({len(data)},), one label per image")
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise DatasetError(f"{name} file {file}: field {layout.labels_key!r} holds labels outside 0..{num_classes - 1}")
    return data.reshape(-1, 3, 32, 32), labels


def read_cifar(path: str | None, name: str) -> ImageArrays:
    """CIFAR-10 or CIFAR-100 from its python batches in `path` (the batch folder or its parent)."""
    layout = CIFAR_LAYOUTS[name]
    expected = f"{', '.join(layout.files)} (or its parent holding {layout.folder})"
    folder, files = _locate(path, name, layout.files, (layout.folder,), allow_gz=False, expected=expected)
    meta_file = files[layout.meta]
    names = _field(_unpickle(meta_file, name), layout.names_key, meta_file, name)
    if not isinstance(names, (list, tuple)) or not names or not all(isinstance(n, (bytes, str)) for n in names):
        raise DatasetError(f"{name} file {meta_file}: field {layout.names_key!r} is not a list of class names")
    classes = [n.decode("utf-8", "replace") if isinstance(n, bytes) else n for n in names]
    train = [_cifar_batch(files[stem], name, layout, len(classes)) for stem in layout.train]
    x_test, y_test = _cifar_batch(files[layout.test], name, layout, len(classes))
    x_train = np.concatenate([x for x, _ in train])
    y_train = np.concatenate([y for _, y in train])
    return ImageArrays(x_train, y_train, x_test, y_test, classes)


# --- IDX (MNIST, Fashion-MNIST) ---------------------------------------------------------------------------------

def read_idx(file: Path, magic: int, name: str) -> np.ndarray:
    """One IDX file (plain or .gz) as a uint8 array with the dims its header declares."""
    kind = "images" if magic == _IMAGES_MAGIC else "labels"
    try:
        if file.suffix == ".gz":
            with gzip.open(file, "rb") as handle:
                raw = handle.read()
        else:
            raw = file.read_bytes()
    except (OSError, EOFError, zlib.error) as err:
        raise DatasetError(f"{name} file {file}: unreadable ({_one_line(err)}); expected an IDX {kind} file") from err
    if len(raw) < 4:
        raise DatasetError(f"{name} file {file}: {len(raw)} bytes, too short for an IDX header; expected {kind}")
    (got,) = struct.unpack(">I", raw[:4])
    if got != magic:
        raise DatasetError(f"{name} file {file}: magic number {got}; expected {magic} (IDX uint8 {kind})")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DatasetError(f"{name} file {file}: truncated header ({len(raw)} bytes); expected {header} bytes")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    size = header + math.prod(dims)
    if len(raw) != size:
        raise DatasetError(f"{name} file {file}: {len(raw)} bytes; expected {size} for dims {list(dims)} "
                           f"({'truncated' if len(raw) < size else 'trailing bytes'})")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _idx_pair(images_file: Path, labels_file: Path, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 1, H, W) and labels (N,) int64 from one images/labels pair."""
    images = read_idx(images_file, _IMAGES_MAGIC, name)
    labels = read_idx(labels_file, _LABELS_MAGIC, name).astype(np.int64)
    if len(images) != len(labels):
        raise DatasetError(f"{name} file {labels_file}: {len(labels)} labels; expected {len(images)}, "
                           f"one per image in {images_file.name}")
    if len(labels) and labels.max() >= 10:
        raise DatasetError(f"{name} file {labels_file}: labels up to {labels.max()}; expected 0..9")
    return images[:, None, :, :], labels


def read_idx_dataset(path: str | None, name: str) -> ImageArrays:
    """MNIST or Fashion-MNIST from the four IDX files in `path` (plain or .gz; also `path`/raw)."""
    expected = f"{', '.join(IDX_FILES)} (each plain or .gz)"
    folder, files = _locate(path, name, IDX_FILES, _IDX_SUBFOLDERS[name], allow_gz=True, expected=expected)
    x_train, y_train = _idx_pair(files[IDX_FILES[0]], files[IDX_FILES[1]], name)
    x_test, y_test = _idx_pair(files[IDX_FILES[2]], files[IDX_FILES[3]], name)
    if x_train.shape[1:] != x_test.shape[1:]:
        raise DatasetError(f"{name} folder {folder}: train images are {x_train.shape[2:]} but test images are "
                           f"{x_test.shape[2:]}; expected the same size")
    classes = FASHION_CLASSES if name == "fashion-mnist" else MNIST_CLASSES
    return ImageArrays(x_train, y_train, x_test, y_test, list(classes))
