"""Seeds before verdicts: the post-search seed check of a study's Pareto members and reference baseline.

One training seed can move a FocalNet's accuracy by 0.17 (issue 9), so a single search trial cannot say
that a configuration beats the baseline. With ``[study] verify_seeds = n`` (0 = off), once the search is
over every Pareto member and the reference baseline are retrained with ``n`` fresh seeds as fixed trials
of role ``verify`` (user attrs ``verifies`` = the source trial number, ``seed``). They are never skipped
or stopped early, never enter the Pareto front, the hypervolume or the budget, and a resumed study
queues only the (member, seed) pairs still missing.

Fresh seeds: ``s+1 … s+n`` where ``s`` is the search's train seed. The search's own run is left out of the
mean because it was *selected* for being good on that seed (the winner's curse would bias the mean up).

The comparison with the baseline is a **Welch t-interval** (95%) for the difference of the mean test
accuracy (member − reference baseline): unequal variances, no pairing assumed (the same seed gives
different architectures unrelated initialisations). A difference is "beyond seed noise" when the
interval excludes 0. Test, not val: val chose the front, so only test is untouched by the selection.

This module works on the plain records of :func:`search.report.records.study_records` (it imports nothing of
the harness above it): the plan (:func:`verify_trials`, :func:`missing_verify_trials`) and the analysis
(:func:`verify_rows`, :func:`verify_lines`).
"""

from __future__ import annotations

import copy
import csv
import math
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "CONFIDENCE",
    "SEED_CHECKED_ATTR",
    "VERIFY_ROLE",
    "missing_verify_trials",
    "reference_baseline",
    "verify_lines",
    "verify_rows",
    "verify_seed_list",
    "verify_trials",
    "welch_interval",
    "write_verify_csv",
]

VERIFY_ROLE = "verify"
#: Study user attr: the search budget used (``search.report.budget.budget_used``) when the seed check last had
#: nothing missing. Equal to the budget used now = the check is complete for this front (a re-run can
#: answer at once); more search trials since then may have changed the front.
SEED_CHECKED_ATTR = "seed_check_done_at_budget"
CONFIDENCE = 0.95
#: Failure reasons that mean "did not run" (retry it), as opposed to a run that failed by itself.
_NOT_RUN = ("stale", "interrupted", "surplus")


# ----------------------------------------------------------------------------------------------------------
# the plan


def reference_baseline(records: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The baseline the report compares against: the trained baseline with the best val accuracy.

    With ``study.baseline_lrs`` there is one baseline per learning rate; without, the single baseline.
    Ties go to the lowest trial number.
    """
    base = [r for r in records if r["role"] == "baseline" and r["values"] is not None and r.get("val")]
    return max(base, key=lambda r: (r["values"]["accuracy"], -r["number"])) if base else None


def verify_seed_list(spec: Any) -> list[int]:
    """The fresh seeds of the seed check (see the module docstring)."""
    s = int(spec.train.get("seed", spec.seed))
    return [s + 1 + i for i in range(spec.verify_seeds)]


def _members(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Pareto members (and, in a study of two families, each family's front) and the reference baseline,
    by trial number.

    The other members of a baseline lr sweep are left out even on the front (they can be, by latency noise
    alone): they are the reference's architecture at a learning rate that lost on val.
    """
    out = {
        r["number"]: r
        for r in records
        if (r["pareto"] or r.get("family_pareto"))
        and r["role"] not in (VERIFY_ROLE, "baseline")
        and r["config"]
    }
    ref = reference_baseline(records)
    if ref is not None and ref["config"]:
        out[ref["number"]] = ref
    return [out[n] for n in sorted(out)]


def verify_trials(records: list[dict[str, Any]], spec: Any) -> list[dict[str, Any]]:
    """The seed check as fixed trials (format of ``search.spec.space.fixed_trials`` plus ``verifies``, ``seed``).

    The overrides are the member's stored, fully resolved config with the seed replaced; the torch threads
    are left to the worker that runs it (they change float sums, not the experiment).
    """
    out = []
    for r in _members(records):
        for seed in verify_seed_list(spec):
            cfg = copy.deepcopy(r["config"])
            cfg["train"]["seed"] = seed
            cfg["train"]["threads"] = spec.train.get("threads", 0)
            cfg["data"].pop("hash", None)  # the objective records the hash of the data it really used
            out.append(
                {
                    "role": VERIFY_ROLE,
                    "name": f"verify-t{r['number']:03d}-seed{seed}",
                    "overrides": cfg,
                    "verifies": r["number"],
                    "seed": seed,
                }
            )
    return out


def _present(trial: Any) -> bool:
    state = trial.state.name
    if state in ("COMPLETE", "WAITING", "RUNNING"):
        return True
    reason = str(trial.user_attrs.get("fail_reason", "stale"))
    return state == "FAIL" and not any(w in reason for w in _NOT_RUN)  # diverged: rerunning repeats it


def missing_verify_trials(study: Any, spec: Any, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The seed check's (member, seed) trials not yet in storage (or only interrupted): to enqueue."""
    if not spec.verify_seeds or spec.ablation is not None:
        return []
    have = {
        (t.user_attrs.get("verifies"), t.user_attrs.get("seed"))
        for t in study.get_trials(deepcopy=False)
        if t.user_attrs.get("role") == VERIFY_ROLE and _present(t)
    }
    return [t for t in verify_trials(records, spec) if (t["verifies"], t["seed"]) not in have]


# ----------------------------------------------------------------------------------------------------------
# the analysis


def welch_interval(a: Any, b: Any, confidence: float = CONFIDENCE) -> tuple[float, float, float, float]:
    """``(mean(a) − mean(b), half_width, lo, hi)`` of the Welch t-interval; NaN width below 2 per side."""
    from scipy import stats

    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.size == 0 or b.size == 0:
        return (math.nan,) * 4
    diff = float(a.mean() - b.mean())
    if a.size < 2 or b.size < 2:
        return diff, math.nan, math.nan, math.nan
    va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    se = math.sqrt(va + vb)
    if se == 0.0:  # both sides identical across seeds: no noise to compare against
        return diff, 0.0, diff, diff
    df = (va + vb) ** 2 / (va**2 / (a.size - 1) + vb**2 / (b.size - 1))
    half = float(stats.t.ppf(0.5 + confidence / 2, df) * se)
    return diff, half, diff - half, diff + half


def _mean_std(v: list[float]) -> tuple[float, float]:
    a = np.asarray([x for x in v if x is not None and math.isfinite(x)], dtype=float)
    return (float(a.mean()) if a.size else math.nan, float(a.std(ddof=1)) if a.size > 1 else math.nan)


def verify_rows(records: list[dict[str, Any]], spec: Any) -> list[dict[str, Any]]:
    """One row per verified trial: seeds, val/test mean ± std, plateau count, Welch difference vs baseline.

    Only COMPLETE verify trials count. Row keys: ``number``, ``name``, ``role``, ``reference``, ``n``,
    ``seeds``, ``search_val``, ``val_mean``, ``val_std``, ``test_mean``, ``test_std``, ``on_plateau``
    (seeds that never left the constant-predictor plateau), ``val_values``, ``test_values`` (per seed, in
    seed order: the raw figures the interval comes from), ``diff``, ``half_width``, ``ci_lo``, ``ci_hi``,
    ``verdict``.
    """
    acc = spec.objectives.accuracy
    by_number = {r["number"]: r for r in records}
    runs: dict[int, list[dict[str, Any]]] = {}
    for r in records:
        if (
            r["role"] == VERIFY_ROLE
            and r["state"] == "COMPLETE"
            and r.get("test")
            and r["verifies"] is not None
        ):
            runs.setdefault(int(r["verifies"]), []).append(r)
    ref = reference_baseline(records)
    ref_test = [v["test"].get(acc) for v in runs.get(ref["number"], [])] if ref else []
    rows = []
    for number in sorted(runs):
        src, rs = by_number.get(number), sorted(runs[number], key=lambda r: r["seed"] or 0)
        val_m, val_s = _mean_std([r["val"].get(acc) for r in rs])
        test = [r["test"].get(acc) for r in rs]
        test_m, test_s = _mean_std(test)
        is_ref = ref is not None and number == ref["number"]
        diff = half = lo = hi = math.nan
        if not is_ref and ref_test:
            diff, half, lo, hi = welch_interval(test, ref_test)
        row = {
            "number": number,
            "name": src["name"] if src else f"trial {number}",
            "role": src["role"] if src else "",
            "reference": is_ref,
            "n": len(rs),
            "seeds": [r["seed"] for r in rs],
            "search_val": (src.get("val") or {}).get(acc) if src else None,
            "val_mean": val_m,
            "val_std": val_s,
            "test_mean": test_m,
            "test_std": test_s,
            "on_plateau": sum(r.get("plateau") == "never" for r in rs),
            "val_values": [r["val"].get(acc) for r in rs],
            "test_values": test,
            "diff": diff,
            "half_width": half,
            "ci_lo": lo,
            "ci_hi": hi,
        }
        row["verdict"] = _verdict(row, len(ref_test)) if ref else "no baseline in this study"
        rows.append(row)
    return rows


def _verdict(row: dict[str, Any], n_ref: int) -> str:
    if row["reference"]:
        return "reference baseline"
    if not n_ref:
        return "no baseline seeds yet"
    if math.isnan(row["half_width"]):
        return "no interval (needs >= 2 seeds on each side)"
    if row["ci_lo"] > 0:
        verdict = "better than the baseline beyond seed noise"
    elif row["ci_hi"] < 0:
        verdict = "worse than the baseline beyond seed noise"
    else:
        verdict = "within seed noise of the baseline"
    if row["on_plateau"]:
        verdict += f"; {row['on_plateau']}/{row['n']} seeds never left the plateau"
    return verdict


def _pm(m: float, s: float) -> str:
    if math.isnan(m):
        return "-"
    return f"{m:.3f}" + ("" if math.isnan(s) else f" ± {s:.3f}")


def verify_lines(records: list[dict[str, Any]], spec: Any) -> list[str]:
    """The report's seed-check section (empty when the study has none)."""
    rows = verify_rows(records, spec)
    if not spec.verify_seeds and not rows:
        return []
    acc = spec.objectives.accuracy
    seeds = ", ".join(map(str, verify_seed_list(spec))) or "-"
    lines = [
        "",
        f"Seed check: Pareto members and the reference baseline retrained with fresh seeds {seeds} "
        f"(the search's own run is left out); mean ± std over those seeds; vs baseline = "
        f"{CONFIDENCE:.0%} Welch t-interval of the test {acc} difference.",
    ]
    if not rows:
        return [*lines, "  (not run yet: it runs after the search)"]
    w = max([28, *(len(r["name"]) for r in rows)])  # full run names: the head and seed are at their end
    header = f"{'#':>4} {'name':<{w}} {'n':>2} {'search val':>10} {'val ' + acc:>17} {'test ' + acc:>17} {'vs baseline (test)':>26}  verdict"
    lines += [header, "-" * len(header)]
    for r in rows:
        vs = "-"
        if not math.isnan(r["diff"]):
            vs = f"{r['diff']:+.3f}"
            if not math.isnan(r["half_width"]):
                vs += f" [{r['ci_lo']:+.3f}, {r['ci_hi']:+.3f}]"
        sv = "-" if r["search_val"] is None else f"{r['search_val']:.3f}"
        lines.append(
            f"{r['number']:>4} {r['name']:<{w}} {r['n']:>2} {sv:>10} {_pm(r['val_mean'], r['val_std']):>17} "
            f"{_pm(r['test_mean'], r['test_std']):>17} {vs:>26}  {r['verdict']}"
        )
    return lines


_CSV = ("number", "name", "role", "reference", "n", "seeds", "search_val", "val_mean", "val_std",
        "test_mean", "test_std", "on_plateau", "diff", "half_width", "ci_lo", "ci_hi", "verdict",
        "val_values", "test_values")  # fmt: skip


def write_verify_csv(rows: list[dict[str, Any]], path: str | Path) -> Path:
    """The seed check's rows (:func:`verify_rows`) as CSV; NaN as an empty cell."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=_CSV)
        w.writeheader()
        for r in rows:
            cells = {k: ("" if isinstance(r[k], float) and math.isnan(r[k]) else r[k]) for k in _CSV}
            for key in ("seeds", "val_values", "test_values"):
                cells[key] = " ".join(map(str, r[key]))
            w.writerow(cells)
    return path
