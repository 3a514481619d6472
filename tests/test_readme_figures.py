"""The README's headline figures, recomputed from the committed raw results they cite.

The README's "Headline figures" table has one row per figure: a key, the figure as printed, and the raw
results file. Each key has a recomputation here; a figure that no longer follows from its file, a row
removed from the table, or a file that is gone fails the test.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from search.efficiency.table import read_table
from search.report.ablation import paired_t_interval
from search.report.seed_check import welch_interval

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
MARKER = "<!-- headline-figures -->"
ACC = "pck_0.05"


def _headline_rows() -> dict[str, tuple[str, str]]:
    """``{key: (figure, raw results path)}`` from the table after the marker."""
    text = README.read_text()
    assert MARKER in text, "README has no headline-figures table"
    rows: dict[str, tuple[str, str]] = {}
    for line in text.split(MARKER, 1)[1].lstrip("\n").splitlines():
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        key = re.match(r"`([a-z0-9_.]+)`", cells[0])
        if key is None:
            continue  # the header and its rule
        link = re.search(r"\]\(([^)]+)\)", cells[2])
        assert link, f"{key.group(1)}: no link to its raw results"
        rows[key.group(1)] = (cells[1].replace("**", "").strip(), link.group(1))
    return rows


def _verify(path: Path) -> dict[int, dict[str, str]]:
    with path.open() as fh:
        return {int(r["number"]): r for r in csv.DictReader(fh)}


def _values(row: dict[str, str], key: str = "test_values") -> list[float]:
    return [float(v) for v in row[key].split()]


def _reference(verify: dict[int, dict[str, str]]) -> dict[str, str]:
    return next(r for r in verify.values() if r["reference"] == "True")


def _mean_std(v: list[float]) -> str:
    return f"{np.mean(v):.3f} ± {np.std(v, ddof=1):.3f}"


def _welch(a: list[float], b: list[float]) -> str:
    diff, _, lo, hi = welch_interval(a, b)
    return f"{diff:+.3f} [{lo:+.3f}, {hi:+.3f}]"


def _live_baseline(path: Path) -> str:
    ref = _reference(_verify(path))
    return f"trial {ref['number']}: {_mean_std(_values(ref))}"


def _live_best(path: Path) -> str:
    """The verified search trial with the highest Welch lower bound against the reference baseline."""
    verify = _verify(path)
    ref = _values(_reference(verify))
    best = max(
        (r for r in verify.values() if r["reference"] != "True" and r["role"] != "baseline"),
        key=lambda r: welch_interval(_values(r), ref)[2],
    )
    return f"trial {best['number']}: {_mean_std(_values(best))}, {_welch(_values(best), ref)}"


def _table_row_vs_live(row: str) -> Callable[[Path], str]:
    def recompute(path: Path) -> str:
        test = json.loads(path.read_text())["rows"][row]["test"]
        ref = _values(_reference(_verify(ROOT / "docs" / "main-study" / "2a1e7a3" / "verify.csv")))
        return _welch(test, ref)

    return recompute


def _sampled(path: Path) -> list[dict]:
    return [r for r in read_table(path).rows if r["role"] == "search" and r.get("trained")]


def _best_head(kind: str) -> Callable[[Path], str]:
    def recompute(path: Path) -> str:
        rows = [r for r in _sampled(path) if r["params"]["head.kind"] == kind]
        return f"{max(r['val'][ACC][-1] for r in rows):.3f} ({len(rows)} rows)"

    return recompute


def _simulated(arm: str | None) -> Callable[[Path], str]:
    def recompute(path: Path) -> str:
        summary = json.loads(path.read_text())
        a = summary["arms"][arm or summary["default"]]
        return f"{a['beats']}/{a['seeds']}"

    return recompute


def _matched(cost: str) -> Callable[[Path], str]:
    """The families study's first matched-cost row on ``cost`` with both sides: Welch from verify.csv."""

    def recompute(path: Path) -> str:
        with path.open() as fh:
            row = next(r for r in csv.DictReader(fh) if r["cost"] == cost and r["a_number"] and r["b_number"])
        verify = _verify(path.parent / "verify.csv")
        return _welch(_values(verify[int(row["b_number"])]), _values(verify[int(row["a_number"])]))

    return recompute


def _cells(path: Path) -> dict[str, dict[int, float]]:
    """An ablation's per-trial CSV as ``{cell: {seed: test PCK@0.05}}`` (completed trials)."""
    out: dict[str, dict[int, float]] = {}
    with path.open() as fh:
        for r in csv.DictReader(fh):
            if r["state"] == "COMPLETE":
                cell, _, seed = r["name"].rpartition(",seed=")
                out.setdefault(cell, {})[int(seed)] = float(r[f"test_{ACC}"])
    return out


def _ablation(level: str, reference: str) -> Callable[[Path], str]:
    """Paired by seed: level - reference, test PCK@0.05 in points, mean ± the paired t 95% half-width and CI
    (as the ablation report prints it)."""

    def recompute(path: Path) -> str:
        cells = _cells(path)
        seeds = sorted(cells[level].keys() & cells[reference].keys())
        diffs = [100 * (cells[level][s] - cells[reference][s]) for s in seeds]
        mean, half, lo, hi = paired_t_interval(diffs)
        return f"{mean:+.1f} ± {half:.1f} pp [{lo:+.1f}, {hi:+.1f}] ({len(seeds)} seeds)"

    return recompute


def _same_cells(path: Path) -> str:
    """Cells that two ablation studies share (same model, data, budget, seed): identical per-seed results?"""
    levels = _cells(path)
    shared = [
        (levels["focal_levels=2"], _cells(path.parent / "embed_trials.csv")["overlapped_embed=false"]),
        (levels["focal_levels=3"], _cells(path.parent / "contexts_trials.csv")["contexts=sequential"]),
        (
            _cells(path.parent / "embed_matched_trials.csv")["config=plain"],
            _cells(path.parent / "embed_trials.csv")["overlapped_embed=false"],
        ),
    ]
    same = sum(a[s] == b[s] for a, b in shared for s in a.keys() & b.keys())
    return f"{same} of {sum(len(a.keys() & b.keys()) for a, b in shared)}"


def _race(path: Path) -> str:
    s = json.loads(path.read_text())["summary"]
    return f"{s['repetitions_with_problems']} of {s['repetitions']}"


RECOMPUTE: dict[str, Callable[[Path], str]] = {
    "live.baseline_test": _live_baseline,
    "live.best_vs_baseline": _live_best,
    "table.row97_vs_live_baseline": _table_row_vs_live("97"),
    "table.row51_vs_live_baseline": _table_row_vs_live("51"),
    "table.sampled_trained": lambda p: str(len(_sampled(p))),
    "table.best_simcc": _best_head("simcc"),
    "table.best_flatten": _best_head("flatten"),
    "table.best_heatmap": _best_head("heatmap"),
    "simulate.default_hits": _simulated(None),
    "simulate.no_warm_hits": _simulated("random/behind-baseline"),
    "heldout.sampled_trained": lambda p: str(len(_sampled(p))),
    "heldout.default_hits": _simulated(None),
    "budget.heldout_90": _simulated(None),
    "budget.wide_90": _simulated(None),
    "families.matched_flops": _matched("flops"),
    "families.matched_latency": _matched("latency_ms"),
    "race.start_problems": _race,
    "ablation.contexts": _ablation("contexts=independent", "contexts=sequential"),
    "ablation.embed": _ablation("overlapped_embed=true", "overlapped_embed=false"),
    "ablation.embed_matched": _ablation("config=overlapped-d30", "config=plain"),
    "ablation.levels_1": _ablation("focal_levels=1", "focal_levels=2"),
    "ablation.levels_4": _ablation("focal_levels=4", "focal_levels=2"),
    "ablation.depth": _ablation("config=deep-thin", "config=tiny"),
    "ablation.backbone": _ablation("config=focalnet-small", "config=baseline"),
    "ablation.same_cells": _same_cells,
}


def test_every_headline_figure_is_in_the_table() -> None:
    assert set(_headline_rows()) == set(RECOMPUTE)


@pytest.mark.parametrize("key", sorted(RECOMPUTE))
def test_headline_figure_follows_from_its_raw_results(key: str) -> None:
    figure, raw = _headline_rows()[key]
    path = ROOT / raw
    assert path.is_file(), f"{key}: {raw} is not committed"
    assert RECOMPUTE[key](path) == figure, key
