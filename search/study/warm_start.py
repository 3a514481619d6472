"""Warm start from a recorded learning-curve table: a small portfolio enqueued before the sampler starts.

``[study] warm_start = "bench/tables/default.jsonl.gz"`` (relative to the spec's folder) makes the first
search trials of a new study the table's best trade-offs instead of random draws. The portfolio is
chosen greedily: from the table's trained rows that are points of this spec's space (the exact
configuration, so a warm-start trial trains what the table measured) and lie in its region of interest
(left the plateau, val at or above the floor), repeatedly take the row that adds the most hypervolume to
what is already chosen, the table's reference baseline included, until ``warm_start_trials`` rows are
chosen or no row adds any. So the portfolio covers the table's front in the region of interest, best
trade-off first, and never spends a trial on a row that front already dominates.

A portfolio is a bet that what won on the table's task wins on the study's. It is enqueued only when the
table was recorded on the study's own data (its ``[data]`` section, and its data hash where the study
knows it); otherwise the study starts from the sampler and says why. Evidence: on the held-out task
(README, "Held out") the default table's portfolio scored val 0.099 and 0.126 against the extractor's
0.167 and spent about a quarter of a 30-minute study's worker time.

The trials are enqueued as *search* trials with the rows' parameters (the sampler learns from them
like from its own draws; they count against ``n_trials``), tagged with the user attr ``warm_start``
(``<table file>#row<index>``), once per study: the study user attr ``warm_start`` records what was
enqueued, under the study lock, so a resumed study or a second worker never enqueues it again.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import optuna

from search.efficiency.pareto import hypervolume
from search.efficiency.table import Table, TableError, config_key, measured_parts, read_table
from search.spec.space import contains, resolve_config
from search.storage.faults import study_lock

__all__ = ["WARM_ATTR", "enqueue_warm_start", "other_data", "portfolio", "warm_start_plan", "warm_start_rows"]

#: Study user attr (what was enqueued) and trial user attr (which row a trial came from).
WARM_ATTR = "warm_start"


def _point(spec: Any, row: dict[str, Any]) -> dict[str, Any] | None:
    """The row's parameters as a point of ``spec``'s space, or None if the row is not one."""
    params = {k: v for k, v in row.get("params", {}).items() if k in spec.space}
    if not contains(spec, params):
        return None
    try:
        same = config_key(resolve_config(spec, params)) == config_key(row["config"])
    except Exception:  # a configuration this spec cannot build is not one of its points
        return None
    return params if same else None


def _objectives(spec: Any, table: Table, row: dict[str, Any]) -> list[float]:
    costs = {
        "params": row["costs"]["params"],
        "flops": row["costs"]["flops"],
        "latency_ms": table.latency_ms(row),
    }
    return [Table.final(row, spec.objectives.accuracy), *(float(costs[m]) for m in spec.objectives.minimize)]


def portfolio(
    spec: Any, table: Table, *, size: int | None = None
) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """The warm-start portfolio: ``(row, params)`` pairs, best hypervolume gain first (module docstring).

    Raises:
        TableError: no trained row of the table is a point of this spec's space (the spaces do not match).
    """
    size = spec.warm_start_trials if size is None else size
    regions = table.regions(spec.objectives)
    points = [(r, p) for r in table.sampled_rows() if r.get("trained") and (p := _point(spec, r)) is not None]
    if not points:
        raise TableError(
            f"study.warm_start: {table.path}: no trained row is a point of this spec's space "
            f"(recorded for {table.header.get('spec_source')}); warm-start from a table of this space"
        )
    candidates = [(r, p) for r, p in points if regions.get(r["index"]) == "in"]
    directions = spec.objectives.directions
    reference = [spec.hypervolume_reference[n] for n in ["accuracy", *spec.objectives.minimize]]
    base = [r for r in table.rows if r.get("role") == "baseline" and r.get("trained")]
    best_base = max(base, key=lambda r: Table.final(r, spec.objectives.accuracy), default=None)
    chosen_pts = [_objectives(spec, table, best_base)] if best_base is not None else []
    chosen: list[tuple[dict[str, Any], dict[str, Any]]] = []
    while len(chosen) < size:
        now = hypervolume(np.array(chosen_pts), directions, reference) if chosen_pts else 0.0
        gains = [
            (
                hypervolume(np.array([*chosen_pts, _objectives(spec, table, r)]), directions, reference)
                - now,
                -i,
            )
            for i, (r, _) in enumerate(candidates)
        ]
        if not gains or max(gains)[0] <= 0:
            break
        _, neg_i = max(gains)
        row, params = candidates.pop(-neg_i)
        chosen.append((row, params))
        chosen_pts.append(_objectives(spec, table, row))
    return chosen


def other_data(spec: Any, table: Table, data_hash: str | None = None) -> str | None:
    """Why ``table`` was recorded on other data than ``spec``'s study (None: the same data).

    Args:
        data_hash: the study's dataset hash, when known; compared with the table header's ``data_hash``.
    """
    recorded = measured_parts(table.header.get("spec") or {})["data"]
    if recorded != measured_parts(spec.to_dict())["data"]:
        return f"{table.path.name} was recorded on other data ([data] of {table.header.get('spec_source')})"
    header_hash = table.header.get("data_hash")
    if data_hash and header_hash and header_hash != data_hash:
        return f"{table.path.name} was recorded on data hashing to {header_hash[:12]}, this study's is {data_hash[:12]}"
    return None


def warm_start_plan(
    spec: Any, *, data_hash: str | None = None
) -> tuple[list[tuple[dict[str, Any], dict[str, Any]]], str | None]:
    """(the spec's warm-start portfolio, why there is none): no portfolio without ``study.warm_start``
    (reason None) or when its table was recorded on other data (the reason, :func:`other_data`)."""
    if not spec.warm_start:
        return [], None
    table = read_table(spec.warm_start_path())
    skipped = other_data(spec, table, data_hash)
    return ([] if skipped else portfolio(spec, table)), skipped


def warm_start_rows(
    spec: Any, *, data_hash: str | None = None
) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """The spec's warm-start portfolio (:func:`warm_start_plan`, without the reason)."""
    return warm_start_plan(spec, data_hash=data_hash)[0]


def enqueue_warm_start(study: optuna.Study, spec: Any, *, data_hash: str | None = None) -> list[int]:
    """Enqueue the portfolio once per study (after the fixed trials already queued); returns the row
    indices enqueued now (empty when the study has them already, has no warm start, or its table was
    recorded on other data: then the study attr ``warm_start`` says so under ``skipped``)."""
    if not spec.warm_start:
        return []
    rows, skipped = warm_start_plan(spec, data_hash=data_hash)
    name = Path(spec.warm_start).name
    with study_lock(study):  # read-then-write: two workers creating the study together enqueue it once
        if WARM_ATTR in study.user_attrs:
            return []
        for row, params in rows:
            study.enqueue_trial(
                params, user_attrs={WARM_ATTR: f"{name}#row{row['index']}"}, skip_if_exists=False
            )
        record = {"table": spec.warm_start, "rows": [r["index"] for r, _ in rows]}
        study.set_user_attr(WARM_ATTR, record | ({"skipped": skipped} if skipped else {}))
    return [r["index"] for r, _ in rows]
