"""The study's report as text: the progress line after each trial, and the Pareto table for the terminal."""

from __future__ import annotations

import math
import time
from typing import Any

import optuna
from optuna.trial import TrialState

from search.report.budget import counts_against_budget
from search.report.families import family_lines, matched_lines
from search.report.records import study_records
from search.report.seed_check import VERIFY_ROLE, verify_lines

__all__ = [
    "constant_line",
    "report_text",
    "seed_check_expected_s",
    "seed_check_progress",
    "trial_summary_line",
]


def _fmt_int(x: Any) -> str:
    return f"{int(x):,}" if x is not None else "-"


def _fmt(x: Any, nd: int = 3) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{nd}f}"


def trial_summary_line(
    study: optuna.Study, spec: Any, frozen: optuna.trial.FrozenTrial, *, t_start: float, n_trials: int | None
) -> str:
    """One line per finished trial, prefixed with the study's progress (done/total, elapsed, ETA, front, best).

    done = finished trials that count against the budget; total = the budget, or more when queued trials
    (fixed trials, retries) run beyond it — so done never exceeds total. A seed-check trial gets the seed
    check's own progress instead (:func:`seed_check_progress`).
    """
    records = study_records(study, spec)
    trials = study.get_trials(deepcopy=False)
    elapsed = time.time() - t_start
    if frozen.user_attrs.get("role") == VERIFY_ROLE:
        head = seed_check_progress(trials, records, elapsed=elapsed)
    else:
        head = _search_progress(
            trials, records, n_trials=n_trials, elapsed=elapsed, timeout_s=getattr(spec, "timeout_s", None)
        )
    return f"{head} {_trial_body(spec, frozen)}"


def _search_progress(
    trials: list[Any],
    records: list[dict[str, Any]],
    *,
    n_trials: int | None,
    elapsed: float,
    timeout_s: float | None = None,
) -> str:
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
    eta = ""
    if n_trials and finished:  # crude: per-trial mean; no trial starts after the timeout
        per_trial = elapsed / max(1, finished)
        left = per_trial * max(0, n_trials - finished)
        if timeout_s:
            left = min(left, max(0.0, timeout_s - elapsed) + per_trial)
        eta = f" ETA {_hms(left)}"
    return f"[{finished}/{n_trials or '?'} {_hms(elapsed)}{eta} front={front} best={_fmt(best)}]"


def seed_check_progress(trials: list[Any], records: list[dict[str, Any]], *, elapsed: float) -> str:
    """``[seed check 3/8 4m10s ETA 9m30s]``: the ETA is the remaining trainings' expected seconds — each
    one's source trial's own measured wall time — scaled by how the finished ones compared with theirs,
    shared among the workers (those running a seed-check trial now, plus the one that just finished)."""
    wall = {r["number"]: r.get("wall_s") or 0.0 for r in records}
    checks = [t for t in trials if t.user_attrs.get("role") == VERIFY_ROLE]
    done = [t for t in checks if t.state.name in ("COMPLETE", "FAIL", "PRUNED")]
    left = [t for t in checks if t.state.name in ("WAITING", "RUNNING")]
    expected_done = sum(wall.get(t.user_attrs.get("verifies"), 0.0) for t in done)
    took = sum(
        (t.datetime_complete - t.datetime_start).total_seconds()
        for t in done
        if t.datetime_start and t.datetime_complete
    )
    pace = took / expected_done if expected_done > 0 and took > 0 else 1.0
    # Workers share what is left: as many at once as are running now, plus the one that just finished.
    running = sum(t.state.name == "RUNNING" for t in left)
    at_once = max(1, min(len(left), running + 1))
    remaining = pace * sum(wall.get(t.user_attrs.get("verifies"), 0.0) for t in left) / at_once
    return f"[seed check {len(done)}/{len(done) + len(left)} {_hms(elapsed)} ETA {_hms(remaining)}]"


def _trial_body(spec: Any, frozen: optuna.trial.FrozenTrial) -> str:
    ua = frozen.user_attrs
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
    return body


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
    skipped = sum(bool(r["skipped"]) for r in records)
    done = [r for r in records if r["values"] is not None and r["role"] != VERIFY_ROLE and not r["skipped"]]
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
        *(
            [
                f"over budget: {skipped} draws skipped before training (constraints; not counted against n_trials)"
            ]
            if skipped
            else []
        ),
        *_region_line(done, spec),
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
        if r.get("family_pareto") and not r["pareto"]:
            note.append(f"on the {r['family']} family's front")
        if r["plateau"] == "never":
            note.append("never left the plateau")
        elif r["region"] == "below floor":
            note.append("below the floor")
        if r["config"] is not None and r.get("warm_start"):
            note.append(f"warm start ({r['warm_start']})")
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
    lines += family_lines(records, spec)
    lines += verify_lines(records, spec)
    lines += matched_lines(records, spec)
    return "\n".join(lines)


def seed_check_expected_s(waiting: list[Any], records: list[dict[str, Any]]) -> float:
    """Expected seconds of the queued seed-check trainings on one worker: each one's source trial's own
    measured wall time (trials from before that was recorded count 0)."""
    wall = {r["number"]: r.get("wall_s") or 0.0 for r in records}
    return sum(wall.get(t.user_attrs.get("verifies"), 0.0) for t in waiting)


def _region_line(done: list[dict[str, Any]], spec: Any) -> list[str]:
    """The region of interest in one line: its floor and how many trained trials fall outside it."""
    floor = next((r["floor"] for r in done if r.get("floor") is not None), None)
    if floor is None:
        return []
    out = [r for r in done if r["region"] not in (None, "in")]
    how = (
        f"{spec.objectives.floor:g} (study setting)"
        if spec.objectives.floor is not None
        else (f"{floor:.3f} (reference baseline's val - {spec.objectives.floor_below_baseline:g})")
    )
    return [f"region of interest: off the plateau and val {spec.objectives.accuracy} >= {how}; "
            f"{len(out)} trials outside it are not front members"]  # fmt: skip
