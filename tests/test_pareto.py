"""Tests for search.efficiency.pareto: hand-computed cases plus agreement with optuna's own hypervolume."""

from __future__ import annotations

import numpy as np
import pytest
from optuna._hypervolume import compute_hypervolume

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
