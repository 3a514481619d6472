"""Model families side by side: each family's front, its hypervolume, and at which costs one beats the other.

A study that searches ``model.backbone`` over ``["focalnet", "baseline"]`` holds two families. The study's
Pareto front mixes them; the question the team asks is different: *at a given cost, which family is more
accurate?* So each family gets its own front (over the region of interest, like the study's), its own
hypervolume, and, per cost, a comparison of the best accuracy each family reaches at or below that cost
(a step function along each cost axis): the ranges where one family is ahead, and by how much.

Those ranges rest on one training seed per trial. :func:`matched_rows` puts seeds under them: at matched
costs it compares the seed-checked members of the two families (fresh seeds, Welch interval), choosing each
side by its search val so the fresh seeds play no part in the choice.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

import numpy as np

from search.efficiency.pareto import hypervolume, pareto_mask
from search.report.records import IN_REGION, family, objective_points, value_names
from search.report.seed_check import CONFIDENCE, verify_rows, welch_interval

#: Cost → (divisor, unit) for the report's text.
_UNIT = {"flops": (1e6, "MFLOPs"), "params": (1e3, "k params"), "latency_ms": (1.0, "ms")}

__all__ = [
    "best_below",
    "cost_ranges",
    "family_fronts",
    "family_hypervolumes",
    "family_lines",
    "matched_lines",
    "matched_rows",
    "write_matched_csv",
]


def _inside(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in records if r.get("values") is not None and r.get("region") == IN_REGION]


def family_fronts(records: list[dict[str, Any]], spec: Any) -> dict[str, list[dict[str, Any]]]:
    """Family → its own Pareto front over the region of interest (records of :func:`study_records` carry
    it as ``family_pareto``; this recomputes it for any records, hand-made ones included)."""
    names, directions = value_names(spec), list(spec.objectives.directions)
    for r in records:
        r["family"], r["family_pareto"] = family(r), False
    fronts: dict[str, list[dict[str, Any]]] = {}
    for fam in sorted({r["family"] for r in _inside(records)}):
        members = [r for r in _inside(records) if r["family"] == fam]
        mask = pareto_mask(objective_points(members, names), directions)
        fronts[fam] = [r for r, m in zip(members, mask, strict=True) if m]
        for r in fronts[fam]:
            r["family_pareto"] = True
    return fronts


def family_hypervolumes(records: list[dict[str, Any]], spec: Any) -> dict[str, float]:
    """Family → the hypervolume of its region-of-interest trials against the spec's reference point."""
    names = value_names(spec)
    ref = [spec.hypervolume_reference[n] for n in names]
    out = {}
    for fam in sorted({family(r) for r in _inside(records)}):
        members = [r for r in _inside(records) if family(r) == fam]
        out[fam] = float(hypervolume(objective_points(members, names), spec.objectives.directions, ref))
    return out


def best_below(records: list[dict[str, Any]], cost: str, budget: float) -> float | None:
    """The best accuracy among ``records`` whose ``cost`` is at most ``budget`` (None if none is)."""
    accs = [r["values"]["accuracy"] for r in records if r["values"][cost] <= budget]
    return max(accs) if accs else None


def cost_ranges(records: list[dict[str, Any]], cost: str) -> list[tuple[float, float, str, float]]:
    """Along one cost axis, the ranges where one family reaches a higher accuracy at or below that cost.

    Returns:
        ``(from_cost, to_cost, leader, margin)`` per range, in increasing cost (``to_cost`` is ``inf`` for
        the last one); ``leader`` is the family with the higher best-accuracy-so-far, ``"only <family>"``
        where the other has nothing that cheap, ``"tie"`` where they are equal; ``margin`` is the
        accuracy difference (0 for "only" and "tie").
    """
    inside = _inside(records)
    fams = sorted({family(r) for r in inside})
    if len(fams) != 2:
        return []
    a, b = fams
    cuts = sorted({float(r["values"][cost]) for r in inside})
    out: list[tuple[float, float, str, float]] = []
    for i, c in enumerate(cuts):
        ba = best_below([r for r in inside if family(r) == a], cost, c)
        bb = best_below([r for r in inside if family(r) == b], cost, c)
        if ba is None or bb is None:
            leader, margin = f"only {a if bb is None else b}", 0.0
        elif np.isclose(ba, bb):
            leader, margin = "tie", 0.0
        else:
            leader, margin = (a, ba - bb) if ba > bb else (b, bb - ba)
        end = cuts[i + 1] if i + 1 < len(cuts) else float("inf")
        if out and out[-1][2] == leader and np.isclose(out[-1][3], margin):  # one range while nothing changes
            out[-1] = (out[-1][0], end, leader, margin)
        else:
            out.append((c, end, leader, margin))
    return out


def family_lines(records: list[dict[str, Any]], spec: Any) -> list[str]:
    """The report's family section: each family's front and hypervolume, and who leads at which cost."""
    fronts = family_fronts(records, spec)
    if len(fronts) < 2:
        return []
    hv = family_hypervolumes(records, spec)
    lines = [
        "",
        "Families (fronts over the region of interest; hypervolume against the spec's reference point):",
    ]
    for fam, front in fronts.items():
        nums = ", ".join(str(r["number"]) for r in sorted(front, key=lambda r: r["values"]["accuracy"]))
        lines.append(f"  {fam:<9} front {len(front)} trials ({nums}); hypervolume {hv[fam]:.4g}")
    for cost in ("flops", "latency_ms", "params"):
        if not all(cost in (r["values"] or {}) for r in _inside(records)):
            continue
        parts = []
        scale, label = _UNIT[cost]
        for lo, hi, leader, margin in cost_ranges(records, cost):
            span = f"{lo / scale:.3g}-{hi / scale:.3g}" if hi != float("inf") else f">= {lo / scale:.3g}"
            parts.append(f"{span}: {leader}" + (f" (+{margin:.3f})" if margin else ""))
        lines.append(f"  best val at or below a cost, by {label}: " + "; ".join(parts))
    return lines


def _checked(records: list[dict[str, Any]], spec: Any) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(search record, seed-check row) of every seed-checked trial inside the region of interest."""
    by_number = {r["number"]: r for r in records}
    out = []
    for row in verify_rows(records, spec):
        src = by_number.get(row["number"])
        if src is not None and src.get("values") is not None and src.get("region") == IN_REGION and row["n"]:
            out.append((src, row))
    return out


def matched_rows(records: list[dict[str, Any]], spec: Any) -> list[dict[str, Any]]:
    """The two families at matched costs, each side a seed-checked member, with a Welch interval.

    For every cost the study minimises, the budgets are the costs of each family's seed-checked member with
    the best search val. At a budget each family is represented by its seed-checked member with the best
    search val at or below it (search val, not the fresh seeds' test: the interval stays free of the choice).
    ``diff`` is second family − first (alphabetical: focalnet − baseline) in mean test accuracy over the
    fresh seeds; ``lo``/``hi`` its 95% Welch interval. Empty unless both families have seed-checked members.

    Returns:
        Rows with ``cost``, ``budget``, ``families`` (the two names), and per side ``a_*``/``b_*``:
        ``number``, ``name``, ``cost``, ``n``, ``test_mean``; then ``diff``, ``lo``, ``hi``, ``verdict``.
    """
    checked = _checked(records, spec)
    fams = sorted({family(src) for src, _ in checked})
    if len(fams) != 2:
        return []

    def best(
        cands: list[tuple[dict[str, Any], dict[str, Any]]],
    ) -> tuple[dict[str, Any], dict[str, Any]] | None:
        return max(cands, key=lambda c: (c[0]["values"]["accuracy"], -c[0]["number"])) if cands else None

    rows = []
    tops = [best([c for c in checked if family(c[0]) == f]) for f in fams]
    for cost in [n for n in value_names(spec) if n != "accuracy"]:
        for budget in sorted({float(top[0]["values"][cost]) for top in tops if top is not None}):
            picks = [
                best([c for c in checked if family(c[0]) == f and c[0]["values"][cost] <= budget])
                for f in fams
            ]
            row: dict[str, Any] = {"cost": cost, "budget": budget, "families": fams}
            for side, pick in zip("ab", picks, strict=True):
                src, ver = pick if pick is not None else ({}, {})
                row |= {
                    f"{side}_number": src.get("number"),
                    f"{side}_name": src.get("name"),
                    f"{side}_cost": (src.get("values") or {}).get(cost),
                    f"{side}_n": ver.get("n", 0),
                    f"{side}_test_mean": ver.get("test_mean", math.nan),
                }
            diff = lo = hi = math.nan
            if all(p is not None for p in picks):
                diff, _, lo, hi = welch_interval(picks[1][1]["test_values"], picks[0][1]["test_values"])
            row |= {"diff": diff, "lo": lo, "hi": hi, "verdict": _matched_verdict(fams, picks, lo, hi)}
            rows.append(row)
    return rows


def _matched_verdict(fams: list[str], picks: list[Any], lo: float, hi: float) -> str:
    if picks[0] is None or picks[1] is None:
        return f"only {fams[0] if picks[1] is None else fams[1]} has a seed-checked member this cheap"
    if math.isnan(lo):
        return "no interval (needs >= 2 seeds on each side)"
    if lo > 0:
        return f"{fams[1]} more accurate beyond seed noise"
    if hi < 0:
        return f"{fams[0]} more accurate beyond seed noise"
    return "within seed noise"


def matched_lines(records: list[dict[str, Any]], spec: Any) -> list[str]:
    """The report's "families at matched costs" section (empty without seed-checked members of both)."""
    rows = matched_rows(records, spec)
    if not rows:
        return []
    a, b = rows[0]["families"]
    acc = spec.objectives.accuracy
    lines = [
        "",
        f"Families at matched costs (seed check): at each budget, each family's seed-checked member with the best "
        f"search val at or below it; mean test {acc} over the fresh seeds; {b} - {a} with a "
        f"{CONFIDENCE:.0%} Welch t-interval.",
    ]
    for r in rows:
        scale, unit = _UNIT.get(r["cost"], (1.0, r["cost"]))

        def side(s: str, r: dict[str, Any] = r, scale: float = scale) -> str:
            if r[f"{s}_number"] is None:
                return "none"
            return f"#{r[f'{s}_number']} ({r[f'{s}_cost'] / scale:.3g}) {r[f'{s}_test_mean']:.3f} (n {r[f'{s}_n']})"

        diff = "" if math.isnan(r["diff"]) else f"  {r['diff']:+.3f}"
        if not math.isnan(r["lo"]):
            diff += f" [{r['lo']:+.3f}, {r['hi']:+.3f}]"
        lines.append(
            f"  {unit} <= {r['budget'] / scale:.3g}: {a} {side('a')} vs {b} {side('b')}{diff}  {r['verdict']}"
        )
    return lines


_CSV = ("cost", "budget", "a_family", "a_number", "a_name", "a_cost", "a_n", "a_test_mean",
        "b_family", "b_number", "b_name", "b_cost", "b_n", "b_test_mean", "diff", "lo", "hi", "verdict")  # fmt: skip


def write_matched_csv(rows: list[dict[str, Any]], path: str | Path) -> Path:
    """:func:`matched_rows` as CSV (``families_matched.csv``); NaN and missing sides as empty cells."""
    path = Path(path)
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=_CSV)
        w.writeheader()
        for r in rows:
            cells = {**r, "a_family": r["families"][0], "b_family": r["families"][1]}
            w.writerow(
                {k: "" if cells[k] is None or (isinstance(cells[k], float) and math.isnan(cells[k])) else cells[k]
                 for k in _CSV}
            )  # fmt: skip
    return path
