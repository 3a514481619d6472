"""Tests for search.efficiency.pareto: hand-computed cases plus agreement with Optuna's own implementations.

Optuna (a dependency) is the reference: `compute_hypervolume` (WFG), `_fast_non_domination_rank` and the
NSGA-II sampler's `_calc_crowding_distance`, on random point sets in 2 and 3 objectives: uniform (mostly
dominated), all on one front, and on a coarse grid (ties and exact duplicates). docs/design.md says why we
keep our own code; bench/bench_pareto.py adds moocore and timings.
"""

from __future__ import annotations

import numpy as np
import optuna
import pytest
from optuna._hypervolume import compute_hypervolume
from optuna.samplers.nsgaii._elite_population_selection_strategy import _calc_crowding_distance
from optuna.study._multi_objective import _fast_non_domination_rank

from search.efficiency.pareto import (
    crowding_distance,
    hypervolume,
    hypervolume_history,
    knee_point,
    non_dominated_ranks,
    pareto_mask,
    to_minimization,
)

MIN2 = ("minimize", "minimize")


def test_ranks_hand_case() -> None:
    pts = np.array([[1, 1], [2, 2], [3, 3], [1, 3], [3, 1], [2, 2]], dtype=float)
    ranks = non_dominated_ranks(pts, MIN2)
    # (1,1) dominates everything; (2,2) twice (duplicates share a rank) is dominated only by (1,1);
    # (1,3) and (3,1) are dominated only by (1,1); (3,3) by all the rest.
    assert ranks.tolist() == [0, 1, 2, 1, 1, 1]
    assert pareto_mask(pts, MIN2).tolist() == [True, False, False, False, False, False]


def test_ranks_respect_maximize() -> None:
    # (accuracy up, params down): (0.9, 10) and (0.5, 5) trade off; (0.4, 20) is dominated by both.
    pts = np.array([[0.9, 10.0], [0.5, 5.0], [0.4, 20.0]])
    assert non_dominated_ranks(pts, ("maximize", "minimize")).tolist() == [0, 0, 1]
    # Minimising both instead: (0.9, 10) is now dominated by (0.5, 5); (0.4, 20) trades off.
    assert non_dominated_ranks(pts, ("minimize", "minimize")).tolist() == [1, 0, 0]


def test_nan_is_worst() -> None:
    pts = np.array([[np.nan, 1.0], [0.5, 2.0]])
    assert non_dominated_ranks(pts, ("maximize", "minimize")).tolist() == [0, 0]
    pts = np.array([[np.nan, 2.0], [0.5, 1.0]])
    assert non_dominated_ranks(pts, ("maximize", "minimize")).tolist() == [1, 0]


def test_empty_and_bad_directions() -> None:
    assert non_dominated_ranks(np.empty((0, 2)), MIN2).shape == (0,)
    assert hypervolume(np.empty((0, 2)), MIN2, [1, 1]) == 0.0
    with pytest.raises(ValueError, match="^directions"):
        non_dominated_ranks(np.zeros((2, 2)), ("minimize",))
    with pytest.raises(ValueError, match="^directions"):
        non_dominated_ranks(np.zeros((2, 2)), ("minimize", "up"))
    with pytest.raises(ValueError, match="^points"):
        knee_point(np.empty((0, 2)), MIN2)


def test_crowding_hand_case() -> None:
    front = np.array([[0, 3], [1, 2], [2, 1], [3, 0]], dtype=float)
    cd = crowding_distance(front, MIN2)
    # Extremes are inf; interior: gap/range per objective = 2/3 + 2/3.
    assert np.isinf(cd[0]) and np.isinf(cd[3])
    np.testing.assert_allclose(cd[1:3], [4 / 3, 4 / 3])
    # Computed per front: a dominated pair forms its own front of size 2 -> both inf.
    pts = np.vstack([front, [[5, 5], [6, 4]]])
    cd = crowding_distance(pts, MIN2)
    assert np.isinf(cd[4]) and np.isinf(cd[5])
    np.testing.assert_allclose(cd[1:3], [4 / 3, 4 / 3])


def test_hypervolume_2d_hand() -> None:
    pts = np.array([[1, 3], [2, 2], [3, 1]], dtype=float)
    assert hypervolume(pts, MIN2, [4, 4]) == pytest.approx(6.0)
    # A dominated point and one outside the reference box change nothing.
    more = np.vstack([pts, [[3, 3], [5, 0.5], [0.5, 4.0]]])
    assert hypervolume(more, MIN2, [4, 4]) == pytest.approx(6.0)
    # Maximised accuracy: (acc 0.8, params 2) with reference (acc 0.5, params 4) -> 0.3 * 2.
    assert hypervolume([[0.8, 2.0]], ("maximize", "minimize"), [0.5, 4.0]) == pytest.approx(0.6)


def test_hypervolume_3d_hand() -> None:
    d3 = ("minimize",) * 3
    assert hypervolume([[0, 0, 0]], d3, [1, 2, 3]) == pytest.approx(6.0)
    # Boxes 2*2*1 and 1*1*2 overlap in the unit cube [1,2]^3 -> 4 + 2 - 1.
    assert hypervolume([[0, 0, 1], [1, 1, 0]], d3, [2, 2, 2]) == pytest.approx(5.0)
    # One maximised axis: acc 0.9 vs ref 0.5 -> the same geometry scaled by 0.4.
    assert hypervolume([[0.9, 0, 0]], ("maximize", "minimize", "minimize"), [0.5, 2, 3]) == pytest.approx(
        0.4 * 6.0
    )


@pytest.mark.parametrize("m", [2, 3])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_hypervolume_matches_optuna(m: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 40
    pts = rng.random((n, m))
    # Column 0 maximised (accuracy-like), the rest minimised.
    directions = ("maximize",) + ("minimize",) * (m - 1)
    reference = np.array([0.1] + [0.9] * (m - 1))
    loss = to_minimization(pts, directions)
    ref_loss = reference * np.array([-1.0] + [1.0] * (m - 1))
    inside = np.all(loss < ref_loss, axis=1)
    expected = compute_hypervolume(loss[inside], ref_loss) if inside.any() else 0.0
    assert hypervolume(pts, directions, reference) == pytest.approx(expected, rel=1e-10, abs=1e-12)


def test_hypervolume_history() -> None:
    pts = np.array([[2, 2], [3, 3], [1, 3], [3, 1], [5, 0]], dtype=float)
    hist = hypervolume_history(pts, MIN2, [4, 4])
    assert hist == pytest.approx([4.0, 4.0, 5.0, 6.0, 6.0])
    rng = np.random.default_rng(3)
    pts3 = rng.random((30, 3))
    hist3 = hypervolume_history(pts3, ("minimize",) * 3, [1, 1, 1])
    assert all(b >= a for a, b in zip(hist3, hist3[1:], strict=False))
    assert hist3[-1] == pytest.approx(hypervolume(pts3, ("minimize",) * 3, [1, 1, 1]))


def test_knee_point() -> None:
    pts = np.array([[0, 10], [1, 1], [10, 0], [5, 5]], dtype=float)
    assert knee_point(pts, MIN2) == 1
    # Same with accuracy maximised; the dominated index 0 is never chosen.
    pts = np.array([[0.1, 500.0], [0.9, 100.0], [0.85, 20.0], [0.2, 10.0]])
    assert knee_point(pts, ("maximize", "minimize")) == 2
    assert knee_point([[3.0, 3.0]], MIN2) == 0


# --------------------------------------------------------------------------------------------------
# Random point sets against Optuna
# --------------------------------------------------------------------------------------------------

KINDS = ("uniform", "front", "grid")


def random_points(kind: str, n: int, m: int, seed: int) -> np.ndarray:
    """``uniform``: mostly dominated; ``front``: mutually non-dominated; ``grid``: ties and duplicates."""
    rng = np.random.default_rng(seed)
    if kind == "uniform":
        return rng.random((n, m))
    if kind == "front":
        x = np.abs(rng.normal(size=(n, m)))
        return 1.0 - x / np.linalg.norm(x, axis=1, keepdims=True)
    return rng.integers(0, 5, size=(n, m)).astype(float) / 4.0


def mixed_directions(m: int) -> tuple[str, ...]:
    """Column 0 maximised (accuracy-like), the rest minimised, as in a study."""
    return ("maximize",) + ("minimize",) * (m - 1)


def optuna_crowding(loss: np.ndarray, ranks: np.ndarray) -> np.ndarray:
    """Optuna's crowding distance front by front (minimisation values), with our <= 2-member convention."""
    out = np.zeros(len(loss))
    for r in np.unique(ranks):
        idx = np.flatnonzero(ranks == r)
        trials = []
        for i in idx:
            trial = optuna.trial.create_trial(values=[float(v) for v in loss[i]])
            trial.number = int(i)
            trials.append(trial)
        for number, d in _calc_crowding_distance(trials).items():
            out[number] = d
        if len(idx) <= 2:  # ours: every member of a 1- or 2-point front is an extreme (inf)
            out[idx] = np.inf
    return out


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("m", [2, 3])
def test_ranks_match_optuna_on_random_sets(kind: str, m: int) -> None:
    directions = mixed_directions(m)
    for seed in range(4):
        pts = random_points(kind, 120, m, seed)
        loss = to_minimization(pts, directions)
        expected = _fast_non_domination_rank(loss)
        assert non_dominated_ranks(pts, directions).tolist() == expected.tolist()
        assert pareto_mask(pts, directions).tolist() == (expected == 0).tolist()
    if kind == "grid":  # the grid really has duplicates and several fronts, or the case tests nothing
        assert len(np.unique(pts, axis=0)) < len(pts) and expected.max() >= 2


def test_ranks_match_optuna_with_nan() -> None:
    # A diverged trial (NaN) is the worst value: the same ranks as Optuna's on +inf.
    pts = random_points("uniform", 60, 3, 7)
    pts[::7, 0] = np.nan
    pts[3, 2] = np.nan
    directions = mixed_directions(3)
    loss = to_minimization(pts, directions)
    assert np.isinf(loss).sum() == 10
    assert non_dominated_ranks(pts, directions).tolist() == _fast_non_domination_rank(loss).tolist()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("m", [2, 3])
def test_hypervolume_matches_optuna_on_random_sets(kind: str, m: int) -> None:
    directions = mixed_directions(m)
    reference = np.array([0.05] + [0.95] * (m - 1))  # some points fall outside the box
    ref_loss = reference * np.array([-1.0] + [1.0] * (m - 1))
    for seed in range(4):
        pts = random_points(kind, 120, m, seed)
        loss = to_minimization(pts, directions)
        inside = np.all(loss < ref_loss, axis=1)
        assert 0 < inside.sum() < len(pts)
        expected = compute_hypervolume(loss[inside], ref_loss)
        assert hypervolume(pts, directions, reference) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("m", [2, 3])
def test_hypervolume_history_matches_optuna_prefixes(m: int) -> None:
    directions = ("minimize",) * m
    ref = np.full(m, 1.0)
    pts = np.vstack([random_points("grid", 40, m, 5), random_points("front", 20, m, 5)])
    hist = hypervolume_history(pts, directions, ref)
    for i in range(1, len(pts) + 1):
        prefix = pts[:i][np.all(pts[:i] < ref, axis=1)]
        assert hist[i - 1] == pytest.approx(
            compute_hypervolume(prefix, ref) if len(prefix) else 0.0, abs=1e-12
        )


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("m", [2, 3])
def test_crowding_matches_optuna_on_random_sets(kind: str, m: int) -> None:
    directions = mixed_directions(m)
    for seed in range(4):
        pts = random_points(kind, 80, m, seed)
        loss = to_minimization(pts, directions)
        expected = optuna_crowding(loss, _fast_non_domination_rank(loss))
        np.testing.assert_allclose(crowding_distance(pts, directions), expected, rtol=1e-12)


def test_crowding_duplicates_and_constant_objective_by_hand() -> None:
    # A front (a, b, c, d, e) whose last objective is constant, a = d duplicated; f = (2, 2) is dominated.
    a, b, c, d, e, f = [1, 3, 1], [0, 4, 1], [4, 0, 1], [1, 3, 1], [2, 1, 1], [2, 2, 1]
    pts = np.array([a, b, c, d, e, f], dtype=float)
    cd = crowding_distance(pts, ("minimize",) * 3)
    # x sorted b, a, d, e, c (range 4): a (1-0)/4, d (2-1)/4, e (4-1)/4. y sorted c, e, a, d, b (the tied
    # a, d keep their x order; range 4): e (3-0)/4, a (3-1)/4, d (4-3)/4. The constant z adds nothing
    # (it would make a and e "extremes" if it counted). f is alone on its front: inf.
    np.testing.assert_allclose(cd, [3 / 4, np.inf, np.inf, 1 / 2, 3 / 2, np.inf])
    np.testing.assert_allclose(cd, optuna_crowding(pts, _fast_non_domination_rank(pts)))


def test_crowding_tie_keeps_previous_objective_order() -> None:
    # x and y tie in objective 1 and come in the opposite order of objective 0.
    y, z, w, x, v = [3, 2, 1], [0, 4, 4], [4, 1, 4], [1, 2, 3], [4, 4, 0]
    pts = np.array([y, z, w, x, v], dtype=float)
    assert non_dominated_ranks(pts, ("minimize",) * 3).tolist() == [0] * 5
    cd = crowding_distance(pts, ("minimize",) * 3)
    # Objective 0: x 3/4, y 3/4. Objective 1 (range 3), sorted w, x, y, z, v: x (2-1)/3, y (4-2)/3.
    # Objective 2: y (3-0)/4, x (4-1)/4. z, w, v are extremes.
    np.testing.assert_allclose(cd, [3 / 4 + 2 / 3 + 3 / 4, np.inf, np.inf, 3 / 4 + 1 / 3 + 3 / 4, np.inf])
    np.testing.assert_allclose(cd, optuna_crowding(pts, _fast_non_domination_rank(pts)))
