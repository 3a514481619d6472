"""Run a study: the worker processes of one machine, the search phase, then the seed check.

`run_study` is what `python -m search run` calls; each worker is `search.study.workers.run_worker`
(also `python -m search worker`). Every worker shares decisions through the Optuna storage only.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import Any

import optuna
from optuna.trial import TrialState
from tqdm.auto import tqdm

from search.report.budget import budget_used, counts_against_budget
from search.report.finished import finished_line, finished_study
from search.report.records import study_records
from search.report.seed_check import SEED_CHECKED_ATTR, VERIFY_ROLE, missing_verify_trials
from search.report.text import seed_check_expected_s
from search.study.lifecycle import ParentRun, enqueue_fixed
from search.study.objective import reference_latency_ms
from search.study.setup import fixed_attrs, open_study, spec_data
from search.study.threads import choose_threads
from search.study.workers import make_tracker, parent_params, parent_tags, run_worker
from search.tracking.store import default_tracking_uri, ensure_local_store

__all__ = ["run_study"]


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
        threads: torch threads per worker; 0 = `search.study.threads.choose_threads` (printed in one line).
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
    reference_latency_ms(study, spec, data.num_keypoints)  # before any worker trains beside it
    threads, why = choose_threads(jobs=jobs, requested=threads or int(spec.train.get("threads") or 0))
    print(f"threads: {threads} per worker x {jobs} worker{'s' if jobs > 1 else ''} ({why})", flush=True)
    t0 = time.time()

    def phase(
        budget: int | None, timeout_s: float | None, *, queued_only: bool = False, workers: int = jobs
    ) -> None:
        if workers <= 1:
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
            make_tracker(spec, tracking_uri),
            params=parent_params(spec, storage_url, data),
            tags=parent_tags(spec, storage_url, data),
        ):
            _run_processes(
                spec,
                jobs=workers,
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
        phase(n_trials, spec.timeout_s, workers=_workers_for(study, jobs, n_trials))
        if spec.verify_seeds and spec.ablation is None:
            # Not cut by the search's timeout; no more workers than trainings (each costs a process start).
            if waiting := _queue_seed_check(study, spec, jobs=jobs):
                phase(None, None, queued_only=True, workers=min(jobs, waiting))
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


def _workers_for(study: optuna.Study, jobs: int, n_trials: int | None) -> int:
    """No more worker processes than trials left to run (a resumed study may need one): each costs a
    process start, seconds of imports. A study bounded by time only gets all ``jobs``."""
    if n_trials is None or jobs <= 1:
        return jobs
    used, waiting = budget_used(study)
    return min(jobs, max(1, n_trials - used + waiting))


def _queue_seed_check(study: optuna.Study, spec: Any, *, jobs: int) -> int:
    """Queue the seed check's missing (member, seed) trials — front members inside the region of interest
    and the reference baseline — print how many and their expected time, return how many wait."""
    records = study_records(study, spec)
    for fixed in missing_verify_trials(study, spec, records):
        enqueue_fixed(study, fixed_attrs(fixed))
    waiting = [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
        if t.user_attrs.get("role") == VERIFY_ROLE
    ]
    if waiting:
        members = len({t.user_attrs.get("verifies") for t in waiting})
        jobs = min(jobs, len(waiting))
        expected = seed_check_expected_s(waiting, records) / max(1, jobs)
        print(
            f"seed check: {len(waiting)} trainings ({members} configs × up to {spec.verify_seeds} fresh seeds: "
            f"the front inside the region of interest and the reference baseline), expected "
            f"~{expected / 60:.0f} min on {jobs} worker{'s' if jobs > 1 else ''} (from the trials' own seconds)",
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
