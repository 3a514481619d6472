"""Trial records read back from storage: the Pareto front, the terminal report, the parent-run artifacts.

Everything here is recomputed from the Optuna storage, so any worker (or `report` later) gets the same
answer.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.trial import TrialState

from search.pareto import hypervolume_history, pareto_mask
from search.task.plateau import left_plateau_step, plateau_label
from search.verify import VERIFY_ROLE, reference_baseline, verify_lines, verify_rows, write_verify_csv

#: Study user attr: the number of finished trials the last complete parent report showed.
REPORTED_ATTR = "report_finished_trials"
FINISHED_STATES = ("COMPLETE", "PRUNED", "FAIL")
#: Marks the fail reason of a trial started after other workers used the budget (it never ran).
SURPLUS = "surplus"

__all__ = [
    "FINISHED_STATES",
    "REPORTED_ATTR",
    "SURPLUS",
    "budget_used",
    "constant_line",
    "counts_against_budget",
    "study_records",
    "refresh_parent",
    "trial_summary_line",
    "report_text",
    "objective_points",
    "dominates",
]


def counts_against_budget(trial: optuna.trial.FrozenTrial) -> bool:
    """COMPLETE, PRUNED, RUNNING, or FAIL from the objective itself (a NaN run) count against `n_trials`.

    Not counted: a FAIL from a dead worker (its retry is queued and runs regardless), a surplus trial, a
    trial interrupted by Ctrl-C (the budget is for trials that ran), queued (WAITING) trials, and the
    seed check's trials (role ``verify``: they re-measure the search's results, not part of its budget).
    """
    if trial.user_attrs.get("role") == VERIFY_ROLE:
        return False
    if trial.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING):
        return True
    reason = str(trial.user_attrs.get("fail_reason", "stale"))
    return trial.state == TrialState.FAIL and not any(w in reason for w in ("stale", "interrupted", SURPLUS))


def budget_used(study: Any) -> tuple[int, int]:
    """(trials that count against the budget, trials waiting in the queue); see `counts_against_budget`."""
    trials = study.get_trials(deepcopy=False)
    used = sum(counts_against_budget(t) for t in trials)
    return used, sum(t.state == TrialState.WAITING for t in trials)


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


def _value_names(spec: Any) -> list[str]:
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
    """One plain dict per trial (see `search.plots`), with Pareto membership and baseline dominance.

    Seed-check trials (role ``verify``) are records too, but never on the Pareto front and never compared
    with the baseline: they re-measure members, they do not compete with them. ``reference`` marks the
    baseline every trial is compared with (the best val member of a ``study.baseline_lrs`` sweep).
    ``plateau`` is ``"left@<step>"`` / ``"never"`` for trials that trained, else None.
    """
    from search.tracking import flatten_config

    names = _value_names(spec)
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
                "config": config,
                "params_flat": flatten_config(config) if config else {},
                "mlflow_run_id": ua.get("mlflow_run_id"),
                "complete_time": t.datetime_complete.timestamp() if t.datetime_complete else None,
                "wall_s": (ua.get("timing") or {}).get("wall_s"),
            }
        )
    done = [r for r in records if r["values"] is not None and r["feasible"] and r["role"] != VERIFY_ROLE]
    if done:
        mask = pareto_mask(objective_points(done, names), directions)
        for r, m in zip(done, mask, strict=True):
            r["pareto"] = bool(m)
        baseline = reference_baseline(done)
        if baseline is not None:
            baseline["reference"] = True
            for r in done:
                r["dominates_baseline"] = r is not baseline and dominates(r, baseline, names, directions)
    return records


def _fmt_int(x: Any) -> str:
    return f"{int(x):,}" if x is not None else "-"


def _fmt(x: Any, nd: int = 3) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{nd}f}"


def trial_summary_line(
    study: optuna.Study, spec: Any, frozen: optuna.trial.FrozenTrial, *, t_start: float, n_trials: int | None
) -> str:
    """One line per finished trial, prefixed with the study's progress (done/total, elapsed, ETA, front, best).

    done = finished trials that count against the budget; total = the budget, or more when queued trials
    (fixed trials, retries) run beyond it — so done never exceeds total.
    """
    records = study_records(study, spec)
    trials = study.get_trials(deepcopy=False)
    finished = sum(counts_against_budget(t) and t.state != TrialState.RUNNING for t in trials)
    if n_trials:
        pending = sum(t.state in (TrialState.RUNNING, TrialState.WAITING) for t in trials)
        n_trials = max(n_trials, finished + pending)
    front = sum(r["pareto"] for r in records)
    best = max(
        (
            r["values"]["accuracy"]
            for r in records
            if r["values"] and r["feasible"] and r["role"] != VERIFY_ROLE
        ),
        default=float("nan"),
    )
    elapsed = time.time() - t_start
    eta = ""
    if n_trials and finished:
        eta = (
            f" ETA {_hms(elapsed / max(1, finished) * max(0, n_trials - finished))}"  # crude: per-trial mean
        )
    ua = frozen.user_attrs
    head = f"[{finished}/{n_trials or '?'} {_hms(elapsed)}{eta} front={front} best={_fmt(best)}]"
    what = ua.get("name") or ua.get("run_name") or ""
    body = f"trial {frozen.number} {frozen.state.name:<8} {what}"
    if frozen.state == TrialState.COMPLETE and frozen.values:
        ratio = ua.get("latency_ratio")
        # A skipped trial's stored accuracy is a placeholder for the infeasible record, not a measurement.
        acc = "" if ua.get("skipped") else f" val {spec.objectives.accuracy}={frozen.values[0]:.3f}"
        body += f"{acc} params={_fmt_int(ua.get('params'))} latency={_fmt(ua.get('latency_ms'), 2)}ms"
        body += f" ({ratio:.2f}x baseline)" if ratio else ""
        if ua.get("skipped"):
            body += f" SKIPPED {ua['skipped']} (not trained)"
    elif frozen.state == TrialState.PRUNED:
        body += f" stopped at rung {ua.get('stop_rung')}"
    elif frozen.state == TrialState.FAIL:
        body += f" reason: {ua.get('fail_reason', 'unknown')}"
    return f"{head} {body}"


def _hms(s: float) -> str:
    s = int(s)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def constant_line(study: optuna.Study, spec: Any) -> str:
    """The constant predictor's level and the plateau rule, as the report states them."""
    c = study.user_attrs.get("constant_predictor")
    acc = spec.objectives.accuracy
    if not c:
        return "constant predictor: not recorded for this study (re-run `search run` on it to add it)"
    return (
        f"constant predictor (each joint's mean training position): val {acc}={c['val'][acc]:.3f}, "
        f"test {acc}={c['test'][acc]:.3f}; a trial left the plateau at the first evaluation with "
        f"val {acc} >= {c['val'][acc] + c['margin']:.3f} (constant + {c['margin']:g})"
    )


def report_text(study: optuna.Study, spec: Any) -> str:
    """The Pareto table for the terminal: front first, the baseline row, who dominates it, the seed check."""
    everything = study_records(study, spec)
    # A surplus trial was created by a worker that found the budget or the queue taken: it never ran.
    records = [r for r in everything if not (r["state"] == "FAIL" and "surplus" in str(r["fail_reason"]))]
    done = [r for r in records if r["values"] is not None and r["role"] != VERIFY_ROLE]
    done.sort(key=lambda r: (not r["pareto"], r["role"] != "baseline", -r["values"]["accuracy"]))
    acc = spec.objectives.accuracy
    n_base = sum(r["role"] == "baseline" for r in done)
    w = max([28, *(len(r["name"]) for r in done)])  # full run names: the head and seed are at their end
    header = f"{'#':>4} {'name':<{w}} {'front':<5} {'val ' + acc:>14} {'test ' + acc:>15} {'params':>11} {'MFLOPs':>9} {'lat ms':>7} {'xbase':>6} {'plateau':>9}  note"
    lines = [
        f"study {study.study_name}: {len(records)} trials, "
        + ", ".join(
            f"{s.lower()} {sum(r['state'] == s for r in records)}"
            for s in ("COMPLETE", "PRUNED", "FAIL", "RUNNING", "WAITING")
            if any(r["state"] == s for r in records)
        )
        + (
            f" ({len(everything) - len(records)} surplus trials not run)"
            if len(everything) > len(records)
            else ""
        ),
        constant_line(study, spec),
        header,
        "-" * len(header),
    ]
    for r in done:
        v = r["values"]
        note = []
        if r["reference"]:
            note.append("BASELINE" + (f" (reference: best val of {n_base} lrs)" if n_base > 1 else ""))
        elif r["role"] == "baseline":
            note.append("baseline, other lr")
        if not r["feasible"]:
            note.append(r["skipped"] or "infeasible")
        if r["dominates_baseline"]:
            note.append("dominates baseline")
        if r["plateau"] == "never":
            note.append("never left the plateau")
        val = "-" if r["skipped"] else f"{v['accuracy']:.3f}"  # a skipped trial's value is a placeholder
        lines.append(
            f"{r['number']:>4} {r['name']:<{w}} {'*' if r['pareto'] else '':<5} {val:>14} {_fmt(r['test'].get(acc)):>15} "
            f"{_fmt_int(v['params']):>11} {(v['flops'] or 0) / 1e6:>9.1f} {_fmt(v['latency_ms'], 2):>7} {_fmt(r['latency_ratio'], 2):>6} "
            f"{r['plateau'] or '-':>9}  {', '.join(note)}"
        )
    baseline = next((r for r in done if r["reference"]), None)
    if baseline is not None:
        dom = [str(r["number"]) for r in done if r["dominates_baseline"]]
        what = f"trial {baseline['number']}"
        if n_base > 1:
            lr = ((baseline["config"] or {}).get("train") or {}).get("lr")
            what = f"best of {n_base} lrs: {what}" + (f", lr {lr:g}" if lr else "")
        lines.append("")
        lines.append(
            f"baseline ({what}): val {acc}={baseline['values']['accuracy']:.3f}, "
            f"params={_fmt_int(baseline['values']['params'])}, latency={_fmt(baseline['values']['latency_ms'], 2)} ms; "
            + (f"dominated by trials {', '.join(dom)}" if dom else "not dominated by any trial")
        )
    never = [str(r["number"]) for r in done if r["plateau"] == "never"]
    if never:
        lines.append(
            f"never left the constant-predictor plateau ({len(never)}): trials {', '.join(never)}; "
            "their accuracy says nothing about their architecture"
        )
    pruned = [r for r in records if r["state"] == "PRUNED"]
    if pruned:
        lines.append("early-stopped: " + ", ".join(f"{r['number']}@{r['stop_rung']}" for r in pruned))
    failed = [r for r in records if r["state"] == "FAIL"]
    for r in failed:
        lines.append(f"failed: trial {r['number']}: {r['fail_reason']}")
    lines += verify_lines(records, spec)
    return "\n".join(lines)


def refresh_parent(study: optuna.Study, spec: Any, tracker: Any, *, importances: bool = True) -> None:
    """Re-draw the Pareto plots, table, hypervolume history and importances on the parent run.

    Args:
        study: the study.
        spec: its StudySpec.
        tracker: the study's `StudyTracker`.
        importances: also fit and draw hyperparameter importances (fANOVA: seconds; the final report
            has them, the refreshes during a study skip them).
    """
    from search.plots import (
        compute_importances,
        hypervolume_plot,
        importance_plot,
        pareto_plots,
        pareto_table,
    )

    parent = study.user_attrs.get("mlflow_parent_run_id")
    if parent is None:
        return
    records = study_records(study, spec)
    names = _value_names(spec)
    directions = list(spec.objectives.directions)
    ref = [spec.hypervolume_reference[n] for n in names]
    done = sorted(
        (r for r in records if r["values"] is not None and r["feasible"] and r["role"] != VERIFY_ROLE),
        key=lambda r: r["complete_time"] or 0,
    )
    hv_hist: list[tuple[float, float]] = []
    if done:
        created = study.user_attrs.get("created_at") or done[0]["complete_time"]
        hvs = hypervolume_history(objective_points(done, names), directions, ref)
        hv_hist = [(r["complete_time"] - created, float(h)) for r, h in zip(done, hvs, strict=True)]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        constant = study.user_attrs.get("constant_predictor")
        files = list(
            pareto_plots(
                records,
                accuracy_name=f"val {spec.objectives.accuracy}",
                out_dir=out,
                constant=constant["val"][spec.objectives.accuracy] if constant else None,
            )
        )
        files.append(pareto_table(records, out / "pareto.csv"))
        if spec.ablation is None:
            (out / "report.txt").write_text(report_text(study, spec) + "\n")
            files.append(out / "report.txt")
            rows = verify_rows(records, spec)
            if rows:
                files.append(write_verify_csv(rows, out / "verify.csv"))
        if hv_hist:
            files.append(hypervolume_plot(hv_hist, out / "hypervolume.png"))
            (out / "hypervolume.json").write_text(
                json.dumps({"reference": dict(zip(names, ref, strict=True)), "history": hv_hist})
            )
            files.append(out / "hypervolume.json")
            tracker.log_metrics(
                parent, {"hypervolume": hv_hist[-1][1], "n_complete": float(len(done))}, step=len(done)
            )
        if spec.ablation is not None:
            from search.ablation_stats import ablation_artifacts

            files.extend(ablation_artifacts(study, spec, out))
        imps = (
            compute_importances(study, list(spec.objectives.names))
            if spec.ablation is None and importances
            else {}
        )
        if imps:
            files.append(importance_plot(imps, out / "importances.png"))
            (out / "importances.json").write_text(json.dumps(imps, indent=1))
            files.append(out / "importances.json")
        for f in files:
            tracker.log_artifact(parent, str(f), "report")
    front = {r["number"] for r in records if r["pareto"]}
    run_ids = {
        r["number"]: r["mlflow_run_id"] for r in records if r["mlflow_run_id"] and r["state"] != "RUNNING"
    }
    tracker.update_pareto_tags(front, run_ids)
    if importances:  # a complete report of this many finished trials exists (see `study.finished_study`)
        study.set_user_attr(REPORTED_ATTR, sum(r["state"] in FINISHED_STATES for r in records))
