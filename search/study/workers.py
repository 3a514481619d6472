"""One worker's loop: join the study, hold a lease on its parent run, run trials until the budget is used.

`run_worker` is `python -m search worker`; `search.study.run.run_study` starts one or more of them.
Every worker shares decisions through the Optuna storage only.
"""

from __future__ import annotations

import socket
import sys
import time
from typing import Any

import optuna
from optuna.storages._heartbeat import is_heartbeat_enabled
from optuna.trial import TrialState

from search.report.budget import MAX_SKIPPED_PER_TRIAL, SURPLUS, budget_used, skipped_draws
from search.report.publish import refresh_parent
from search.report.refresh import BackgroundRefresh
from search.report.text import trial_summary_line
from search.storage.connect import (
    HEARTBEAT_INTERVAL_S,
    StorageError,
    library_versions,
    recover_stale_trials,
)
from search.storage.faults import fail_stale_trials, run_trial
from search.study.lifecycle import ParentRun
from search.study.objective import Objective
from search.study.setup import code_version, open_study, spec_data
from search.task.plateau import constant_metrics
from search.task.train import TrainingDiverged
from search.tracking.params import redact_url
from search.tracking.runs import StudyTracker

#: Seconds between two background refreshes of the parent report during a study.
REFRESH_EVERY_S = 120.0

__all__ = ["make_tracker", "parent_params", "parent_tags", "run_worker"]


def make_tracker(spec: Any, tracking_uri: str) -> StudyTracker | None:
    if tracking_uri == "none":
        return None
    return StudyTracker(tracking_uri=tracking_uri, study_name=spec.name)


def run_worker(
    spec: Any,
    *,
    storage_url: str,
    tracking_uri: str,
    n_trials: int | None,
    timeout_s: float | None,
    threads: int,
    data: Any = None,
    progress: bool = True,
    create: bool = True,
    allow_changed_spec: bool = False,
    queued_only: bool = False,
) -> int:
    """One worker: run trials until the study's global budget or the deadline is reached.

    While it works the study's MLflow parent run is RUNNING; the last worker out refreshes its report
    and ends it (`search.study.lifecycle.ParentRun`). Ctrl-C marks the running trial and re-raises.
    With ``queued_only`` (the seed check) it runs only queued trials and stops when none is left.

    Returns the number of trials this worker ran.
    """

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if data is None:
        data = spec_data(spec)
    study = open_study(
        spec, storage_url, create=create, allow_changed_spec=allow_changed_spec, data_hash=data.data_hash
    )
    if study.user_attrs.get("data_hash") not in (None, data.data_hash):
        raise StorageError(f"data: this worker's dataset hash {data.data_hash[:12]} differs from the study's")
    constant = _constant_predictor(study, data)
    tracker = make_tracker(spec, tracking_uri)
    parent = ParentRun(
        study,
        spec,
        tracker,
        params=parent_params(spec, storage_url, data),
        tags={**parent_tags(spec, storage_url, data), "fs.plateau_margin": str(constant["margin"])},
    )
    with parent:
        if tracker is not None and parent.run_id is not None:
            # The plateau every trial is measured against, on the parent where the Pareto plots are.
            tracker.log_metrics(
                parent.run_id,
                {f"constant_{split}_{k}": v for split in ("val", "test") for k, v in constant[split].items()},
                step=None,
            )
        parent.close_dead_runs()
        return _trial_loop(study, spec, parent, data=data, n_trials=n_trials, timeout_s=timeout_s,
                           threads=threads, progress=progress, queued_only=queued_only)  # fmt: skip


def _constant_predictor(study: optuna.Study, data: Any) -> dict[str, Any]:
    """The constant predictor's metrics, stored on the study once (deterministic from the data)."""
    constant = study.user_attrs.get("constant_predictor")
    if constant is None:
        constant = constant_metrics(data)
        study.set_user_attr("constant_predictor", constant)
    return constant


def _trial_loop(
    study: optuna.Study,
    spec: Any,
    parent: ParentRun,
    *,
    data: Any,
    n_trials: int | None,
    timeout_s: float | None,
    threads: int,
    progress: bool,
    queued_only: bool = False,
) -> int:
    tracker = parent.tracker
    objective = Objective(spec=spec, data=data, tracker=tracker, threads=threads, progress=progress)
    t_start = time.time()
    deadline = t_start + timeout_s if timeout_s else None
    ran = skipped = 0

    refresher = BackgroundRefresh(
        lambda: refresh_parent(study, spec, tracker, importances=False), every_s=REFRESH_EVERY_S
    )

    def guarded(trial: optuna.Trial) -> tuple[float, ...]:
        # Two workers can both see "one trial left" and both start one: the later-numbered is surplus.
        if n_trials is not None and _is_surplus(study, trial, n_trials):
            trial.set_user_attr(
                "fail_reason", f"{SURPLUS}: budget of {n_trials} trials reached by other workers"
            )
            raise _Surplus(f"trial {trial.number} not run: budget of {n_trials} trials reached")
        # Another worker took the last queued trial: Optuna sampled a new one, which this phase must not run.
        if (queued_only or spec.ablation is not None) and not _enqueued(study, trial):
            trial.set_user_attr("fail_reason", f"{SURPLUS}: the queue was empty (another worker took it)")
            raise _Surplus(f"trial {trial.number} not run: only queued trials run now")
        return objective(trial)

    while True:
        used, waiting = budget_used(study)
        if deadline is not None and time.time() >= deadline:
            break
        if (spec.ablation is not None or queued_only) and not waiting:
            # An ablation runs until its grid × seeds is done (n_trials is only a label); so does the seed
            # check. Nothing queued: wait while another worker's trial may still fail and be queued again,
            # without asking for a trial (Optuna would sample one, to be failed as surplus, every second).
            if _wait_for_running(study, parent):
                continue
            break
        if not waiting and n_trials is not None and used >= n_trials:
            # Budget used, but a trial still RUNNING elsewhere may belong to a dead worker: stay until it
            # finishes or is failed (heartbeat / dead pid) and its retry is queued, then run the retry.
            if _wait_for_running(study, parent):
                continue
            break
        if n_trials is not None and skipped_draws(study) >= MAX_SKIPPED_PER_TRIAL * n_trials:
            print(f"warning: stopped drawing: {skipped_draws(study)} draws were over budget "
                  "(`python -m search plan SPEC` shows the trainable share of the space)", file=sys.stderr)  # fmt: skip
            break
        outcome = run_trial(study, guarded, quiet=(_Surplus, TrainingDiverged))
        ran += 1
        if outcome.frozen is not None and outcome.frozen.user_attrs.get("skipped"):
            skipped += 1  # over budget, never trained: one line at the end, not a line each
            continue
        if outcome.lost:  # failed elsewhere meanwhile: its MLflow run must not stay RUNNING or FINISHED
            _end_lost_run(tracker, outcome.frozen)
            continue
        print(trial_summary_line(study, spec, outcome.frozen, t_start=t_start, n_trials=n_trials), flush=True)
        if tracker is not None:
            parent.keep_open()
            parent.close_dead_runs()  # a trial failed by heartbeat elsewhere leaves its MLflow run RUNNING
            refresher.maybe()  # plots cost seconds: drawn in the background, beside the next trial
    refresher.join()  # the last worker out draws the complete report (`ParentRun.__exit__`)
    if skipped:
        print(
            f"over budget: {skipped} draws of this worker skipped before training (not counted, not logged)"
        )
    return ran


def _end_lost_run(tracker: StudyTracker | None, frozen: optuna.trial.FrozenTrial) -> None:
    run_id = frozen.user_attrs.get("mlflow_run_id")
    if tracker is None or not run_id:
        return
    reason = "failed by another worker (heartbeat lost); retried elsewhere"
    try:
        tracker.end_trial_run(
            run_id, status="KILLED", tags={"fs.optuna_state": "FAIL", "fs.failure_reason": reason}
        )
    except Exception as e:  # logging must never stop the worker
        print(f"warning: could not close MLflow run {run_id}: {e}", file=sys.stderr)


class _Surplus(RuntimeError):
    """A trial started after the global budget was reached by a concurrent worker (it is not run)."""


def _is_surplus(study: optuna.Study, trial: optuna.Trial, n_trials: int) -> bool:
    """A freshly sampled trial beyond the budget: as many counting trials have lower numbers.

    Queued trials (fixed trials, retries of dead workers' trials) always run, as in `budget_used`.
    """
    if _enqueued(study, trial):
        return False
    used, _ = budget_used(_Before(study, trial.number))
    return used >= n_trials


def _enqueued(study: optuna.Study, trial: optuna.Trial) -> bool:
    """The trial was taken from the queue (a fixed trial, or an RDB retry), not freshly sampled."""
    system_attrs = study._storage.get_trial_system_attrs(trial._trial_id)
    return "fixed_params" in system_attrs or "failed_trial" in system_attrs


class _Before:
    """The study's trials numbered below `number` (what `budget_used` counts for one trial)."""

    def __init__(self, study: optuna.Study, number: int) -> None:
        self._study, self._number = study, number

    def get_trials(self, deepcopy: bool = False) -> list[optuna.trial.FrozenTrial]:
        return [t for t in self._study.get_trials(deepcopy=deepcopy) if t.number < self._number]


def _wait_for_running(study: optuna.Study, parent: ParentRun) -> bool:
    """After the budget is used: True (after a short wait) while some RUNNING trial may still need a retry.

    RDB storage: fail trials whose heartbeat stopped (Optuna's retry callback queues their retry) and
    wait on any other RUNNING trial. Journal storage: fail trials of dead processes on this host and
    wait on live ones on this host (other hosts cannot be checked without a heartbeat).
    """
    heartbeat = is_heartbeat_enabled(study._storage)
    if heartbeat:
        fail_stale_trials(study)  # skipped right after an outage: others' heartbeats need time to resume
    else:
        recover_stale_trials(study)
    parent.close_dead_runs()
    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    if not heartbeat:
        host = socket.gethostname()
        running = [t for t in running if str(t.user_attrs.get("worker", "")).rpartition(":")[0] == host]
    if not running:
        return False
    time.sleep(min(1.0, HEARTBEAT_INTERVAL_S / 2) if heartbeat else 1.0)
    return True


def parent_params(spec: Any, storage_url: str, data: Any) -> dict[str, Any]:
    return {
        "study.name": spec.name,
        "study.sampler": spec.sampler,
        "study.seed": spec.seed,
        "study.n_trials": spec.n_trials,
        "study.objectives": ",".join(spec.objectives.names),
        "data.dataset": spec.data.dataset or f"train={spec.data.train}",
        "data.hash": data.data_hash,
        "data.seed": spec.data.seed,
        "storage": redact_url(storage_url or "journal:mlruns/optuna.journal"),
    }


def parent_tags(spec: Any, storage_url: str, data: Any) -> dict[str, str]:
    versions = library_versions()
    return {
        "fs.spec_hash": spec.spec_hash,
        "fs.code_version": code_version(),
        "fs.data_hash": data.data_hash,
        "fs.storage": redact_url(storage_url or "journal:mlruns/optuna.journal"),
        **{f"fs.version.{k}": v for k, v in versions.items()},
    }
