"""Recovering the order of shuffled features from the training data, for the genome's ``reorder`` op.

Features that were neighbours are correlated across samples, so the training split says which belong together
(Le Roux, Bengio et al., NeurIPS 2007, recovered the 2D layout of shuffled pixels this way). Each method returns
``order``, a permutation of the flattened feature positions: ``x[:, order]`` puts related features side by side.

- ``spectral``: the Fiedler vector of a k-nearest-neighbour graph of |correlation| (a 1D order). The graph
  matters more than the solver: on shuffled MNIST-1D the dense |correlation| graph puts about a quarter of the
  true neighbours side by side, a 2-nearest-neighbour graph nearly all.
- ``chain``: a short open path through the features on the distance 1 - |correlation|: greedy nearest neighbour
  from the best of several starts, then 2-opt.
- ``grid``: for an H x W map. Plain correlation is a poor guide in 2D: on permuted Fashion-MNIST a pixel's 3rd and
  4th most correlated pixels are true neighbours for only 62% and 41% of pixels (the rest lie two rows away, or
  mirror the pixel across a symmetric garment), and placements built on it stalled at 56% of true neighbours side
  by side. Partial correlations (each pair given all other features, from the inverse of the shrunk correlation
  matrix) drop what other pixels relay: their top four are true neighbours for 99/99/93/81% of pixels. Each of the
  two similarities gives a placement (``place_on_grid``: a 2D spectral embedding of the mutual 4-nearest-neighbour
  graph, kept connected by each feature's two nearest, turned to the angle whose ``linear_sum_assignment`` to
  grid cells scores best, then annealed by cell swaps), and the one whose grid neighbours correlate more is kept.
  ``order`` lists the features cell by cell, row-major; on permuted Fashion-MNIST 87% of true neighbours end side
  by side, in about 15 s on 2 cores (benchmarks/reorder_targets.py).

Only the training split is read. A constant feature correlates with nothing (it lands wherever the graph leaves
room); fewer samples than features still give an order (a noisier one); NaN or infinite values are an error.
"""
from __future__ import annotations

import hashlib
import math
import random
from pathlib import Path

import numpy as np

from evaluators.cache_files import write_atomically
from evaluators.errors import DatasetError

METHODS = ("spectral", "chain", "grid")
NEIGHBOURS = 2          # k of the k-nearest-neighbour graph (the probe above: 2 beats the dense graph)
CONNECT = 1e-6          # weight of the dense graph added to the kNN graph, so it is connected
CHAIN_STARTS = 64       # greedy chains tried from this many candidate ends (all features when fewer)
TWO_OPT_PASSES = 20
GRID_MOVES_PER_CELL = 1200  # annealing swaps tried per grid cell (about 2 s for 28 x 28 on one core)
GRID_TEMPERATURE = (0.3, 0.001)  # start and end temperature, in units of a feature's strongest weight (mean)
GRID_RADIUS = 3         # a local swap partner lies at most this many cells away in each direction
GRID_ANGLE_STEP = 3     # degrees between the turns of the 2D embedding tried before the assignment to cells
GRID_STARTS = 2         # best-scoring turns annealed ...
GRID_SEEDS = 1          # ... each with this many annealing seeds; the best result is kept
GRID_TIE_BREAK = 0.1    # weight of the similarity beside the graph's edges in the annealing's objective
SHRINK_PER_RATIO = 0.1  # correlation shrunk toward I by 0.1 x features / samples (within 1e-3 .. 0.5) before inverting
ALGORITHM_VERSION = 4   # part of the cache key: raise it when a method's result changes (4: grid graph connected)


def correlation(x: np.ndarray) -> np.ndarray:
    """Pearson correlation between the flattened features over the samples; a constant feature correlates with
    nothing (0 off the diagonal), 1 on the diagonal."""
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    if len(x) < 3:
        raise DatasetError(f"reorder: needs at least 3 training samples to correlate features, got {len(x)}")
    if not np.isfinite(x).all():
        raise DatasetError("reorder: the training split holds NaN or infinite values; an order cannot be computed")
    centered = x - x.mean(axis=0)
    norms = np.sqrt(np.square(centered).sum(axis=0))
    constant = norms == 0
    safe = np.where(constant, 1.0, norms)
    matrix = (centered.T @ centered) / np.outer(safe, safe)
    matrix[constant, :] = 0.0
    matrix[:, constant] = 0.0
    np.fill_diagonal(matrix, 1.0)
    return np.clip(matrix, -1.0, 1.0)


def feature_similarity(x: np.ndarray) -> np.ndarray:
    """|Pearson correlation| between the flattened features over the samples, 0 on the diagonal."""
    similarity = np.abs(correlation(x))
    np.fill_diagonal(similarity, 0.0)
    return similarity


def partial_similarity(x: np.ndarray) -> np.ndarray:
    """|partial correlation| of each pair of features given all the others, 0 on the diagonal: read from the inverse
    of the correlation matrix, shrunk toward the identity (more when samples are few, so the inverse exists)."""
    matrix = correlation(x)
    samples, features = len(x), len(matrix)
    shrink = min(0.5, max(1e-3, SHRINK_PER_RATIO * features / samples))
    precision = np.linalg.inv((1.0 - shrink) * matrix + shrink * np.eye(features))
    scale = np.sqrt(np.diag(precision))
    similarity = np.abs(precision / np.outer(scale, scale))
    np.fill_diagonal(similarity, 0.0)
    return np.clip(similarity, 0.0, 1.0)


def knn_graph(similarity: np.ndarray, k: int = NEIGHBOURS, mutual: bool = False) -> np.ndarray:
    """Symmetric weights: each feature's ``k`` most similar (with ``mutual``, only pairs that are among each other's
    ``k``), plus a faint dense graph (and a faint uniform link for constant features) so that the graph is
    connected."""
    size = len(similarity)
    k = min(k, size - 1)
    nearest = np.argsort(-similarity, axis=1, kind="stable")[:, :k]
    rows = np.repeat(np.arange(size), k)
    weights = np.zeros_like(similarity)
    weights[rows, nearest.ravel()] = similarity[rows, nearest.ravel()]
    weights = (np.minimum if mutual else np.maximum)(weights, weights.T) + CONNECT * (similarity + CONNECT)
    np.fill_diagonal(weights, 0.0)
    return weights


def spectral_embedding(weights: np.ndarray, dims: int) -> np.ndarray:
    """The ``dims`` smallest non-trivial eigenvectors of the normalized Laplacian, as (features, dims)."""
    degree = weights.sum(axis=1)
    scale = 1.0 / np.sqrt(degree)
    laplacian = np.eye(len(weights)) - scale[:, None] * weights * scale[None, :]
    _, vectors = np.linalg.eigh(laplacian)
    return vectors[:, 1:1 + dims] * scale[:, None]


def spectral_order(x: np.ndarray) -> np.ndarray:
    """Features sorted by the Fiedler vector of the kNN |correlation| graph."""
    size = int(np.prod(np.shape(x)[1:]))
    if size < 3:
        return np.arange(size)
    fiedler = spectral_embedding(knn_graph(feature_similarity(x)), 1)[:, 0]
    return np.argsort(fiedler, kind="stable")


def path_length(order: np.ndarray, distance: np.ndarray) -> float:
    return float(distance[order[:-1], order[1:]].sum())


def greedy_chain(distance: np.ndarray, start: int) -> np.ndarray:
    """Nearest neighbour from ``start``: each step to the closest feature not yet on the path."""
    size = len(distance)
    visited = np.zeros(size, dtype=bool)
    order = np.empty(size, dtype=np.int64)
    current = start
    for step in range(size):
        order[step] = current
        visited[current] = True
        if step + 1 < size:
            row = np.where(visited, np.inf, distance[current])
            current = int(np.argmin(row))
    return order


def two_opt(order: np.ndarray, distance: np.ndarray, passes: int = TWO_OPT_PASSES) -> np.ndarray:
    """Reverses a segment while that shortens the open path (``order[i+1..j]``), at most ``passes`` sweeps."""
    order = order.copy()
    size = len(order)
    for _ in range(passes):
        improved = False
        for i in range(size - 2):
            a, b = order[i], order[i + 1]
            ends = order[i + 2:]                          # candidate order[j] for j = i+2 .. size-1
            after = np.append(order[i + 3:], -1)          # order[j+1], -1 past the end
            removed = distance[a, b] + np.where(after >= 0, distance[ends, np.maximum(after, 0)], 0.0)
            added = distance[a, ends] + np.where(after >= 0, distance[b, np.maximum(after, 0)], 0.0)
            gain = removed - added
            best = int(np.argmax(gain))
            if gain[best] > 1e-12:
                j = i + 2 + best
                order[i + 1:j + 1] = order[i + 1:j + 1][::-1]
                improved = True
        if not improved:
            break
    return order


def chain_order(x: np.ndarray) -> np.ndarray:
    """A short open path on 1 - |correlation|: greedy from the likeliest ends, the shortest kept, then 2-opt."""
    similarity = feature_similarity(x)
    size = len(similarity)
    if size < 3:
        return np.arange(size)
    distance = 1.0 - similarity
    np.fill_diagonal(distance, 0.0)
    # a chain's ends have one close neighbour, not two: the lowest second-highest similarity
    second = np.sort(similarity, axis=1)[:, -2]
    starts = np.argsort(second, kind="stable")[:CHAIN_STARTS]
    best = min((greedy_chain(distance, int(s)) for s in starts), key=lambda o: path_length(o, distance))
    return two_opt(best, distance)


def grid_order(x: np.ndarray, height: int, width: int) -> np.ndarray:
    """Features placed on an ``height`` x ``width`` grid, row-major: one placement from the partial correlations
    and one from the plain ones, of which the one whose grid neighbours correlate more is kept."""
    size = int(np.prod(np.shape(x)[1:]))
    if height * width != size:
        raise DatasetError(f"reorder: a {height} x {width} grid holds {height * width} cells, the input has "
                           f"{size} features")
    plain = feature_similarity(x)
    placements = [place_on_grid(similarity, height, width) for similarity in (partial_similarity(x), plain)]
    squared = np.square(plain)
    return max(placements, key=lambda order: grid_score(order, squared, height, width))


def place_on_grid(similarity: np.ndarray, height: int, width: int) -> np.ndarray:
    """A 2D spectral embedding of the graph of ``similarity``'s mutual 4-nearest neighbours and each feature's 2
    nearest, turned to the angle whose assignment to cells scores best, then annealed (the best of a few angles and
    seeds). The annealing counts each graph edge kept side by side as 1, and the similarity only as a tie-break:
    with the similarity itself the weak direction of an anisotropic image (Fashion-MNIST's pixels correlate more
    down than across) barely counts, and the annealing tears it."""
    strongest = similarity.max(axis=1).mean()
    weights = similarity / strongest if strongest > 0 else similarity  # the best neighbour weighs about 1
    # mutual pairs alone can leave a pixel or two cut off, and a cut-off piece takes over the slowest Laplacian
    # modes (on one Fashion-MNIST draw: 65% of neighbours instead of 82%); each feature's two strongest links
    # (true neighbours for 99% of pixels) keep the graph in one piece
    graph = np.maximum(knn_graph(weights, 4, mutual=True), knn_graph(weights, 2))
    objective = (graph > 10 * CONNECT).astype(np.float64) + GRID_TIE_BREAK * weights
    embedding = spectral_embedding(graph, 2)
    starts = [assign_to_cells(embedding @ turn(degrees), height, width) for degrees in range(0, 90, GRID_ANGLE_STEP)]
    starts.sort(key=lambda order: -grid_score(order, objective, height, width))
    refined = [refine_grid(order, objective, height, width, seed)
               for order in starts[:GRID_STARTS] for seed in range(GRID_SEEDS)]
    return max(refined, key=lambda order: grid_score(order, objective, height, width))


def turn(degrees: float) -> np.ndarray:
    """The 2 x 2 rotation by ``degrees``: a square grid's two slowest Laplacian modes come in any mix of the axes."""
    radians = math.radians(degrees)
    return np.array([[math.cos(radians), -math.sin(radians)], [math.sin(radians), math.cos(radians)]])


def assign_to_cells(embedding: np.ndarray, height: int, width: int) -> np.ndarray:
    """Features (2D coordinates, rank-normalized per axis to [0, 1]) assigned one to a cell at least total squared
    distance by ``scipy.optimize.linear_sum_assignment``; the feature in each cell, row-major."""
    from scipy.optimize import linear_sum_assignment

    size = height * width
    ranks = np.argsort(np.argsort(embedding, axis=0, kind="stable"), axis=0) / max(size - 1, 1)
    rows, cols = np.divmod(np.arange(size), width)
    cells = np.stack([rows / max(height - 1, 1), cols / max(width - 1, 1)], axis=1)
    cost = np.square(ranks[:, None, :] - cells[None, :, :]).sum(axis=2)  # feature x cell
    features, assigned = linear_sum_assignment(cost)
    order = np.empty(size, dtype=np.int64)
    order[assigned] = features
    return order


def grid_score(order: np.ndarray, weights: np.ndarray, height: int, width: int) -> float:
    """Sum of ``weights`` between the features that ``order`` puts in horizontally or vertically adjacent cells."""
    grid = np.asarray(order).reshape(height, width)
    return float(weights[grid[:, 1:], grid[:, :-1]].sum() + weights[grid[1:], grid[:-1]].sum())


def refine_grid(order: np.ndarray, weights: np.ndarray, height: int, width: int, seed: int = 0) -> np.ndarray:
    """Simulated annealing of swaps between two cells, raising ``grid_score``: the spectral placement keeps the
    coarse layout but tears pixel-level neighbourhoods, which local swaps mend. A swap partner is a nearby cell or
    a cell next to one of the feature's most similar features. The temperature scales with the mean strongest
    weight, so scaling ``weights`` does not change the result. Deterministic for a given ``seed``."""
    size = height * width
    if size < 4:
        return np.asarray(order)
    rng = random.Random(seed)
    placed = [int(f) for f in order]                 # feature in each cell
    cell_of = [0] * size
    for cell, feature in enumerate(placed):
        cell_of[feature] = cell
    rows, cols = np.divmod(np.arange(size), width)
    beside = [[int(r * width + c) for r, c in ((i // width + dr, i % width + dc)
                                                for dr, dc in ((1, 0), (-1, 0), (0, 1), (0, -1)))
               if 0 <= r < height and 0 <= c < width] for i in range(size)]
    nearby = [np.flatnonzero((np.abs(rows - rows[i]) <= GRID_RADIUS) & (np.abs(cols - cols[i]) <= GRID_RADIUS)
                             & (np.arange(size) != i)).tolist() for i in range(size)]
    friends = np.argsort(-weights, axis=1, kind="stable")[:, :4].tolist()
    table = weights.tolist()
    moves = GRID_MOVES_PER_CELL * size
    scale = float(np.max(weights, axis=1).mean()) or 1.0
    start, end = (scale * t for t in GRID_TEMPERATURE)
    cooling, temperature = (end / start) ** (1.0 / moves), start
    for _ in range(moves):
        temperature *= cooling
        a = rng.randrange(size)
        fa = placed[a]
        b = rng.choice(nearby[a]) if rng.random() < 0.5 else rng.choice(beside[cell_of[rng.choice(friends[fa])]])
        if b == a:
            continue
        fb = placed[b]
        row_a, row_b = table[fa], table[fb]
        gain = sum(row_b[placed[n]] - row_a[placed[n]] for n in beside[a] if n != b) + \
            sum(row_a[placed[n]] - row_b[placed[n]] for n in beside[b] if n != a)
        if gain > 0 or rng.random() < math.exp(gain / temperature):
            placed[a], placed[b], cell_of[fa], cell_of[fb] = fb, fa, b, a
    return np.asarray(placed, dtype=np.int64)


def recover_order(x_train: np.ndarray, method: str, grid: tuple[int, int] | None = None) -> np.ndarray:
    """The order ``method`` recovers from the training samples ``x_train`` (any shape; features flattened)."""
    if method not in METHODS:
        raise DatasetError(f"reorder: unknown method {method!r}; valid: {', '.join(METHODS)}")
    if method == "grid":
        if grid is None:
            raise DatasetError("reorder: method 'grid' needs the map's (height, width)")
        return grid_order(x_train, *grid)
    return spectral_order(x_train) if method == "spectral" else chain_order(x_train)


def cached_order(x_train: np.ndarray, method: str, cache_dir: str | Path,
                 grid: tuple[int, int] | None = None) -> np.ndarray:
    """``recover_order``, cached as ``.npy`` under ``cache_dir`` per fingerprint of the data, method and grid."""
    x_train = np.ascontiguousarray(x_train, dtype=np.float32)
    digest = hashlib.sha1(x_train.tobytes())
    digest.update(f"{x_train.shape}/{method}/{grid}/v{ALGORITHM_VERSION}".encode())
    path = Path(cache_dir) / "orders" / f"{method}-{digest.hexdigest()[:16]}.npy"
    if path.is_file():
        try:
            return np.load(path)
        except (OSError, ValueError, EOFError):
            pass  # unreadable (a crash mid-write before writes were atomic): computed again and replaced
    order = recover_order(x_train, method, grid)
    write_atomically(path, lambda handle: np.save(handle, order))
    return order


def adjacent_neighbours(order: np.ndarray, positions: np.ndarray) -> float:
    """Share of side-by-side pairs in ``order`` that were side by side originally (``positions[f]`` is feature
    ``f``'s true 1D position): 1.0 for a perfect recovery, either direction."""
    steps = np.abs(np.diff(positions[np.asarray(order)]))
    return float(np.mean(steps == 1)) if len(steps) else 1.0


def grid_neighbours(order: np.ndarray, positions: np.ndarray, height: int, width: int) -> float:
    """Share of grid-adjacent cell pairs in ``order`` (placed row-major on ``height`` x ``width``) whose features
    were grid neighbours originally (``positions[f]`` is feature ``f``'s true row-major cell): 1.0 for a perfect
    recovery, turned or mirrored."""
    rows, cols = (v.reshape(height, width) for v in np.divmod(positions[np.asarray(order)], width))
    across = np.abs(np.diff(rows, axis=1)) + np.abs(np.diff(cols, axis=1))
    down = np.abs(np.diff(rows, axis=0)) + np.abs(np.diff(cols, axis=0))
    return float(((across == 1).sum() + (down == 1).sum()) / (across.size + down.size))


def grid_shape(features: int) -> tuple[int, int]:
    """The most square H x W with H <= W holding ``features`` cells."""
    height = max(d for d in range(1, math.isqrt(features) + 1) if features % d == 0)
    return height, features // height


def data_orders(x_train: np.ndarray, methods: list[str], image: tuple[int, int, int] | None,
                cache_dir: str | Path) -> dict[str, list[int]]:
    """Each requested method's order from the training split: 1D methods over the flattened features, ``grid``
    over the H x W positions of ``image`` (channels averaged), all cached."""
    x_train = np.asarray(x_train).reshape(len(x_train), -1)
    orders = {}
    for method in methods:
        if method == "grid":
            channels, height, width = image
            positions = x_train.reshape(len(x_train), channels, height * width).mean(axis=1)
            orders[method] = cached_order(positions, method, cache_dir, (height, width)).tolist()
        else:
            orders[method] = cached_order(x_train, method, cache_dir).tolist()
    return orders
