"""A dataset spec (``mnist1d:permute``, a mapping, or a YAML/JSON file): validated on construction, so a bad field
is one line naming it before any data is read."""
from __future__ import annotations

import json
import numbers
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import yaml

from evaluators.errors import DatasetError

DATASET_NAMES = ("mnist1d", "digits", "synthetic", "cifar10", "cifar100", "mnist", "fashion-mnist")
SPEC_SUFFIXES = (".yaml", ".yml", ".json")
_SEED_LIMIT = 2**32  # numpy's legacy seeding (mnist1d, RandomState) takes 0 <= seed < 2**32


@dataclass(frozen=True)
class DataSpec:
    """Which data to load and how to split it; validated on construction."""

    name: str  # mnist1d | digits | synthetic | cifar10 | cifar100 | mnist | fashion-mnist
    permute: bool = False  # one fixed seeded permutation of the flattened features (destroys spatial structure)
    permute_seed: int = 0
    val_fraction: float = 0.2  # validation carved (seeded, stratified) from the train split
    seed: int = 42  # split seed; for mnist1d and synthetic also the generator seed
    path: str | None = None  # folder for the file-based datasets
    num_samples: int = 5000  # mnist1d only: 5000 with an 80/20 train/test split is the paper's setting
    length: int = 40  # mnist1d only
    shape: tuple[int, ...] = (32,)  # synthetic only: input shape, e.g. (20,), (1, 16), (3, 8, 8)
    classes: int = 4  # synthetic only
    samples: int = 512  # synthetic only
    train_samples: int | None = None  # keep a seeded, stratified N of the training split (after val is carved)

    def __post_init__(self) -> None:
        """Check every field's type and range; coerce lists to tuples and paths to strings."""
        if not isinstance(self.name, str) or self.name not in DATASET_NAMES:
            raise DatasetError(f"dataset field 'name': unknown dataset {self.name!r}; "
                               f"valid names are {', '.join(DATASET_NAMES)}")
        if not isinstance(self.permute, bool):
            raise DatasetError(f"dataset field 'permute': expected true or false, got {self.permute!r}")
        for name, low, high in (("permute_seed", 0, _SEED_LIMIT), ("seed", 0, _SEED_LIMIT), ("num_samples", 20, None),
                                ("length", 2, None), ("classes", 2, None), ("samples", 10, None)):
            object.__setattr__(self, name, _check_int(name, getattr(self, name), low, high))
        fraction = self.val_fraction
        if isinstance(fraction, bool) or not isinstance(fraction, numbers.Real) or not 0 < fraction < 1:
            raise DatasetError(f"dataset field 'val_fraction': expected a number strictly between 0 and 1, "
                               f"got {fraction!r}")
        object.__setattr__(self, "val_fraction", float(fraction))
        if self.train_samples is not None:
            object.__setattr__(self, "train_samples", _check_int("train_samples", self.train_samples, 1, None))
        if self.path is not None:
            if not isinstance(self.path, (str, os.PathLike)) or not os.fspath(self.path):
                raise DatasetError(f"dataset field 'path': expected a folder path or null, got {self.path!r}")
            object.__setattr__(self, "path", os.fspath(self.path))
        shape = self.shape
        if (not isinstance(shape, (tuple, list)) or not 1 <= len(shape) <= 3
                or any(isinstance(d, bool) or not isinstance(d, numbers.Integral) or d < 1 for d in shape)):
            raise DatasetError(f"dataset field 'shape': expected 1 to 3 positive integers like [20], [1, 16] or "
                               f"[3, 8, 8], got {shape!r}")
        object.__setattr__(self, "shape", tuple(int(d) for d in shape))

    def to_dict(self) -> dict[str, Any]:
        """Every field as JSON-able values; `parse_dataset_spec` turns it back into an equal spec."""
        data = asdict(self)
        data["shape"] = list(self.shape)
        if data["train_samples"] is None:
            del data["train_samples"]  # unset: the spec's dict (and every digest of it) as before the field existed
        return data


def _check_int(name: str, value: Any, low: int, high: int | None) -> int:
    """`value` as an int in [low, high), or an error naming the field."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low or (high and value >= high):
        bound = f"in [{low}, {high})" if high else f">= {low}"
        raise DatasetError(f"dataset field {name!r}: expected an integer {bound}, got {value!r}")
    return int(value)


def parse_dataset_spec(value: str | dict | DataSpec) -> DataSpec:
    """A spec from a name ('mnist1d'), a name with ':permute', a YAML/JSON spec file, or a dict."""
    if isinstance(value, DataSpec):
        return value
    if isinstance(value, dict):
        return _spec_from_dict(value)
    if isinstance(value, os.PathLike):
        return _spec_from_file(Path(value))
    if not isinstance(value, str):
        raise DatasetError(f"dataset spec: expected a name, a spec file or a mapping, got {type(value).__name__}")
    text = value.strip()
    base, colon, suffix = text.partition(":")
    if base in DATASET_NAMES:
        if colon and suffix != "permute":
            raise DatasetError(f"dataset {text!r}: unknown suffix {suffix!r}; the only suffix is ':permute'")
        return DataSpec(name=base, permute=bool(colon))
    path = Path(text).expanduser()
    if path.suffix.lower() in SPEC_SUFFIXES or path.is_file():
        return _spec_from_file(path)
    raise DatasetError(f"dataset {text!r}: unknown name; valid names are {', '.join(DATASET_NAMES)} "
                       f"(optionally with ':permute'), or a path to a {'/'.join(SPEC_SUFFIXES)} spec file")


def _spec_from_dict(data: dict) -> DataSpec:
    """A spec from a mapping whose keys are DataSpec fields."""
    valid = [f.name for f in fields(DataSpec)]
    for key in data:
        if key not in valid:
            raise DatasetError(f"dataset key {key!r}: unknown; valid keys are {', '.join(valid)}")
    if "name" not in data:
        raise DatasetError(f"dataset spec: missing key 'name'; valid names are {', '.join(DATASET_NAMES)}")
    return DataSpec(**data)


def _spec_from_file(path: Path) -> DataSpec:
    """A spec from a YAML or JSON file holding a mapping (or a bare name)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise DatasetError(f"dataset spec file {path}: cannot read ({err.strerror or err}); "
                           f"expected a YAML or JSON mapping of spec fields") from err
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as err:
        raise DatasetError(f"dataset spec file {path}: not valid {path.suffix.lstrip('.').upper() or 'YAML'}; "
                           f"expected a mapping of spec fields") from err
    if isinstance(data, str) and data.strip().partition(":")[0] in DATASET_NAMES:
        return parse_dataset_spec(data)
    if not isinstance(data, dict):
        raise DatasetError(f"dataset spec file {path}: holds a {type(data).__name__}; expected a mapping of spec fields")
    try:
        return _spec_from_dict(data)
    except DatasetError as err:
        raise DatasetError(f"dataset spec file {path}: {err}") from err
