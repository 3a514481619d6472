"""Trial records read back from storage: one plain dict per trial, with Pareto membership.

Everything here is recomputed from the Optuna storage, so any worker (or `report` later) gets the same
answer.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import optuna
from optuna.trial import TrialState

from search.efficiency.pareto import pareto_mask
from search.report.seed_check import VERIFY_ROLE, reference_baseline
from search.task.plateau import left_plateau_step, plateau_label
from search.tracking.params import flatten_config

#: ``region`` of a trial inside the region of interest.
IN_REGION = "in"

__all__ = ["IN_REGION", "dominates", "family", "objective_points", "region", "study_records", "value_names"]


def objective_points(records: list[dict[str, Any]], spec_names: list[str]) -> np.ndarray:
    return np.array([[r["values"][n] for n in spec_names] for r in records], dtype=float).reshape(
        len(records), len(spec_names)
    )


def dominates(a: dict[str, Any], b: dict[str, Any], names: list[str], directions: list[str]) -> bool:
    """True if record a Pareto-dominates record b on the study's objectives."""
    better = False
    for n, d in zip(names, directions, strict=True):
        x, y = a["values"][n], b["values"][n]
        if d == "minimize":
            x, y = -x, -y
        if x < y:
            return False
        better |= x > y
    return better


def value_names(spec: Any) -> list[str]:
    return ["accuracy", *spec.objectives.minimize]


def _plateau(
    t: optuna.trial.FrozenTrial, constant: dict[str, Any] | None, acc: str
) -> tuple[Any, str | None]:
    """(left_plateau_step, label) of a trial that trained; (None, None) if it did not (yet)."""
    ua = t.user_attrs
    if t.state not in (TrialState.COMPLETE, TrialState.PRUNED) or ua.get("skipped"):
        return None, None
    if "left_plateau_step" in ua:
        step = ua["left_plateau_step"]
    elif ua.get("curve") and constant:  # a trial from before the flag existed: recompute from its curve
        step = left_plateau_step(ua["curve"], constant["val"][acc], margin=constant["margin"])
    else:
        return None, None
    return step, plateau_label(step)


def study_records(study: optuna.Study, spec: Any) -> list[dict[str, Any]]:
    """One plain dict per trial (see `search.report.plots`), with Pareto membership and baseline dominance.

    Seed-check trials (role ``verify``) are records too, but never on the Pareto front and never compared
    with the baseline: they re-measure members, they do not compete with them. ``reference`` marks the
    baseline every trial is compared with (the best val member of a ``study.baseline_lrs`` sweep).
    ``plateau`` is ``"left@<step>"`` / ``"never"`` for trials that trained, else None. ``region`` (see
    :func:`region`) and ``floor`` are set for finished feasible trials; only those ``"in"`` the region of
    interest are Pareto members. In a study of two model families (``model.backbone``) each also gets
    its own front over the region of interest: ``family`` and ``family_pareto``.
    """
    names = value_names(spec)
    directions = list(spec.objectives.directions)
    constant = study.user_attrs.get("constant_predictor")
    records = []
    for t in study.get_trials(deepcopy=False):
        ua = t.user_attrs
        left, plateau = _plateau(t, constant, spec.objectives.accuracy)
        values = None
        if t.state == TrialState.COMPLETE and t.values:
            values = {
                "accuracy": t.values[0],
                "params": ua.get("params"),
                "flops": ua.get("flops"),
                "latency_ms": ua.get("latency_ms"),
            }
        config = ua.get("config")
        records.append(
            {
                "number": t.number,
                "state": t.state.name,
                "role": ua.get("role", "search"),
                "name": ua.get("name") or ua.get("run_name") or f"trial {t.number}",
                "values": values,
                "feasible": bool(ua.get("feasible", True)) and "skipped" not in ua,
                "pareto": False,
                "family_pareto": False,
                "region": None,
                "floor": None,
                "dominates_baseline": False,
                "reference": False,
                "left_plateau_step": left,
                "plateau": plateau,
                "verifies": ua.get("verifies"),
                "seed": ua.get("seed"),
                "latency_ratio": ua.get("latency_ratio"),
                "val": ua.get("val", {}),
                "test": ua.get("test", {}),
                "stop_rung": ua.get("stop_rung"),
                "fail_reason": ua.get("fail_reason"),
                "skipped": ua.get("skipped"),
                "warm_start": ua.get("warm_start"),
                "config": config,
                "params_flat": flatten_config(config) if config else {},
                "mlflow_run_id": ua.get("mlflow_run_id"),
                "complete_time": t.datetime_complete.timestamp() if t.datetime_complete else None,
                "wall_s": (ua.get("timing") or {}).get("wall_s"),
            }
        )
    done = [r for r in records if r["values"] is not None and r["feasible"] and r["role"] != VERIFY_ROLE]
    if done:
        baseline = reference_baseline(done)
        floor = spec.objectives.accuracy_floor(baseline["values"]["accuracy"] if baseline else None)
        for r in done:
            r["region"] = region(r, floor)
            r["floor"] = floor
        inside = [r for r in done if r["region"] == IN_REGION]
        if inside:
            mask = pareto_mask(objective_points(inside, names), directions)
            for r, m in zip(inside, mask, strict=True):
                r["pareto"] = bool(m)
        _family_fronts(inside, names, directions)
        if baseline is not None:
            baseline["reference"] = True
            for r in done:
                r["dominates_baseline"] = r is not baseline and dominates(r, baseline, names, directions)
    return records


def family(record: dict[str, Any]) -> str:
    """The record's model family: its config's backbone (``"focalnet"`` when it has no config)."""
    return str(((record.get("config") or {}).get("model") or {}).get("backbone", "focalnet"))


def _family_fronts(inside: list[dict[str, Any]], names: list[str], directions: list[str]) -> None:
    """With two families in the region of interest, each gets its own front: ``family_pareto``."""
    for r in inside:
        r["family"] = family(r)
    families = sorted({r["family"] for r in inside})
    for fam in families if len(families) > 1 else []:
        members = [r for r in inside if r["family"] == fam]
        for r, m in zip(members, pareto_mask(objective_points(members, names), directions), strict=True):
            r["family_pareto"] = bool(m)


def region(record: dict[str, Any], floor: float | None) -> str:
    """Where a finished feasible trial stands against the region of interest: ``"in"``, ``"plateau"``
    (it never left the constant-predictor plateau) or ``"below floor"`` (val accuracy under ``floor``).

    A model nobody would pick is not a trade-off, so only trials in the region can be Pareto members,
    count towards the hypervolume or be seed-checked. A trial without a plateau record (trained before
    the flag existed, with no curve) is judged on the floor alone.
    """
    if record.get("plateau") == "never":
        return "plateau"
    if floor is not None and record["values"]["accuracy"] < floor:
        return "below floor"
    return IN_REGION
