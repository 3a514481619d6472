"""Model families side by side: each family's front, its hypervolume, and at which costs one beats the other.

A study that searches ``model.backbone`` over ``["focalnet", "baseline"]`` holds two families. The study's
Pareto front mixes them; the question the team asks is different: *at a given cost, which family is more
accurate?* So each family gets its own front (over the region of interest, like the study's), its own
hypervolume, and, per cost, a comparison of the best accuracy each family reaches at or below that cost
(a step function along each cost axis): the ranges where one family is ahead, and by how much.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from search.efficiency.pareto import hypervolume, pareto_mask
from search.report.records import IN_REGION, family, objective_points, value_names

__all__ = ["family_fronts", "family_hypervolumes", "best_below", "cost_ranges", "family_lines"]


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
    unit = {"flops": 1e6, "params": 1e3, "latency_ms": 1.0}
    label = {"flops": "MFLOPs", "params": "k params", "latency_ms": "ms"}
    for cost in ("flops", "latency_ms", "params"):
        if not all(cost in (r["values"] or {}) for r in _inside(records)):
            continue
        parts = []
        for lo, hi, leader, margin in cost_ranges(records, cost):
            span = (
                f"{lo / unit[cost]:.3g}-{hi / unit[cost]:.3g}"
                if hi != float("inf")
                else f">= {lo / unit[cost]:.3g}"
            )
            parts.append(f"{span}: {leader}" + (f" (+{margin:.3f})" if margin else ""))
        lines.append(f"  best val at or below a cost, by {label[cost]}: " + "; ".join(parts))
    return lines
