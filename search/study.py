"""Run a study: create or join it in storage, run trials in one or more workers, refresh the report.

`run_study` is what `python -m search run` calls; `run_worker` is one worker's loop (also
`python -m search worker`). Every worker shares decisions through the Optuna storage only.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from search.ablation import ablation_trials
from search.faults import fail_stale_trials, run_trial
from search.lifecycle import ParentRun, enqueue_fixed, requeue_fixed_trials
from search.objective import Objective
from search.records import SURPLUS, budget_used, refresh_parent, study_records, trial_summary_line
from search.report_refresh import BackgroundRefresh
from search.rerun import finished_line, finished_study
from search.sampler_view import SearchTrialsSampler
from search.space import fixed_trials
from search.storage import (
    StorageError,
    check_versions,
    library_versions,
    make_storage,
    recover_stale_trials,
)
from search.task.plateau import constant_metrics
from search.task.train import TrainingDiverged
from search.threads import choose_threads
from search.tracking import StudyTracker, default_tracking_uri, ensure_local_store, redact_url
from search.verify import SEED_CHECKED_ATTR, VERIFY_ROLE, missing_verify_trials

#: Seconds between two background refreshes of the parent report during a study.
REFRESH_EVERY_S = 120.0

__all__ = [
    "run_study",
    "run_worker",
    "open_study",
    "spec_data",
    "code_version",
    "budget_used",
    "cpu_count",
]


def spec_data(spec: Any) -> Any:
    """The study's dataset (generated once, then read from the cache by every worker)."""
    from search.task.data import load_data_config

    return load_data_config(spec.data.to_dict(), base_dir=spec.data.base_dir)


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def code_version() -> str:
    """Git commit of the working tree (+dirty), so every logged number traces to its code."""
    root = Path(__file__).resolve().parents[1]
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return library_versions()["focalnet-search"]
    return (sha[:12] + ("+dirty" if dirty else "")) if sha else library_versions()["focalnet-search"]


def open_study(
    spec: Any,
    storage_url: str,
    *,
    create: bool,
    allow_changed_spec: bool = False,
    data_hash: str | None = None,
) -> optuna.Study:
    """Create the study (first worker) or load it (everyone else), refusing incompatible ones.

    Args:
        spec: the parsed StudySpec.
        storage_url: Optuna storage URL (see `search.storage.make_storage`).
        create: create the study if it does not exist, and enqueue every fixed trial (baseline, variants,
            ablation cells) that has no live attempt (`search.lifecycle.requeue_fixed_trials`).
        allow_changed_spec: continue a study whose stored spec hash differs (mixed spaces corrupt comparisons).
        data_hash: recorded on creation.
    """
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = make_storage(storage_url)
    sampler = make_sampler(spec)
    try:
        study = optuna.load_study(study_name=spec.name, storage=storage, sampler=sampler)
    except KeyError:
        if not create:
            raise StorageError(f"study: {spec.name!r} does not exist in {redact_url(storage_url)}") from None
        try:
            study = optuna.create_study(
                study_name=spec.name, storage=storage, sampler=sampler, directions=spec.objectives.directions
            )
        except optuna.exceptions.DuplicatedStudyError:  # another worker won the race
            study = optuna.load_study(study_name=spec.name, storage=storage, sampler=sampler)
        else:
            study.set_user_attr("spec_hash", spec.spec_hash)
            study.set_user_attr("spec", spec.to_dict())
            study.set_user_attr("spec_raw", spec.raw)
            study.set_user_attr("spec_source", str(spec.source))
            study.set_user_attr("versions", library_versions())
            study.set_user_attr("objective_names", list(spec.objectives.names))
            study.set_user_attr("data_hash", data_hash)
            study.set_user_attr("created_at", time.time())
    check_versions(study)
    stored = study.user_attrs.get("spec_hash")
    if stored and stored != spec.spec_hash and not allow_changed_spec:
        raise StorageError(
            f"spec: study {spec.name!r} exists with a different spec (hash {stored[:12]} vs {spec.spec_hash[:12]}); "
            "rename the study or pass --allow-changed-spec"
        )
    if [d.name.lower() for d in study.directions] != list(spec.objectives.directions):
        raise StorageError(
            f"objectives: study {spec.name!r} has directions {[d.name.lower() for d in study.directions]}"
        )
    if create:
        # Fail trials of dead workers first (their retries are queued), so a fixed trial whose last
        # attempt died with its worker counts as failed and is enqueued again.
        recover_stale_trials(study)
        fail_stale_trials(study)
        fixed = ablation_trials(spec) if spec.ablation is not None else fixed_trials(spec)
        requeue_fixed_trials(study, [_fixed_attrs(f) for f in fixed])
    return study


def _fixed_attrs(fixed: dict[str, Any]) -> dict[str, Any]:
    attrs = {"role": fixed["role"], "name": fixed["name"], "fixed_overrides": fixed["overrides"]}
    return attrs | {k: fixed[k] for k in ("cell", "seed", "verifies") if k in fixed}


def make_sampler(spec: Any) -> optuna.samplers.BaseSampler:
    """The spec's sampler, wrapped so it learns from search trials only (`search.sampler_view`)."""
    import warnings

    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    seed = spec.seed
    budget = spec.n_trials or 20
    if spec.sampler == "tpe":
        inner = optuna.samplers.TPESampler(
            seed=seed, multivariate=True, group=True, n_startup_trials=max(4, min(10, budget // 3))
        )
    elif spec.sampler == "nsga2":
        # Optuna's default population (50) is larger than most budgets here, and a study that never
        # leaves generation 0 is random search; a quarter of the budget gives it a few generations.
        inner = optuna.samplers.NSGAIISampler(seed=seed, population_size=max(6, min(50, budget // 4)))
    elif spec.sampler == "gp":
        inner = optuna.samplers.GPSampler(seed=seed)
    else:
        inner = optuna.samplers.RandomSampler(seed=seed)
    return SearchTrialsSampler(inner)


def _tracker(spec: Any, tracking_uri: str) -> StudyTracker | None:
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
    and ends it (`search.lifecycle.ParentRun`). Ctrl-C marks the running trial and re-raises.
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
    tracker = _tracker(spec, tracking_uri)
    parent = ParentRun(
        study,
        spec,
        tracker,
        params=_parent_params(spec, storage_url, data),
        tags={**_parent_tags(spec, storage_url, data), "fs.plateau_margin": str(constant["margin"])},
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
    ran = 0

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
        if (
            (spec.ablation is not None or queued_only)
            and not waiting
            and not _wait_for_running(study, parent)
        ):
            break  # an ablation runs until its grid × seeds is done (n_trials is only a label); so does the seed check
        if not waiting and n_trials is not None and used >= n_trials:
            # Budget used, but a trial still RUNNING elsewhere may belong to a dead worker: stay until it
            # finishes or is failed (heartbeat / dead pid) and its retry is queued, then run the retry.
            if _wait_for_running(study, parent):
                continue
            break
        outcome = run_trial(study, guarded, quiet=(_Surplus, TrainingDiverged))
        ran += 1
        if outcome.lost:  # failed elsewhere meanwhile: its MLflow run must not stay RUNNING or FINISHED
            _end_lost_run(tracker, outcome.frozen)
            continue
        print(trial_summary_line(study, spec, outcome.frozen, t_start=t_start, n_trials=n_trials), flush=True)
        if tracker is not None:
            parent.keep_open()
            parent.close_dead_runs()  # a trial failed by heartbeat elsewhere leaves its MLflow run RUNNING
            refresher.maybe()  # plots cost seconds: drawn in the background, beside the next trial
    refresher.join()  # the last worker out draws the complete report (`ParentRun.__exit__`)
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
    import socket

    from optuna.storages._heartbeat import is_heartbeat_enabled

    from search.storage import HEARTBEAT_INTERVAL_S

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


def _parent_params(spec: Any, storage_url: str, data: Any) -> dict[str, Any]:
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


def _parent_tags(spec: Any, storage_url: str, data: Any) -> dict[str, str]:
    versions = library_versions()
    return {
        "fs.spec_hash": spec.spec_hash,
        "fs.code_version": code_version(),
        "fs.data_hash": data.data_hash,
        "fs.storage": redact_url(storage_url or "journal:mlruns/optuna.journal"),
        **{f"fs.version.{k}": v for k, v in versions.items()},
    }


def run_study(
    spec: Any,
    *,
    n_trials: int | None = None,
    jobs: int = 1,
    storage_url: str | None = None,
    tracking_uri: str | None = None,
    allow_changed_spec: bool = False,
    progress: bool = True,
    threads: int = 0,
) -> optuna.Study:
    """Create/continue the study and run it with `jobs` local worker processes (1 = in this process).

    Everything that can be wrong with the input (spec, data, storage, versions) is checked before
    anything is written to storage or MLflow. Ctrl-C marks the running trial(s), prints one line and
    re-raises `KeyboardInterrupt` (the CLI exits 130).

    Args:
        threads: torch threads per worker; 0 = `search.threads.choose_threads` (printed in one line).
    """

    storage_url = storage_url if storage_url is not None else spec.storage
    tracking_uri = tracking_uri or spec.tracking_uri or default_tracking_uri()
    n_trials = n_trials if n_trials is not None else spec.n_trials
    done = finished_study(
        spec.raw, storage_url=storage_url, n_trials=n_trials, tracking=tracking_uri != "none"
    )
    if done is not None:  # nothing to run: skip the dataset, MLflow and the report (seconds each)
        print(finished_line(done, n_trials))
        return done
    data = spec_data(spec)
    if tracking_uri != "none":
        ensure_local_store(tracking_uri)
    study = open_study(
        spec, storage_url, create=True, allow_changed_spec=allow_changed_spec, data_hash=data.data_hash
    )
    threads, why = choose_threads(jobs=jobs, requested=threads or int(spec.train.get("threads") or 0))
    print(f"threads: {threads} per worker x {jobs} worker{'s' if jobs > 1 else ''} ({why})", flush=True)
    t0 = time.time()

    def phase(budget: int | None, timeout_s: float | None, *, queued_only: bool = False) -> None:
        if jobs <= 1:
            run_worker(
                spec,
                storage_url=storage_url,
                tracking_uri=tracking_uri,
                n_trials=budget,
                timeout_s=timeout_s,
                threads=threads,
                data=data,
                progress=progress,
                allow_changed_spec=allow_changed_spec,
                queued_only=queued_only,
            )
            return
        # This process holds a lease too, so the parent run stays open until every worker is done.
        with ParentRun(
            study,
            spec,
            _tracker(spec, tracking_uri),
            params=_parent_params(spec, storage_url, data),
            tags=_parent_tags(spec, storage_url, data),
        ):
            _run_processes(
                spec,
                jobs=jobs,
                storage_url=storage_url,
                tracking_uri=tracking_uri,
                n_trials=budget,
                timeout_s=timeout_s,
                threads=threads,
                allow_changed_spec=allow_changed_spec,
                study=study,
                progress=progress,
                queued_only=queued_only,
            )

    try:
        phase(n_trials, spec.timeout_s)
        if spec.verify_seeds and spec.ablation is None:
            if _queue_seed_check(study, spec):
                phase(None, None, queued_only=True)  # the seed check is not cut by the search's timeout
            if not missing_verify_trials(study, spec, study_records(study, spec)):
                study.set_user_attr(SEED_CHECKED_ATTR, budget_used(study)[0])
    except KeyboardInterrupt:
        print(
            "interrupted: the running trial is marked FAIL; re-run the same command to continue",
            file=sys.stderr,
        )
        raise
    records = study_records(study, spec)
    done = sum(r["state"] == "COMPLETE" for r in records)
    print(
        f"study {spec.name}: {len(records)} trials ({done} complete) in {time.time() - t0:.0f}s; "
        f"`python -m search report {spec.name}` for the Pareto table"
    )
    return study


def _queue_seed_check(study: optuna.Study, spec: Any) -> int:
    """Queue the seed check's missing (member, seed) trials; return how many seed-check trials wait."""
    for fixed in missing_verify_trials(study, spec, study_records(study, spec)):
        enqueue_fixed(study, _fixed_attrs(fixed))
    waiting = [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
        if t.user_attrs.get("role") == VERIFY_ROLE
    ]
    if waiting:
        members = len({t.user_attrs.get("verifies") for t in waiting})
        print(
            f"seed check: {len(waiting)} trials to run ({members} configs × up to {spec.verify_seeds} fresh seeds)",
            flush=True,
        )
    return len(waiting)


def _run_processes(
    spec: Any,
    *,
    jobs: int,
    storage_url: str,
    tracking_uri: str,
    n_trials: int | None,
    timeout_s: float | None,
    threads: int,
    allow_changed_spec: bool,
    study: optuna.Study,
    progress: bool,
    queued_only: bool = False,
) -> None:
    """J worker processes on one machine; a crashed worker does not stop the others.

    The storage and tracking URLs reach the workers in their environment (`FS_STORAGE`,
    `FS_TRACKING_URI`), never on their command line, where every local user could read a password.
    """
    cmd = [
        sys.executable,
        "-m",
        "search",
        "worker",
        str(spec.source),
        "--threads",
        str(threads),
        "--no-progress",
    ]
    if n_trials is not None:
        cmd += ["--n-trials", str(n_trials)]
    if timeout_s:
        cmd += ["--timeout-s", str(timeout_s)]
    if allow_changed_spec:
        cmd += ["--allow-changed-spec"]
    if queued_only:
        cmd += ["--queued-only"]
    env = {**os.environ, "FS_STORAGE": storage_url or "", "FS_TRACKING_URI": tracking_uri}
    env.pop("FS_STORAGE_FILE", None)
    procs = [subprocess.Popen(cmd, env=env, start_new_session=True) for _ in range(jobs)]
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=n_trials, desc=f"study {spec.name}", unit="trial", dynamic_ncols=True)
    try:
        while [p.poll() for p in procs].count(None):  # poll every process: reaps killed workers too
            time.sleep(1.0)  # polling the storage for the progress bar only; no decisions depend on it
            if bar is not None:
                _update_bar(bar, study, spec)
    except KeyboardInterrupt:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        for p in procs:
            p.wait()
        raise
    finally:
        if bar is not None:
            _update_bar(bar, study, spec)
            bar.close()
    bad = [p.returncode for p in procs if p.returncode]
    if bad:
        print(
            f"warning: {len(bad)} of {jobs} workers exited with errors {bad}; the others finished the study",
            file=sys.stderr,
        )


def _update_bar(bar: Any, study: optuna.Study, spec: Any) -> None:
    from search.records import counts_against_budget

    records = study_records(study, spec)
    trials = study.get_trials(deepcopy=False)
    finished = [t for t in trials if counts_against_budget(t) and t.state.name != "RUNNING"]
    front = [r for r in records if r.get("pareto")]
    best = max(
        (
            r["values"]["accuracy"]
            for r in records
            if r["state"] == "COMPLETE" and r.get("feasible") and r.get("values") and r["role"] != VERIFY_ROLE
        ),
        default=float("nan"),
    )
    bar.n = len(finished)
    bar.set_postfix(front=len(front), best=f"{best:.3f}", refresh=False)
    bar.refresh()
