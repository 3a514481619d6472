"""Two model families in one study: each family's front and hypervolume, and who leads at which cost."""

from __future__ import annotations

import pytest

from search.report.families import cost_ranges, family_fronts, family_hypervolumes, family_lines
from tests.test_verdicts import make_spec


def rec(
    n: int, backbone: str, acc: float, flops: float, params: float = 1e5, lat: float = 1.0, region="in"
) -> dict:
    return {"number": n, "region": region, "config": {"model": {"backbone": backbone}},
            "values": {"accuracy": acc, "flops": flops, "params": params, "latency_ms": lat}}  # fmt: skip


def test_each_family_gets_its_own_front_and_hypervolume() -> None:
    spec = make_spec()
    records = [
        rec(0, "baseline", 0.70, 8e6, params=5e5, lat=0.5),
        rec(1, "baseline", 0.75, 30e6, params=2e6, lat=1.0),
        rec(2, "focalnet", 0.78, 80e6, params=4e5, lat=4.0),
        rec(3, "focalnet", 0.60, 90e6, params=9e5, lat=5.0),  # dominated within its family
        rec(4, "focalnet", 0.90, 10e6, params=1e4, lat=0.1, region="plateau"),  # outside: never a member
    ]
    fronts = family_fronts(records, spec)
    assert {f: sorted(r["number"] for r in rs) for f, rs in fronts.items()} == {
        "baseline": [0, 1],
        "focalnet": [2],
    }
    assert [r["family_pareto"] for r in records] == [True, True, True, False, False]
    hv = family_hypervolumes(records, spec)
    assert set(hv) == {"baseline", "focalnet"} and all(v > 0 for v in hv.values())


def test_cost_ranges_name_the_leader_at_each_cost() -> None:
    records = [
        rec(0, "baseline", 0.70, 8e6),
        rec(1, "baseline", 0.75, 30e6),
        rec(2, "focalnet", 0.72, 20e6),
        rec(3, "focalnet", 0.80, 80e6),
    ]
    ranges = cost_ranges(records, "flops")
    assert [(lo, hi, who) for lo, hi, who, _ in ranges] == [
        (8e6, 20e6, "only baseline"),
        (20e6, 30e6, "focalnet"),
        (30e6, 80e6, "baseline"),
        (80e6, float("inf"), "focalnet"),
    ]
    assert [m for *_, m in ranges] == pytest.approx([0.0, 0.02, 0.03, 0.05])
    text = "\n".join(family_lines(records, make_spec()))
    assert "by MFLOPs: 8-20: only baseline; 20-30: focalnet (+0.020)" in text
    assert cost_ranges(records[:2], "flops") == []  # one family: nothing to compare
