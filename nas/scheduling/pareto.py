"""Pareto math on plain tuples, all objectives oriented to be maximized (minimized ones negated).

``rung_survivors`` is the Pareto-aware ASHA rule (after MO-ASHA, Schmucker et al. 2021): at a rung, a trial
continues only if it ranks in the top ``ceil(n / reduction_factor)`` of the ``n`` trials that reached the
rung, ranked by non-dominated sorting, ties inside a front broken by crowding distance (larger first), then by
the first objective (accuracy), so two extremes of a front are never told apart by trial number alone.
"""
from __future__ import annotations

import bisect
import math
import statistics
from typing import Hashable, Mapping, Sequence

import numpy as np

Point = Sequence[float]


def oriented(values: Sequence[float], directions: Sequence[str]) -> tuple[float, ...]:
    """Values turned to be maximized: a ``minimize`` objective's value is negated."""
    return tuple(-float(v) if d == "minimize" else float(v) for v, d in zip(values, directions))


def dominates(a: Point, b: Point) -> bool:
    """``a`` is at least as good everywhere and better somewhere (maximizing)."""
    return all(x >= y for x, y in zip(a, b)) and any(x > y for x, y in zip(a, b))


def non_dominated_fronts(points: Mapping[Hashable, Point]) -> list[list[Hashable]]:
    """Keys grouped into fronts: front 0 is the Pareto set, front 1 the set once front 0 is removed, ...

    Two objectives: a sort and one sweep with binary search, O(n log n). More: numpy dominance counts, O(n^2) in
    vectorized steps. Both equal :func:`non_dominated_fronts_by_definition` (tested on random inputs with ties).
    """
    if not points:
        return []
    keys = list(points)
    ranks = front_ranks(np.asarray([points[k] for k in keys], dtype=float))
    fronts: list[list[Hashable]] = [[] for _ in range(int(ranks.max()) + 1)]
    for key, rank in zip(keys, ranks.tolist()):
        fronts[rank].append(key)
    return [sorted(front, key=str) for front in fronts]


def front_ranks(values: np.ndarray) -> np.ndarray:
    """The front index of each row of ``values`` (n points x objectives, maximizing)."""
    return _fronts_2d(values) if values.shape[1] == 2 else _fronts_nd(values)


def _fronts_2d(values: np.ndarray) -> np.ndarray:
    """Front index of each row (maximizing both columns). In order of decreasing (x, y), an earlier point
    dominates a later one unless both are equal; front k keeps the lexicographic maximum (y, x) of its members,
    which strictly decreases with k, so each point's front is found by bisection. (y, x) is compared as one
    integer made of the two columns' dense ranks: the same order, and bisection on ints is fast."""
    order = np.lexsort((-values[:, 1], -values[:, 0]))
    _, y_rank = np.unique(-values[:, 1], return_inverse=True)  # ascending in minus y: what the fronts keep
    _, x_rank = np.unique(-values[:, 0], return_inverse=True)
    keys = (y_rank.reshape(-1).astype(np.int64) * len(values) + x_rank.reshape(-1))[order].tolist()
    ranks = [0] * len(values)
    tops: list[int] = []  # per front, its (y, x) maximum as a key: increasing with k
    for i, key in zip(order.tolist(), keys):
        k = bisect.bisect_left(tops, key)  # the first front whose maximum does not dominate (y, x)
        if k == len(tops):
            tops.append(key)
        else:
            tops[k] = key  # tops[k] >= key by bisection: the new minimum
        ranks[i] = k
    return np.asarray(ranks, dtype=int)


def _dominance_rows(values: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """[i, j]: row ``rows[i]`` dominates row j (maximizing every column)."""
    a, b = values[rows][:, None, :], values[None, :, :]
    return (a >= b).all(axis=2) & (a > b).any(axis=2)


def _fronts_nd(values: np.ndarray, chunk: int = 512) -> np.ndarray:
    """Front index of each row: count who dominates whom (in row chunks, memory O(chunk x n)), then peel the rows
    nobody left dominates, taking away the counts they held."""
    n = len(values)
    counts = np.zeros(n, dtype=int)
    for start in range(0, n, chunk):
        counts += _dominance_rows(values, np.arange(start, min(start + chunk, n))).sum(axis=0)
    ranks = np.full(n, -1, dtype=int)
    front, current = 0, np.flatnonzero(counts == 0)
    while current.size:
        ranks[current] = front
        for start in range(0, current.size, chunk):
            counts -= _dominance_rows(values, current[start:start + chunk]).sum(axis=0)
        counts[current] = -1  # placed: never picked again
        current = np.flatnonzero(counts == 0)
        front += 1
    return ranks


def non_dominated_fronts_by_definition(points: Mapping[Hashable, Point]) -> list[list[Hashable]]:
    """The fronts straight from the definition, quadratic per front: the reference the fast versions are held to."""
    remaining = dict(points)
    fronts = []
    while remaining:
        front = [k for k, p in remaining.items() if not any(dominates(q, p) for j, q in remaining.items() if j != k)]
        fronts.append(sorted(front, key=str))
        for k in front:
            del remaining[k]
    return fronts


def crowding_distance(points: Mapping[Hashable, Point]) -> dict[Hashable, float]:
    """NSGA-II crowding distance inside one front; the extremes of each objective get infinity (ties in an
    objective ordered by key as text). The reference :func:`pareto_rank`'s vectorized form is held to."""
    distance = {k: 0.0 for k in points}
    if len(points) <= 2:
        return {k: math.inf for k in points}
    dims = len(next(iter(points.values())))
    for d in range(dims):
        ordered = sorted(points, key=lambda k: (points[k][d], str(k)))
        low, high = points[ordered[0]][d], points[ordered[-1]][d]
        distance[ordered[0]] = distance[ordered[-1]] = math.inf
        if high == low:
            continue
        for before, key, after in zip(ordered, ordered[1:], ordered[2:]):
            distance[key] += (points[after][d] - points[before][d]) / (high - low)
    return distance


def _crowding(values: np.ndarray, text_rank: np.ndarray) -> np.ndarray:
    """:func:`crowding_distance` of the rows of one front, ``text_rank`` ordering ties as its keys' text does."""
    n, dims = values.shape
    distance = np.zeros(n)
    if n <= 2:
        return np.full(n, math.inf)
    for d in range(dims):
        order = np.lexsort((text_rank, values[:, d]))
        column = values[order, d]
        low, high = column[0], column[-1]
        distance[order[0]] = distance[order[-1]] = math.inf
        if high != low:
            distance[order[1:-1]] += (column[2:] - column[:-2]) / (high - low)
    return distance


def pareto_rank(points: Mapping[Hashable, Point], limit: int | None = None) -> list[Hashable]:
    """All keys (or the first ``limit``, ranking only the fronts they need), best first: by front, then crowding
    distance (larger first), first objective, key as text. Vectorized; at 10,000 points see RESULTS "Scale"."""
    if not points:
        return []
    keys = list(points)
    values = np.asarray([points[k] for k in keys], dtype=float)
    ranks = front_ranks(values)
    by_front = np.argsort(ranks, kind="stable")
    order: list[Hashable] = []
    for members in np.split(by_front, np.flatnonzero(np.diff(ranks[by_front])) + 1):
        if limit is not None and len(order) >= limit:
            break
        order.extend(_rank_front(keys, values, members))
    return order


def _rank_front(keys: list, values: np.ndarray, members: np.ndarray) -> list:
    """The keys of one front's rows ``members``, by crowding distance (larger first), first objective, key text."""
    text = [str(keys[i]) for i in members.tolist()]
    text_rank = np.argsort(np.argsort(np.asarray(text, dtype=object), kind="stable"), kind="stable")
    crowd = _crowding(values[members], text_rank)
    within = np.lexsort((text_rank, -values[members, 0], -crowd))
    return [keys[i] for i in members[within].tolist()]


def rung_survivors(rung: Mapping[Hashable, Point], reduction_factor: int, floor: str = "none") -> set[Hashable]:
    """The trials at a rung allowed to continue: the top ``ceil(n / reduction_factor)`` by Pareto rank.

    The extremes of the first front have infinite crowding distance, so once two or more trials go on, the
    smallest model at the rung (always non-dominated on size) goes on whatever its accuracy. With ``floor``
    'median', only trials whose accuracy at the rung (the first objective) is at least the rung's median are
    ranked; as at least half the trials are, the number kept is unchanged. Whole fronts above the cut go on as
    they are: only the front the cut falls in is ordered (the same set as :func:`pareto_rank`'s first ones).
    """
    keep = math.ceil(len(rung) / reduction_factor)
    if floor == "median" and rung:
        median = statistics.median(point[0] for point in rung.values())
        rung = {key: point for key, point in rung.items() if point[0] >= median}
    if not rung or keep == 0:
        return set()
    keys = list(rung)
    values = np.asarray([rung[k] for k in keys], dtype=float)
    ranks = front_ranks(values)
    cut = int(np.searchsorted(np.cumsum(np.bincount(ranks)), keep))  # the front where the count reaches keep
    above = [keys[i] for i in np.flatnonzero(ranks < cut).tolist()]
    return set(above) | set(_rank_front(keys, values, np.flatnonzero(ranks == cut))[:keep - len(above)])


def pareto_set(points: Mapping[Hashable, Point]) -> list[Hashable]:
    """Keys of the non-dominated points."""
    return non_dominated_fronts(points)[0] if points else []


def hypervolume_2d(points: Sequence[Point], reference: Point) -> float:
    """Area dominated by ``points`` (maximizing both) and bounded below by ``reference``."""
    useful = sorted((p for p in points if p[0] > reference[0] and p[1] > reference[1]), key=lambda p: -p[0])
    area, best_y = 0.0, reference[1]
    for x, y in useful:
        if y > best_y:
            area += (x - reference[0]) * (y - best_y)
            best_y = y
    return area
