"""One trial, as one straight line: spec → config → costs → (skip if over budget) → train → log.

The objective is a class so a worker builds the expensive, shared things once (dataset, constant predictor,
MLflow client) and every trial reuses them.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import math
import time
from dataclasses import dataclass
from typing import Any

import optuna

from search.efficiency.costs import constraint_values, measure_costs
from search.efficiency.stopping import pruner_for, stop_at_rung
from search.spec.space import BASELINE_OVERRIDES, resolve_config, sample_params
from search.storage.connect import worker_id
from search.storage.faults import compare_and_set_study_attr
from search.study.warm_start import WARM_ATTR
from search.task.plateau import constant_metrics, plateau_label
from search.task.train import TrainingDiverged, train
from search.tracking.runs import StudyTracker, flatten_config, run_name

__all__ = [
    "ALWAYS_TRAIN",
    "METRIC_KEYS",
    "Objective",
    "REFERENCE_LATENCY_ATTR",
    "baseline_model_config",
    "objective_values",
    "record_costs",
    "reference_latency_ms",
]

METRIC_KEYS = ("pck_0.05", "pck_0.1", "pck_0.2", "mpe_px", "nme")
#: Roles that are never skipped over budget nor stopped early: reference points, ablation cells, seed checks.
ALWAYS_TRAIN = ("baseline", "cell", "verify")


def _record_run_id(trial: optuna.Trial, run_id: str) -> None:
    """Store the trial's MLflow run id on it (now, or once MLflow was back, if the trial still runs)."""
    with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
        trial.set_user_attr("mlflow_run_id", run_id)


def objective_values(spec: Any, accuracy: float, user_attrs: dict[str, Any]) -> tuple[float, ...]:
    """The objective tuple in spec order: (val accuracy, *minimised costs)."""
    return (accuracy, *(float(user_attrs[name]) for name in spec.objectives.minimize))


def record_costs(
    trial: optuna.Trial, spec: Any, costs: Any, baseline_ms: float
) -> tuple[dict[str, Any], dict[str, float], bool]:
    """Store a trial's costs as user attrs and its budget violations as Optuna constraints.

    The live objective and the simulator (`search.tools.simulate`) both call this, so constraints reach the
    sampler the same way in both.

    Args:
        trial: the live trial.
        spec: the StudySpec (its ``constraints``).
        costs: a `search.efficiency.costs.Costs`.
        baseline_ms: the baseline's latency timed in the same process.

    Returns:
        (cost attrs, constraint violations, feasible).
    """
    cost_attrs = {
        "params": costs.params,
        "flops": costs.flops,
        "latency_ms": costs.latency.median_ms,
        "latency_iqr_ms": costs.latency.iqr_ms,
        "latency_ratio": costs.latency_ratio,
        "baseline_latency_ms": baseline_ms,
    }
    for k, v in cost_attrs.items():
        trial.set_user_attr(k, v)
    violations = constraint_values(costs, spec.constraints)
    for k, v in violations.items():
        trial.set_constraint(k, v)
    feasible = all(v <= 0 for v in violations.values())
    trial.set_user_attr("feasible", feasible)
    return cost_attrs, violations, feasible


#: Study user attr: the baseline's batch-1 latency, timed once before the first trial; every trial's latency
#: is its ratio to the baseline times this.
REFERENCE_LATENCY_ATTR = "reference_latency_ms"


def baseline_model_config(spec: Any, num_keypoints: int) -> dict[str, Any]:
    """The team's extractor as the spec builds it (the baseline trials' model), for ``num_keypoints`` joints."""
    model = resolve_config(spec, {}, overrides={"model": copy.deepcopy(BASELINE_OVERRIDES)})["model"]
    return model | {"num_keypoints": num_keypoints}


def reference_latency_ms(study: optuna.Study, spec: Any, num_keypoints: int) -> float:
    """The study's latency scale: the baseline's latency stored on the study, timed by the first process
    that needs it (`run` does so before it starts any worker, so no training runs beside it). Workers
    started together (``deploy/worker.sh``) may each time it; the first to store it wins, under the study
    lock, and the others use the stored value, so every trial of the study is on one scale."""
    ref = study.user_attrs.get(REFERENCE_LATENCY_ATTR)
    if ref is None:  # timed outside the lock, stored only if nobody stored one meanwhile
        costs = measure_costs(baseline_model_config(spec, num_keypoints), latency_spec=spec.latency)
        ref = compare_and_set_study_attr(
            study, REFERENCE_LATENCY_ATTR, None, costs.latency.median_ms, user=True
        )
    return float(ref)


@dataclass
class Objective:
    """Callable objective shared by all trials of one worker.

    Args:
        spec: the parsed `StudySpec`.
        data: the loaded `KeypointData` (same for every trial: differences between trials are paired).
        tracker: MLflow logger, or None to log nothing.
        threads: torch threads for training in this worker.
        progress: per-step progress bars.
    """

    spec: Any
    data: Any
    tracker: StudyTracker | None
    threads: int
    progress: bool = True
    _constant: dict[str, Any] | None = None

    def constant(self) -> dict[str, Any]:
        """The constant predictor's metrics on this worker's data (cheap; the same in every worker)."""
        if self._constant is None:
            self._constant = constant_metrics(self.data)
        return self._constant

    def __call__(self, trial: optuna.Trial) -> tuple[float, ...]:
        spec = self.spec
        role = trial.user_attrs.get("role", "search")
        if "role" not in trial.user_attrs:
            trial.set_user_attr("role", role)
        trial.set_user_attr("worker", worker_id())
        if role == "search":
            config = resolve_config(spec, sample_params(trial, spec))
        else:
            config = resolve_config(spec, {}, overrides=trial.user_attrs.get("fixed_overrides") or {})
        # Rungs must be evaluation points; threads are a property of the run (they change float sums).
        config["train"]["eval_steps"] = sorted(
            set(config["train"].get("eval_steps", [])) | set(spec.early_stopping.rungs)
        )
        if not config["train"].get("threads"):
            config["train"]["threads"] = self.threads
        config["data"]["hash"] = self.data.data_hash
        config["model"]["num_keypoints"] = (
            self.data.num_keypoints
        )  # the dataset decides K (16 body, 21 hand, user data)
        trial.set_user_attr("config", config)
        name = run_name(trial.number, config, label=trial.user_attrs.get("name"))
        trial.set_user_attr("run_name", name)

        # Costs first: an over-budget draw is skipped before anything is logged (no MLflow run) and does
        # not count against n_trials (`search.report.budget`), so the budget buys trained trials.
        t0 = time.perf_counter()
        cost_attrs, violations, feasible = self._costs(trial, config, role)
        cost_s = time.perf_counter() - t0
        if not feasible and role not in ALWAYS_TRAIN:
            over = ", ".join(k for k, v in violations.items() if v > 0)
            trial.set_user_attr("skipped", f"over budget: {over}")
            # Infeasible: never trained. Accuracy 0 keeps the tuple complete; constraints mark it infeasible.
            return objective_values(spec, 0.0, cost_attrs)

        # The run id as soon as MLflow made it: a Ctrl-C can land before `start_trial_run` returns, and the
        # run must still end KILLED here, not FAILED later by crash recovery.
        run_id: str | None = None
        created: list[str] = []

        def record(rid: str) -> None:
            created.append(rid)
            _record_run_id(trial, rid)

        def current_run() -> str | None:
            return run_id or (created[-1] if created else None)

        try:
            if self.tracker is not None:
                tags = {"fs.trial_number": str(trial.number), "fs.role": role, "fs.worker": worker_id()}
                if trial.user_attrs.get("name"):
                    tags["fs.variant"] = str(trial.user_attrs["name"])
                if trial.user_attrs.get("verifies") is not None:
                    tags["fs.verifies"] = str(trial.user_attrs["verifies"])
                if trial.user_attrs.get(WARM_ATTR):
                    tags["fs.warm_start"] = str(trial.user_attrs[WARM_ATTR])
                run_id = self.tracker.start_trial_run(
                    trial_number=trial.number,
                    run_name=name,
                    params=flatten_config(config),
                    tags=tags,
                    on_created=record,
                )
                self.tracker.log_metrics(
                    run_id, {k: float(v) for k, v in cost_attrs.items() if v is not None}, step=None
                )
            return self._run(
                trial, config, role, run_id, cost_attrs=cost_attrs, feasible=feasible, t0=t0, cost_s=cost_s
            )
        except optuna.exceptions.UpdateFinishedTrialError:
            # Another worker failed this trial (its heartbeat was lost, e.g. in a storage outage) and
            # queued its retry: nothing more can be written to it.
            reason = "failed by another worker (heartbeat lost); retried elsewhere"
            self._end(current_run(), "KILLED", {"fs.optuna_state": "FAIL", "fs.failure_reason": reason})
            raise
        except optuna.TrialPruned as e:
            if hasattr(e, "partial_timing"):
                trial.set_user_attr("timing", e.partial_timing)
            self._end(
                current_run(),
                "FINISHED",
                {
                    "fs.optuna_state": "PRUNED",
                    "fs.stop_rung": str(trial.user_attrs.get("stop_rung")),
                    "fs.plateau": plateau_label(trial.user_attrs.get("left_plateau_step")),
                },
            )
            raise
        except TrainingDiverged as e:
            trial.set_user_attr("fail_reason", str(e))
            self._end(current_run(), "FAILED", {"fs.optuna_state": "FAIL", "fs.failure_reason": str(e)[:500]})
            raise
        except KeyboardInterrupt:
            trial.set_user_attr("fail_reason", "interrupted (Ctrl-C)")
            self._end(
                current_run(), "KILLED", {"fs.optuna_state": "FAIL", "fs.failure_reason": "interrupted"}
            )
            raise
        except Exception as e:
            reason = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            trial.set_user_attr("fail_reason", reason)
            self._end(current_run(), "FAILED", {"fs.optuna_state": "FAIL", "fs.failure_reason": reason[:500]})
            raise

    def _end(self, run_id: str | None, status: str, tags: dict[str, str]) -> None:
        if self.tracker is not None and run_id is not None:
            try:
                self.tracker.end_trial_run(run_id, status=status, tags=tags)
            except Exception as e:  # logging must never turn one failure into two
                print(f"warning: could not close MLflow run {run_id}: {e}")

    def _costs(
        self, trial: optuna.Trial, config: dict[str, Any], role: str
    ) -> tuple[dict[str, Any], dict[str, float], bool]:
        """Measure and record the trial's costs: (cost attrs, constraint violations, feasible).

        The latency is put on the study's scale (:func:`reference_latency_ms`): its ratio to the baseline,
        timed in turns with it repeat by repeat, times the baseline's latency timed at the study's start.
        In a 2-worker study absolute times moved by up to half; re-timed ratios spread by 1-3% (README,
        "The main study")."""
        reference_ms = reference_latency_ms(trial.study, self.spec, self.data.num_keypoints)
        if role == "baseline":
            costs = measure_costs(config["model"], latency_spec=self.spec.latency)
            costs = dataclasses.replace(costs, latency_ratio=1.0)
        else:
            baseline = baseline_model_config(self.spec, config["model"]["num_keypoints"])
            costs = measure_costs(config["model"], latency_spec=self.spec.latency, baseline=baseline)
        costs = costs.on_scale(reference_ms)
        return record_costs(trial, self.spec, costs, reference_ms)

    def _run(
        self,
        trial: optuna.Trial,
        config: dict[str, Any],
        role: str,
        run_id: str | None,
        *,
        cost_attrs: dict[str, Any],
        feasible: bool,
        t0: float,
        cost_s: float,
    ) -> tuple[float, ...]:
        spec = self.spec
        pruner = pruner_for(spec)
        study = trial.study
        # Has the run left the constant-predictor plateau, and when? (None until it has.)
        plateau_bar = self.constant()["val"][spec.objectives.accuracy] + self.constant()["margin"]
        trial.set_user_attr("left_plateau_step", None)
        left: list[int] = []

        def on_eval(step: int, metrics: dict[str, float]) -> None:
            if self.tracker is not None:
                self.tracker.log_metrics(run_id, {f"val_{k}": v for k, v in metrics.items()}, step=step)
            acc = metrics[spec.objectives.accuracy]
            if acc >= plateau_bar and not left:  # NaN compares False
                left.append(step)
                trial.set_user_attr("left_plateau_step", step)
            # The baseline records its rung values too (never stopped): the cost rules' anchor.
            if step in spec.early_stopping.rungs and (role not in ALWAYS_TRAIN or role == "baseline"):
                stop_at_rung(pruner, study, trial, step, objective_values(spec, acc, cost_attrs))

        result = train(
            config["model"],
            config["train"],
            self.data,
            callback=on_eval,
            progress=self.progress,
            desc=f"trial {trial.number}",
        )
        accuracy = result.val[spec.objectives.accuracy]
        if not math.isfinite(accuracy):
            raise TrainingDiverged(result.steps_done, f"val {spec.objectives.accuracy} is {accuracy}")
        trial.set_user_attr("val", {k: result.val[k] for k in METRIC_KEYS if k in result.val})
        trial.set_user_attr("test", {k: result.test[k] for k in METRIC_KEYS if k in result.test})
        trial.set_user_attr("curve", [[s, m[spec.objectives.accuracy]] for s, m in result.history])
        timing = {
            "train_s": result.train_s,
            "data_s": result.data_s,
            "eval_s": result.eval_s,
            "cost_s": cost_s,
            "wall_s": time.perf_counter() - t0,
        }
        trial.set_user_attr("timing", timing)
        if self.tracker is not None:
            final = {f"final_val_{k}": v for k, v in result.val.items() if k in METRIC_KEYS}
            final |= {f"test_{k}": v for k, v in result.test.items() if k in METRIC_KEYS}
            final |= {f"time_{k}": v for k, v in timing.items()}
            self.tracker.log_metrics(run_id, final, step=None)
            self._end(
                run_id,
                "FINISHED",
                {
                    "fs.optuna_state": "COMPLETE",
                    "fs.feasible": str(feasible).lower(),
                    "fs.plateau": plateau_label(trial.user_attrs.get("left_plateau_step")),
                    "fs.config": json.dumps(config)[:4900],
                },
            )
        return objective_values(spec, accuracy, cost_attrs)
