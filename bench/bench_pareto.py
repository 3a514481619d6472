"""Our Pareto maths (search.efficiency.pareto) against Optuna's and, when importable, moocore's.

For random fronts of the sizes the search sees (n <= 200 points, 2-3 objectives) it prints, per case,
the largest disagreement with each library (hypervolume: relative error; ranks and crowding: count of
points that differ) and the median time of one call. moocore is not a project dependency; to include it:

    pip install --target /tmp/moocore moocore && PYTHONPATH=/tmp/moocore .venv/bin/python bench/bench_pareto.py

    .venv/bin/python bench/bench_pareto.py [--repeats 20] [--seeds 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import optuna
from optuna._hypervolume import compute_hypervolume
from optuna.samplers.nsgaii._elite_population_selection_strategy import _calc_crowding_distance
from optuna.study._multi_objective import _fast_non_domination_rank

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from any directory
from search.efficiency.pareto import (  # noqa: E402
    crowding_distance,
    hypervolume,
    hypervolume_history,
    non_dominated_ranks,
)

try:
    import moocore
except ImportError:  # optional: only a comparison, never used by the harness
    moocore = None


def make_points(kind: str, n: int, m: int, rng: np.random.Generator) -> np.ndarray:
    """``uniform``: mostly dominated; ``front``: all on one front (a sphere); ``grid``: ties, duplicates."""
    if kind == "uniform":
        return rng.random((n, m))
    if kind == "front":
        x = np.abs(rng.normal(size=(n, m)))
        return 1.0 - x / np.linalg.norm(x, axis=1, keepdims=True)
    return rng.integers(0, 6, size=(n, m)).astype(float) / 5.0


def optuna_crowding(loss: np.ndarray, ranks: np.ndarray) -> np.ndarray:
    """Optuna's NSGA-II crowding distance, front by front, on minimisation values."""
    out = np.zeros(len(loss))
    for r in np.unique(ranks):
        idx = np.flatnonzero(ranks == r)
        trials = []
        for i in idx:
            t = optuna.trial.create_trial(values=list(loss[i]))
            t.number = int(i)
            trials.append(t)
        for number, d in _calc_crowding_distance(trials).items():
            out[number] = d
        if len(idx) == 1:  # optuna leaves a lone point at 0, NSGA-II (and ours) give it inf
            out[idx] = np.inf
    return out


def median_ms(fn: Callable[[], object], repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


def check_case(kind: str, n: int, m: int, seeds: int) -> dict[str, float]:
    """Worst disagreements over ``seeds`` random point sets (all objectives minimised, reference 1.1)."""
    directions = ("minimize",) * m
    ref = np.full(m, 1.1)
    worst = {"hv_optuna": 0.0, "hv_moocore": 0.0, "rank_optuna": 0, "rank_moocore": 0, "crowd_optuna": 0}
    for seed in range(seeds):
        pts = make_points(kind, n, m, np.random.default_rng(seed))
        hv = hypervolume(pts, directions, ref)
        worst["hv_optuna"] = max(worst["hv_optuna"], abs(hv - compute_hypervolume(pts, ref)) / hv)
        ranks = non_dominated_ranks(pts, directions)
        worst["rank_optuna"] = max(worst["rank_optuna"], int(np.sum(ranks != _fast_non_domination_rank(pts))))
        if kind != "grid":  # tie order is a convention (see tests/test_pareto.py); compare tie-free sets
            diff = ~np.isclose(crowding_distance(pts, directions), optuna_crowding(pts, ranks))
            worst["crowd_optuna"] = max(worst["crowd_optuna"], int(diff.sum()))
        if moocore is not None:
            worst["hv_moocore"] = max(worst["hv_moocore"], abs(hv - moocore.hypervolume(pts, ref=ref)) / hv)
            worst["rank_moocore"] = max(worst["rank_moocore"], int(np.sum(ranks != moocore.pareto_rank(pts))))
    return worst


def time_case(kind: str, n: int, m: int, repeats: int) -> dict[str, float]:
    """Median ms of one hypervolume / ranking call, ours against each library."""
    pts = make_points(kind, n, m, np.random.default_rng(0))
    directions = ("minimize",) * m
    ref = np.full(m, 1.1)
    t = {
        "hv_ours": median_ms(lambda: hypervolume(pts, directions, ref), repeats),
        "hv_optuna": median_ms(lambda: compute_hypervolume(pts, ref), repeats),
        "rank_ours": median_ms(lambda: non_dominated_ranks(pts, directions), repeats),
        "rank_optuna": median_ms(lambda: _fast_non_domination_rank(pts), repeats),
        "hist_ours": median_ms(lambda: hypervolume_history(pts, directions, ref), max(1, repeats // 5)),
    }
    if moocore is not None:
        t["hv_moocore"] = median_ms(lambda: moocore.hypervolume(pts, ref=ref), repeats)
        t["rank_moocore"] = median_ms(lambda: moocore.pareto_rank(pts), repeats)
    return t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--seeds", type=int, default=5)
    args = ap.parse_args()
    print(f"optuna {optuna.__version__}, moocore {getattr(moocore, '__version__', 'not installed')}")
    print("kind     n   m | hv rel.err optuna moocore | rank diffs optuna moocore | crowd diffs optuna")
    cases = [(k, n, m) for k in ("uniform", "front", "grid") for n in (50, 200) for m in (2, 3)]
    for kind, n, m in cases:
        w = check_case(kind, n, m, args.seeds)
        print(
            f"{kind:7s} {n:4d} {m:2d} | {w['hv_optuna']:9.1e} {w['hv_moocore']:9.1e} |"
            f" {w['rank_optuna']:6d} {w['rank_moocore']:7d} | {w['crowd_optuna']:6d}"
        )
    print("\nmedian ms per call (hist = hypervolume_history over all n points)")
    print("kind     n   m | hv ours optuna moocore | rank ours optuna moocore | hist ours")
    for kind, n, m in cases:
        t = time_case(kind, n, m, args.repeats)
        print(
            f"{kind:7s} {n:4d} {m:2d} | {t['hv_ours']:7.2f} {t['hv_optuna']:6.2f} {t.get('hv_moocore', np.nan):7.3f} |"
            f" {t['rank_ours']:9.2f} {t['rank_optuna']:6.2f} {t.get('rank_moocore', np.nan):7.3f} |"
            f" {t['hist_ours']:9.1f}"
        )


if __name__ == "__main__":
    main()
