"""Study lifecycle: which workers are alive, the MLflow parent run's status and report, fixed trials that return.

- Every worker (and the `run` process that starts `--jobs` workers) holds a lease in the study's system
  attrs (`fs:worker:<host>:<pid>`), refreshed every heartbeat interval on RDB storages. A worker is alive
  while its process runs (same host) or its lease is fresher than interval + grace period (other hosts).
- :class:`ParentRun` opens the study's MLflow parent run (RUNNING) while this process works and on the way
  out refreshes the report (Pareto plots, CSV, hypervolume) and, when no other worker is alive, ends the
  run: FINISHED, KILLED after Ctrl-C, FAILED after a crash. Which run is the parent is agreed on through
  the storage (:class:`StudyParentClaim`: a compare-and-set on a study system attr), and so is who ends
  it: a worker leaves (lease ``exited``) and looks for live ones under one :func:`study_lock`, after its
  last MLflow write, so exactly one worker is the last one out.
- :func:`requeue_fixed_trials` enqueues every fixed trial (baseline, variants, ablation cells, any trial
  enqueued with a role) that has no live attempt — never run, or last attempt failed or interrupted —
  once per attempt, under :func:`search.storage.faults.study_lock`, so workers starting together never duplicate.
"""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any

import optuna
from optuna.storages._heartbeat import is_heartbeat_enabled
from optuna.trial import TrialState

from search.report.publish import refresh_parent
from search.storage.connect import GRACE_PERIOD_S, HEARTBEAT_INTERVAL_S, pid_alive, worker_id
from search.storage.faults import compare_and_set_study_attr, study_lock
from search.tracking.outbox import WAIT_AT_EXIT_S

__all__ = [
    "IDENTITY_KEYS",
    "PARENT_ATTR",
    "ParentRun",
    "StudyParentClaim",
    "WorkerLease",
    "enqueue_fixed",
    "fixed_identity",
    "requeue_fixed_trials",
]

LEASE_PREFIX = "fs:worker:"
#: Study system attr holding the MLflow parent run id every worker adopts (set by compare-and-set).
PARENT_ATTR = "fs:mlflow_parent"
#: Study user attr with the same id, read by the report and the tools (and by studies from before the claim).
PARENT_USER_ATTR = "mlflow_parent_run_id"
#: Seconds a worker leaving after Ctrl-C waits for MLflow to take its last writes.
_WAIT_AFTER_CTRL_C_S = 5.0
IDENTITY_KEYS = ("role", "name", "seed")  # what makes two attempts the same fixed trial
_LEGACY_FIXED_KEYS = ("role", "name", "fixed_overrides", "cell", "seed")
_LIVE = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING)


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------------------------------------
# fixed trials


def fixed_identity(attrs: Mapping[str, Any]) -> str | None:
    """The key shared by every attempt of one fixed trial (None for sampled search trials)."""
    if attrs.get("role", "search") == "search" or "name" not in attrs:
        return None
    return json.dumps([attrs.get(k) for k in IDENTITY_KEYS], sort_keys=True, default=str)


def enqueue_fixed(study: optuna.Study, attrs: Mapping[str, Any], *, attempt: int = 0) -> None:
    """Enqueue one fixed trial; `fixed_keys` records which user attrs a later attempt copies."""
    user_attrs = {**attrs, "fixed_keys": sorted(attrs), "attempt": attempt}
    study.enqueue_trial({}, user_attrs=user_attrs)


def _enqueued_attrs(trial: optuna.trial.FrozenTrial) -> dict[str, Any]:
    ua = trial.user_attrs
    keys = ua.get("fixed_keys") or [k for k in _LEGACY_FIXED_KEYS if k in ua]
    return {k: ua[k] for k in keys if k in ua}


def requeue_fixed_trials(study: optuna.Study, expected: Iterable[Mapping[str, Any]]) -> list[str]:
    """Enqueue each fixed trial without a live attempt (COMPLETE, PRUNED, RUNNING or WAITING).

    Args:
        study: the study.
        expected: the spec's fixed trials as enqueue attrs (role, name, overrides, …), in order; fixed
            trials already stored (e.g. added after the search) are covered too.

    Returns:
        The names enqueued.
    """
    with study_lock(study):  # read-then-write: two workers starting together must not both enqueue
        attempts: dict[str, list[optuna.trial.FrozenTrial]] = {}
        for t in study.get_trials(deepcopy=False):
            ident = fixed_identity(t.user_attrs)
            if ident is not None:
                attempts.setdefault(ident, []).append(t)
        wanted: dict[str, Mapping[str, Any]] = {}
        for attrs in expected:
            wanted.setdefault(fixed_identity(attrs) or "", attrs)
        for ident, trials in attempts.items():
            wanted.setdefault(ident, _enqueued_attrs(trials[-1]))
        done = []
        for ident, attrs in wanted.items():
            trials = attempts.get(ident, [])
            if not ident or any(t.state in _LIVE for t in trials):
                continue
            enqueue_fixed(study, attrs, attempt=len(trials))
            done.append(str(attrs["name"]))
        return done


# ----------------------------------------------------------------------------------------------------------
# worker leases


class WorkerLease:
    """This process's entry in the study's worker registry, refreshed every heartbeat interval.

    Args:
        study: the study.
        interval_s: refresh period; a lease older than interval + grace counts as dead (other hosts).
    """

    def __init__(self, study: optuna.Study, *, interval_s: float = HEARTBEAT_INTERVAL_S) -> None:
        self._study = study
        self.key = LEASE_PREFIX + worker_id()
        self._interval = max(0.5, float(interval_s))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _write(self, state: str) -> None:
        host, _, pid = worker_id().rpartition(":")
        value = {"state": state, "t": time.time(), "host": host, "pid": int(pid)}
        self._study._storage.set_study_system_attr(self._study._study_id, self.key, value)

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            with contextlib.suppress(Exception):  # an outage must not kill the lease; it resumes after
                self._write("running")

    def start(self) -> None:
        self._write("running")
        # Only workers on other hosts are judged by the lease's age, and those share an RDB storage;
        # on a journal (one host) the pid decides, so the journal is not written every interval.
        if is_heartbeat_enabled(self._study._storage):
            self._thread = threading.Thread(target=self._loop, name="fs-lease", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._write("exited")

    def others_alive(self) -> list[str]:
        """Lease keys of the other workers that are still alive."""
        attrs = self._study._storage.get_study_system_attrs(self._study._study_id)
        host, now = socket.gethostname(), time.time()
        alive = []
        for key, value in attrs.items():
            if not key.startswith(LEASE_PREFIX) or key == self.key or not isinstance(value, dict):
                continue
            if value.get("state") != "running":
                continue
            if value.get("host") == host:
                ok = pid_alive(int(value.get("pid", -1)))
            else:
                ok = now - float(value.get("t", 0)) < self._interval + GRACE_PERIOD_S
            if ok:
                alive.append(key)
        return alive


# ----------------------------------------------------------------------------------------------------------
# the MLflow parent run


class StudyParentClaim:
    """The study's MLflow parent run id, claimed in the Optuna storage every worker shares.

    Implements `search.tracking.runs.ParentClaim`: reads and compare-and-sets study system attr
    :data:`PARENT_ATTR` under :func:`study_lock`. A study from before the claim existed has only the user
    attr; its run is claimed as it is.

    Args:
        study: the study.
    """

    def __init__(self, study: optuna.Study) -> None:
        self._study = study

    def get(self) -> str | None:
        attrs = self._study._storage.get_study_system_attrs(self._study._study_id)
        if PARENT_ATTR in attrs:
            return attrs[PARENT_ATTR]
        legacy = self._study.user_attrs.get(PARENT_USER_ATTR)
        return self.compare_and_set(None, legacy) if legacy else None

    def compare_and_set(self, expected: str | None, new: str) -> str:
        return compare_and_set_study_attr(self._study, PARENT_ATTR, expected, new)


class ParentRun:
    """The study's MLflow parent run while this process works on the study (a context manager).

    On entry: lease, parent run claimed or adopted (RUNNING), its id stored on the study. On exit: stale
    child runs closed, the report refreshed, this worker's waiting MLflow writes sent, and — when no
    other worker is alive — the parent ended FINISHED (normal exit), KILLED (Ctrl-C) or FAILED (any other
    exception). A no-op without a tracker. No tracking error leaves it: MLflow is a view of the study.

    Args:
        study: the study.
        spec: its parsed spec (for the report).
        tracker: the study's `StudyTracker`, or None (no MLflow).
        params: study-level params for the parent run.
        tags: study-level tags for the parent run.
    """

    def __init__(
        self,
        study: optuna.Study,
        spec: Any,
        tracker: Any,
        *,
        params: Mapping[str, Any],
        tags: Mapping[str, Any],
    ) -> None:
        self.study, self.spec, self.tracker = study, spec, tracker
        self._params, self._tags = dict(params), dict(tags)
        self.lease = WorkerLease(study)
        self.run_id: str | None = None
        self._warned = False

    def __enter__(self) -> ParentRun:
        # Under the lock a worker deciding to end the parent uses: it either sees this lease, or has
        # ended the parent before this worker re-opens it.
        with study_lock(self.study):
            self.lease.start()
        if self.tracker is not None:
            self.run_id = self.tracker.claim_parent(
                StudyParentClaim(self.study),
                spec=self.spec.to_dict(),
                params=self._params,
                tags=self._tags,
                on_claimed=self._record,
            )
        return self

    def _record(self, run_id: str) -> None:
        if self.study.user_attrs.get(PARENT_USER_ATTR) != run_id:
            self.study.set_user_attr(PARENT_USER_ATTR, run_id)

    def keep_open(self) -> None:
        """Re-open the parent if a worker that thought it was the last one closed it meanwhile."""
        if self.tracker is not None and self.run_id is not None:
            self.tracker.reopen_parent()

    def close_dead_runs(self) -> None:
        """MLflow runs of trials that are no longer RUNNING in Optuna (a killed worker) get closed.

        Skipped while writes of this worker wait for MLflow: a run they would end is not stale.
        """
        if self.tracker is None or not self.tracker.reachable:
            return
        states = {t.number: t.state.name for t in self.study.get_trials(deepcopy=False)}
        try:
            self.tracker.close_stale_runs(None, states)
        except Exception as e:  # a read MLflow could not answer; the next call tries again
            if not self._warned:
                self._warned = True
                _warn(f"could not look for stale MLflow runs: {_first_line(e)}")

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        status = "FINISHED"
        if exc_type is not None:
            status = "KILLED" if issubclass(exc_type, KeyboardInterrupt) else "FAILED"
        ignore_sigint = status == "KILLED" and threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if ignore_sigint else None
        try:
            self._close(status)
        finally:
            if previous is not None:
                signal.signal(signal.SIGINT, previous)

    def _close(self, status: str) -> None:
        # One deadline for every wait below: MLflow staying away delays a leaving worker once, not thrice.
        deadline = time.monotonic() + (_WAIT_AFTER_CTRL_C_S if status == "KILLED" else WAIT_AT_EXIT_S)
        reported = False
        if self.tracker is not None:
            # This worker's trial runs exist before the report points at them.
            self.tracker.flush(max(0.0, deadline - time.monotonic()))
            # The final report (plots, importances: seconds) is the last leaver's to write; a worker that
            # leaves while others still run leaves it to them (and `run --jobs N` holds a lease itself).
            reported = self._report(status) if not self._others_alive() else False
            # Its last write reaches MLflow (or is given up) before the others can see it leave.
            self.tracker.flush(max(0.0, deadline - time.monotonic()))
        ended = False
        try:
            with study_lock(self.study):  # leave and look under one lock: exactly one worker is the last
                self.lease.stop()
                if self.tracker is not None and not self.lease.others_alive():
                    ended = True
                    self.tracker.finish_parent(status=status, tags={"fs.study_state": status.lower()})
        except Exception:  # storage unreachable: nobody can tell; a live worker re-opens the parent
            if self.tracker is not None and not ended:
                self.tracker.finish_parent(status=status, tags={"fs.study_state": status.lower()})
        if self.tracker is not None:
            if ended and not reported:  # workers leaving together each saw the other: the last one reports
                self._report(status)
            self.tracker.flush(max(0.0, deadline - time.monotonic()))

    def _others_alive(self) -> bool:
        try:
            return bool(self.lease.others_alive())
        except Exception:  # storage unreachable: report, as a lone worker would
            return False

    def _report(self, status: str) -> bool:
        """Close stale trial runs and refresh the parent run's report; False when it could not."""
        try:
            self.close_dead_runs()
            if self.tracker.reachable:
                refresh_parent(self.study, self.spec, self.tracker)
                return True
        except Exception as e:  # the results are safe in storage; the report is redone next time
            if status != "KILLED":  # after Ctrl-C the one "interrupted" line says enough
                _warn(f"could not refresh the MLflow parent run: {_first_line(e)}")
        return False


def _first_line(e: BaseException) -> str:
    return str(e).splitlines()[0] if str(e) else repr(e)
