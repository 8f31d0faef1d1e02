"""Recovering shuffled feature order from training data (evaluators/ordering.py): known chains come back, only the
training split is read, bad input is one line or a documented fallback."""
from __future__ import annotations

import numpy as np
import pytest

from evaluators.datasets import load_dataset
from evaluators.errors import DatasetError
from evaluators.ordering import (adjacent_neighbours, cached_order, feature_similarity, grid_order, grid_score,
                                 recover_order, refine_grid)


def smooth_chain(samples: int, features: int, seed: int = 0) -> np.ndarray:
    """Samples of a smooth 1D signal: neighbouring positions strongly correlated, far ones not."""
    rng = np.random.default_rng(seed)
    noise = rng.normal(size=(samples, features + 8))
    kernel = np.exp(-0.5 * (np.arange(-4, 5) / 2.0) ** 2)
    return np.stack([np.convolve(row, kernel, mode="valid") for row in noise])


@pytest.mark.parametrize("method", ["spectral", "chain"])
def test_a_shuffled_chain_comes_back_up_to_reversal(method):
    x = smooth_chain(600, 30)
    shuffle = np.random.default_rng(1).permutation(30)
    order = recover_order(x[:, shuffle], method)
    positions = shuffle[order]  # true positions, read in the recovered order
    assert list(positions) in (list(range(30)), list(range(29, -1, -1)))


def test_a_shuffled_image_comes_back_on_its_grid_up_to_the_grids_symmetries():
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(0)
    images = gaussian_filter(rng.normal(size=(800, 20, 20)), sigma=(0, 1.5, 1.5), mode="nearest")[:, 4:16, 4:16]
    shuffle = rng.permutation(144)
    order = grid_order(images.reshape(800, -1)[:, shuffle], 12, 12)
    rows, cols = (v.reshape(12, 12) for v in np.divmod(shuffle[order], 12))  # true (row, col) placed in each cell
    across = np.abs(np.diff(rows, axis=1)) + np.abs(np.diff(cols, axis=1))
    down = np.abs(np.diff(rows, axis=0)) + np.abs(np.diff(cols, axis=0))
    assert (across == 1).all() and (down == 1).all()  # every cell's grid neighbours were its true neighbours


def grid_neighbour_share(true_cells: np.ndarray, side: int) -> float:
    """Share of grid-adjacent cell pairs holding features whose true cells (``true_cells``, row-major) are adjacent."""
    rows, cols = (v.reshape(side, side) for v in np.divmod(true_cells, side))
    across = np.abs(np.diff(rows, axis=1)) + np.abs(np.diff(cols, axis=1))
    down = np.abs(np.diff(rows, axis=0)) + np.abs(np.diff(cols, axis=0))
    return float(((across == 1).sum() + (down == 1).sum()) / (across.size + down.size))


def test_refining_a_torn_grid_mends_it():
    """A true layout torn by 60 swaps of features between nearby cells: the annealing puts every neighbour back."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(3)
    side = 14
    images = gaussian_filter(rng.normal(size=(1000, side + 8, side + 8)), sigma=(0, 1.5, 1.5))[:, 4:-4, 4:-4]
    weights = np.square(feature_similarity(images.reshape(1000, -1)))
    torn = np.arange(side * side)
    for _ in range(60):
        a = rng.integers(side * side)
        b = min(side * side - 1, a + int(rng.choice([1, 2, side, side + 1, 2 * side])))
        torn[[a, b]] = torn[[b, a]]
    assert grid_neighbour_share(torn, side) < 0.7
    mended = refine_grid(torn, weights, side, side)
    assert sorted(mended.tolist()) == list(range(side * side))
    assert grid_score(mended, weights, side, side) > grid_score(torn, weights, side, side)
    assert grid_neighbour_share(mended, side) == 1.0
    assert np.array_equal(refine_grid(torn, weights, side, side), mended)  # deterministic


def test_shuffled_mnist1d_neighbours_are_recovered():
    """The probe of issue 14 (3200 training samples): the kNN graph and the chain put every true neighbour pair
    side by side (the Fiedler vector of the dense |correlation| graph: 13%)."""
    data = load_dataset({"name": "mnist1d", "permute": True, "permute_seed": 3, "val_fraction": 0.2})
    x = data.x_train.numpy()
    positions = np.random.RandomState(3).permutation(40)  # permuted feature f is original position positions[f]
    assert adjacent_neighbours(recover_order(x, "chain"), positions) == 1.0  # measured: 1.0 on seeds 0, 3, 7
    assert adjacent_neighbours(recover_order(x, "spectral"), positions) == 1.0


def test_only_the_training_split_is_read(tmp_path):
    data = load_dataset("mnist1d:permute")
    first = cached_order(data.x_train.numpy(), "spectral", tmp_path)
    changed = load_dataset({"name": "mnist1d", "permute": True, "num_samples": 5000})
    assert np.array_equal(recover_order(data.x_train.numpy(), "spectral"), first)
    assert np.array_equal(cached_order(changed.x_train.numpy(), "spectral", tmp_path), first)  # same training data
    assert len(list((tmp_path / "orders").iterdir())) == 1


def test_a_half_written_cache_file_is_computed_again_and_replaced(tmp_path):
    """What a reader saw in CI when another process was still writing the file (before writes were atomic)."""
    x = load_dataset("mnist1d:permute").x_train.numpy()
    first = cached_order(x, "chain", tmp_path)
    [path] = (tmp_path / "orders").iterdir()
    path.write_bytes(path.read_bytes()[:20])
    assert np.array_equal(cached_order(x, "chain", tmp_path), first)
    assert np.array_equal(np.load(path), first)
    assert [p.name for p in (tmp_path / "orders").iterdir()] == [path.name]  # no temp file left beside it


def test_bad_input_is_one_line_or_a_documented_fallback():
    x = smooth_chain(50, 20)
    x[:, 5] = 1.0  # a constant feature: placed somewhere, no crash
    for method in ("spectral", "chain"):
        assert sorted(recover_order(x, method).tolist()) == list(range(20))
    few = smooth_chain(5, 20)  # fewer samples than features: still an order
    assert sorted(recover_order(few, "chain").tolist()) == list(range(20))
    broken = smooth_chain(50, 20)
    broken[3, 4] = np.nan
    with pytest.raises(DatasetError, match="NaN") as excinfo:
        recover_order(broken, "spectral")
    assert "\n" not in str(excinfo.value)
    with pytest.raises(DatasetError, match="unknown method"):
        recover_order(x, "tsp")
