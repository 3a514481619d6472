"""Pareto utilities for the multi-objective search (pure numpy, no optuna).

Every function takes raw objective values plus a per-column direction (``"maximize"`` or
``"minimize"``) and internally converts to minimisation by negating maximised columns, so callers
never have to flip signs themselves. ``NaN`` values are treated as the worst possible value
(``+inf`` after conversion): a diverged trial is never on the front.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = [
    "non_dominated_ranks",
    "crowding_distance",
    "pareto_mask",
    "hypervolume",
    "hypervolume_history",
    "knee_point",
    "to_minimization",
]


def _direction_signs(directions: Sequence[object], m: int) -> np.ndarray:
    """+1 for minimised columns, -1 for maximised ones; accepts strings or enum-like objects."""
    if len(directions) != m:
        raise ValueError(f"directions: expected {m} entries (one per objective), got {len(directions)}")
    signs = np.empty(m, dtype=float)
    for i, d in enumerate(directions):
        # Accept optuna.study.StudyDirection without importing optuna (its .name is MINIMIZE/MAXIMIZE).
        name = str(getattr(d, "name", d)).lower()
        if name == "minimize":
            signs[i] = 1.0
        elif name == "maximize":
            signs[i] = -1.0
        else:
            raise ValueError(f"directions: entry {i} must be 'minimize' or 'maximize', got {d!r}")
    return signs


def _as_points(points: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
    arr = np.asarray(points, dtype=float)
    if arr.ndim == 1 and arr.size == 0:
        return arr.reshape(0, 0)
    if arr.ndim != 2:
        raise ValueError(f"points: expected a 2-D array (n, m), got shape {arr.shape}")
    return arr


def to_minimization(
    points: np.ndarray | Sequence[Sequence[float]], directions: Sequence[object]
) -> np.ndarray:
    """Return a float copy of ``points`` in which every column is minimised and NaN is ``+inf``.

    Args:
        points: ``(n, m)`` objective values.
        directions: ``m`` entries, ``"minimize"`` or ``"maximize"``.
    """
    arr = _as_points(points)
    if arr.shape[0] == 0:
        return arr.reshape(0, len(directions))
    out = arr * _direction_signs(directions, arr.shape[1])
    out[np.isnan(out)] = np.inf
    return out


def _dominance_matrix(loss: np.ndarray) -> np.ndarray:
    """``D[i, j]`` is True when point i dominates point j (all <=, at least one <)."""
    le = np.all(loss[:, None, :] <= loss[None, :, :], axis=-1)
    lt = np.any(loss[:, None, :] < loss[None, :, :], axis=-1)
    return le & lt


def _ranks_min(loss: np.ndarray) -> np.ndarray:
    n = loss.shape[0]
    ranks = np.full(n, -1, dtype=int)
    if n == 0:
        return ranks
    dom = _dominance_matrix(loss)
    # Fast non-dominated sort (Deb et al.): peel fronts by counting remaining dominators.
    dominated_by = dom.sum(axis=0)
    remaining = np.ones(n, dtype=bool)
    rank = 0
    while remaining.any():
        front = remaining & (dominated_by == 0)
        ranks[front] = rank
        remaining &= ~front
        dominated_by = dominated_by - dom[front].sum(axis=0)
        rank += 1
    return ranks


def non_dominated_ranks(points: np.ndarray, directions: Sequence[object]) -> np.ndarray:
    """Non-dominated sorting rank of every point (0 = Pareto front, 1 = next front, ...).

    Identical points do not dominate each other and therefore share a rank.

    Args:
        points: ``(n, m)`` objective values.
        directions: ``m`` entries, ``"minimize"`` or ``"maximize"``.

    Returns:
        ``int`` array of shape ``(n,)``.
    """
    return _ranks_min(to_minimization(points, directions))


def pareto_mask(points: np.ndarray, directions: Sequence[object]) -> np.ndarray:
    """Boolean mask of the non-dominated points.

    Args:
        points: ``(n, m)`` objective values.
        directions: ``m`` entries, ``"minimize"`` or ``"maximize"``.
    """
    return non_dominated_ranks(points, directions) == 0


def _crowding_one_front(loss: np.ndarray) -> np.ndarray:
    n, m = loss.shape
    if n <= 2:
        return np.full(n, np.inf)
    dist = np.zeros(n, dtype=float)
    order = np.arange(n)
    for j in range(m):
        col = loss[:, j].copy()
        finite = np.isfinite(col)
        if not finite.any():
            continue
        # Replace +inf (NaN/worst) by a finite value just beyond the worst so ranges stay finite.
        lo, hi = col[finite].min(), col[finite].max()
        col[~finite] = hi + max(hi - lo, 1.0)
        # Ties keep the previous objective's order, as in Optuna's NSGA-II, so tied points get the
        # same distances there and here (tests/test_pareto.py compares the two).
        order = order[np.argsort(col[order], kind="stable")]
        span = col[order[-1]] - col[order[0]]
        if span <= 0:
            continue  # constant over the front: no extremes, nothing to tell points apart by
        dist[order[0]] = np.inf
        dist[order[-1]] = np.inf
        gaps = (col[order[2:]] - col[order[:-2]]) / span
        dist[order[1:-1]] += gaps
    return dist


def crowding_distance(points: np.ndarray, directions: Sequence[object]) -> np.ndarray:
    """NSGA-II crowding distance, computed separately within each non-dominated front.

    Extreme points of each front (and every point of a front with <= 2 members) get ``inf``; the
    others get the sum over objectives of the normalised gap between their two neighbours. An
    objective that is constant over a front adds nothing; tied values are ordered by the previous
    objective's order. Both as in Optuna's NSGA-II sampler, which gives the same distances on finite
    values (it gives a one-point front 0 instead of ``inf``).

    Args:
        points: ``(n, m)`` objective values.
        directions: ``m`` entries, ``"minimize"`` or ``"maximize"``.

    Returns:
        ``float`` array of shape ``(n,)``.
    """
    loss = to_minimization(points, directions)
    ranks = _ranks_min(loss)
    dist = np.zeros(loss.shape[0], dtype=float)
    for r in np.unique(ranks):
        idx = np.flatnonzero(ranks == r)
        dist[idx] = _crowding_one_front(loss[idx])
    return dist


def _hv_2d(loss: np.ndarray, ref: np.ndarray) -> float:
    """Exact 2-D hypervolume by a sweep along x; ``loss`` already strictly dominates ``ref``."""
    if loss.shape[0] == 0:
        return 0.0
    order = np.lexsort((loss[:, 1], loss[:, 0]))
    x = loss[order, 0]
    y = np.minimum.accumulate(loss[order, 1])
    # Each point owns the strip from its x to the next point's x, at height ref_y - best y so far.
    x_next = np.append(x[1:], ref[0])
    return float(np.sum((x_next - x) * (ref[1] - y)))


def _hv_rec(loss: np.ndarray, ref: np.ndarray) -> float:
    """Exact hypervolume by slicing along the last objective (HSO); fast for m <= 3."""
    n, m = loss.shape
    if n == 0:
        return 0.0
    if m == 1:
        return float(ref[0] - loss[:, 0].min())
    if m == 2:
        return _hv_2d(loss, ref)
    order = np.argsort(loss[:, -1], kind="stable")
    z = loss[order, -1]
    z_next = np.append(z[1:], ref[-1])
    total = 0.0
    for i in range(n):
        depth = z_next[i] - z[i]
        if depth <= 0:
            continue
        # Slab [z_i, z_{i+1}): covered by the projections of every point with z <= z_i.
        total += depth * _hv_rec(loss[order[: i + 1], :-1], ref[:-1])
    return total


def _prepare_hv(points: np.ndarray, directions: Sequence[object], reference: Sequence[float]):
    loss = to_minimization(points, directions)
    m = len(directions)
    ref_raw = np.asarray(reference, dtype=float)
    if ref_raw.shape != (m,):
        raise ValueError(f"reference: expected {m} values, got shape {ref_raw.shape}")
    ref = ref_raw * _direction_signs(directions, m)
    return loss, ref


def hypervolume(points: np.ndarray, directions: Sequence[object], reference: Sequence[float]) -> float:
    """Exact (un-normalised) hypervolume dominated by ``points`` and bounded by ``reference``.

    Points that do not strictly dominate the reference point in every objective contribute
    nothing and are ignored. Exact for any m; intended for m = 2 and 3 (sweep), where it costs
    O(n log n) and O(n^2 log n).

    Args:
        points: ``(n, m)`` objective values.
        directions: ``m`` entries, ``"minimize"`` or ``"maximize"``.
        reference: ``m`` values in the same (raw) units and directions as ``points``.
    """
    loss, ref = _prepare_hv(points, directions, reference)
    if loss.shape[0] == 0:
        return 0.0
    inside = np.all(loss < ref, axis=1)
    loss = loss[inside]
    if loss.shape[0] == 0:
        return 0.0
    loss = loss[_ranks_min(loss) == 0]
    return _hv_rec(loss, ref)


def hypervolume_history(
    points: np.ndarray, directions: Sequence[object], reference: Sequence[float]
) -> list[float]:
    """Hypervolume of the first i points for i = 1..n (points in completion order).

    Args:
        points: ``(n, m)`` objective values in the order trials completed.
        directions: ``m`` entries, ``"minimize"`` or ``"maximize"``.
        reference: ``m`` values in the same units and directions as ``points``.

    Returns:
        ``n`` non-decreasing floats.
    """
    loss, ref = _prepare_hv(points, directions, reference)
    history: list[float] = []
    front = np.empty((0, len(ref)), dtype=float)
    current = 0.0
    for p in loss:
        # Only a point inside the reference box that no front member weakly dominates changes the HV.
        if np.all(p < ref) and not np.any(np.all(front <= p, axis=1)):
            keep = ~np.all(p <= front, axis=1)
            front = np.vstack([front[keep], p])
            current = _hv_rec(front, ref)
        history.append(current)
    return history


def knee_point(points: np.ndarray, directions: Sequence[object]) -> int:
    """Index (into ``points``) of the front point closest to the utopia point.

    Objectives are min-max normalised to [0, 1] over the front (0 = best); the utopia point is
    the origin; the point with the smallest Euclidean distance wins, ties go to the lower index.
    Objectives that are constant over the front contribute 0.

    Args:
        points: ``(n, m)`` objective values, n >= 1.
        directions: ``m`` entries, ``"minimize"`` or ``"maximize"``.
    """
    loss = to_minimization(points, directions)
    if loss.shape[0] == 0:
        raise ValueError("points: knee_point needs at least one point")
    idx = np.flatnonzero(_ranks_min(loss) == 0)
    front = loss[idx]
    norm = np.zeros_like(front)
    for j in range(front.shape[1]):
        col = front[:, j]
        finite = np.isfinite(col)
        if not finite.any():
            continue
        lo, hi = col[finite].min(), col[finite].max()
        if hi > lo:
            norm[finite, j] = (col[finite] - lo) / (hi - lo)
        # A non-finite (worst) value on the front normalises to 1, the worst end of the range.
        norm[~finite, j] = 1.0
    dist = np.sqrt(np.sum(norm**2, axis=1))
    return int(idx[int(np.argmin(dist))])
