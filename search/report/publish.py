"""Publish the report on the study's MLflow parent run: Pareto plots and table, hypervolume, importances,
the seed check, and the ``pareto`` tags of the child runs."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import optuna

from search.efficiency.pareto import hypervolume_history
from search.report.budget import FINISHED_STATES
from search.report.families import matched_rows, write_matched_csv
from search.report.plots import (
    compute_importances,
    hypervolume_plot,
    importance_plot,
    pareto_plots,
    pareto_table,
)
from search.report.records import IN_REGION, objective_points, study_records, value_names
from search.report.seed_check import verify_rows, write_verify_csv
from search.report.text import report_text

#: Study user attr: the number of finished trials the last complete parent report showed.
REPORTED_ATTR = "report_finished_trials"

__all__ = ["REPORTED_ATTR", "refresh_parent", "write_report_files"]


def write_report_files(
    study: optuna.Study, spec: Any, out: Path, *, importances: bool = True
) -> tuple[list[Path], list[tuple[float, float]], list[dict[str, Any]]]:
    """Write the study's report files into ``out``: the Pareto plots and ``pareto.csv``, ``report.txt`` and
    ``verify.csv`` (studies), ``families_matched.csv`` (two families, seed-checked), the hypervolume history (PNG + JSON), the ablation files (ablations) and,
    with ``importances``, the hyperparameter importances.

    Returns:
        ``(files written, hypervolume history as (seconds since creation, volume), the study's records)``.
    """
    out.mkdir(parents=True, exist_ok=True)
    records = study_records(study, spec)
    names = value_names(spec)
    directions = list(spec.objectives.directions)
    ref = [spec.hypervolume_reference[n] for n in names]
    # The hypervolume counts the region of interest only, as the front does (`records.region`); a trial
    # outside it is still a point on the history (the volume stays where it was), so a study whose trials
    # all sit on the plateau draws a flat zero rather than nothing.
    done = sorted(
        (r for r in records if r["values"] is not None and r["feasible"]),
        key=lambda r: r["complete_time"] or 0,
    )
    inside = [r for r in done if r["region"] == IN_REGION]
    inside_hvs = iter(hypervolume_history(objective_points(inside, names), directions, ref) if inside else [])
    hv_hist: list[tuple[float, float]] = []
    if done:
        created = study.user_attrs.get("created_at") or done[0]["complete_time"]
        last = 0.0
        for r in done:
            if r["region"] == IN_REGION:
                last = float(next(inside_hvs))
            hv_hist.append((r["complete_time"] - created, last))
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
        matched = matched_rows(records, spec)
        if matched:
            files.append(write_matched_csv(matched, out / "families_matched.csv"))
    if hv_hist:
        files.append(hypervolume_plot(hv_hist, out / "hypervolume.png"))
        (out / "hypervolume.json").write_text(
            json.dumps({"reference": dict(zip(names, ref, strict=True)), "history": hv_hist})
        )
        files.append(out / "hypervolume.json")
    if spec.ablation is not None:
        from search.report.ablation import ablation_artifacts

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
    return files, hv_hist, records


def refresh_parent(study: optuna.Study, spec: Any, tracker: Any, *, importances: bool = True) -> None:
    """Re-draw the Pareto plots, table, hypervolume history and importances on the parent run.

    Args:
        study: the study.
        spec: its StudySpec.
        tracker: the study's `StudyTracker`.
        importances: also fit and draw hyperparameter importances (fANOVA: seconds; the final report
            has them, the refreshes during a study skip them).
    """
    parent = study.user_attrs.get("mlflow_parent_run_id")
    if parent is None:
        return
    with tempfile.TemporaryDirectory() as tmp:
        files, hv_hist, records = write_report_files(study, spec, Path(tmp), importances=importances)
        if hv_hist:
            tracker.log_metrics(
                parent, {"hypervolume": hv_hist[-1][1], "n_complete": float(len(hv_hist))}, step=len(hv_hist)
            )
        for f in files:
            tracker.log_artifact(parent, str(f), "report")
    front = {r["number"] for r in records if r["pareto"]}
    run_ids = {
        r["number"]: r["mlflow_run_id"] for r in records if r["mlflow_run_id"] and r["state"] != "RUNNING"
    }
    tracker.update_pareto_tags(front, run_ids)
    if importances:  # a complete report of this many finished trials exists (see `study.finished_study`)
        study.set_user_attr(REPORTED_ATTR, sum(r["state"] in FINISHED_STATES for r in records))
