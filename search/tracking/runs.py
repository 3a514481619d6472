"""MLflow tracking for the search harness: one parent run per study, one child run per Optuna trial.

This module holds the run lifecycle (:class:`StudyTracker`: the parent run, child runs started, resumed
and ended, crash recovery of stale runs, Pareto tags). What is logged (redaction, flattened params, run
names) lives in :mod:`search.tracking.params`; where and how it is written (store URIs, the experiment,
retried batched writes through an explicit ``MlflowClient``, so several trials, threads or worker
processes can log to one store at once) in :mod:`search.tracking.store`. Some of their names are
re-exported here for existing callers; :func:`~search.tracking.params.redact_url` is imported from its home.
``mlflow`` is imported lazily, so ``import search.tracking.runs`` stays cheap (mlflow takes seconds to
import; a study with tracking off never loads it).

Run layout (experiment ``focalnet-search/<study_name>``):

- parent run: tag ``fs.role = "parent"``; params = study settings, tags = sampler, seeds, data hash,
  code version, storage URL (redacted); artifact ``spec.json`` (and ``spec.toml`` when given a file).
- child runs: tags ``mlflow.parentRunId``, ``fs.role = "trial"``, ``fs.trial_number``; params are the
  flattened resolved config (``arch.*``, ``baseline.*``, ``train.*``, ``data.*``); numeric params are
  also logged as metrics so MLflow's scatter / parallel-coordinates charts order them numerically.

Every string that reaches a param, tag or log line is passed through :func:`redact_url`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from search.tracking import store
from search.tracking.params import (
    clean_params,
    clean_tags,
    flatten_config,
    flatten_params,
    numeric_params,
    redact_url,
    run_name,
)
from search.tracking.store import (
    EXPERIMENT_PREFIX,
    default_artifact_location,
    default_tracking_uri,
    ensure_local_store,
    experiment_name,
    retry,
)

if TYPE_CHECKING:  # pragma: no cover - typing only
    from mlflow import MlflowClient
    from mlflow.entities import Run

__all__ = [
    "EXPERIMENT_PREFIX",
    "StudyTracker",
    "default_artifact_location",
    "default_tracking_uri",
    "ensure_local_store",
    "experiment_name",
    "flatten_config",
    "run_name",
]

log = logging.getLogger(__name__)

# Tags this module owns. Callers may pass other ``fs.*`` tags freely.
TAG_ROLE = "fs.role"
TAG_TRIAL_NUMBER = "fs.trial_number"
TAG_TRIAL_ROLE = "fs.trial_role"
TAG_PARENT = "mlflow.parentRunId"
TAG_PARETO = "fs.pareto"

_TERMINAL = ("FINISHED", "FAILED", "KILLED")


def _q(value: str) -> str:
    """Quote a value for an MLflow filter string."""
    return "'" + str(value).replace("'", "\\'") + "'"


class StudyTracker:
    """Logs one Optuna study to MLflow: a single parent run plus one child run per trial.

    Safe to construct in every worker process (the client is created lazily and dropped on pickling).

    Args:
        tracking_uri: MLflow tracking URI (``sqlite:///...`` or ``http(s)://...``).
        study_name: Optuna study name; the experiment is ``focalnet-search/<study_name>``.
    """

    def __init__(self, *, tracking_uri: str, study_name: str) -> None:
        self.tracking_uri = tracking_uri
        self.study_name = study_name
        self.experiment_name = experiment_name(study_name)
        self._client: MlflowClient | None = None
        self._experiment_id: str | None = None
        self._parent_id: str | None = None

    def __repr__(self) -> str:
        return f"StudyTracker(tracking_uri={redact_url(self.tracking_uri)!r}, study_name={self.study_name!r})"

    # Client objects hold DB engines / HTTP sessions; rebuild them in the receiving process.
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_client"] = None
        return state

    @property
    def client(self) -> MlflowClient:
        """The lazily created ``MlflowClient`` bound to ``tracking_uri``."""
        if self._client is None:
            from mlflow import MlflowClient  # lazy: mlflow's import takes seconds (module docstring)

            self._client = MlflowClient(tracking_uri=self.tracking_uri)
        return self._client

    # ---- experiment / parent -------------------------------------------------------------------

    @property
    def experiment_id(self) -> str:
        """Id of the study's experiment (get-or-create; restores a deleted one)."""
        if self._experiment_id is None:
            self._experiment_id = retry(
                lambda: store.get_or_create_experiment(
                    self.client,
                    self.experiment_name,
                    artifact_location=default_artifact_location(self.tracking_uri, self.study_name),
                    tags={"fs.study_name": self.study_name},
                ),
                what="experiment",
            )
        return self._experiment_id

    def _search(self, filter_string: str, *, order_by: list[str] | None = None) -> list[Run]:
        """All active runs of the experiment matching ``filter_string``."""
        return store.search_runs(self.client, self.experiment_id, filter_string, order_by=order_by)

    def _find_parents(self) -> list[Run]:
        runs = self._search(f"tags.`{TAG_ROLE}` = 'parent'")
        return sorted(runs, key=lambda r: (r.info.start_time or 0, r.info.run_id))

    def _known_parent(self) -> str | None:
        """The parent run id, looked up (oldest parent wins) when this tracker has not seen it yet."""
        if self._parent_id is None:
            parents = self._find_parents()
            if parents:
                self._parent_id = parents[0].info.run_id
        return self._parent_id

    def parent_run_id(
        self,
        *,
        spec: Mapping[str, Any],
        params: Mapping[str, Any],
        tags: Mapping[str, Any],
        spec_path: str | os.PathLike[str] | None = None,
    ) -> str:
        """Get or create the study's single parent run and log spec, params and tags on it.

        Race handling: after creating, the parents are looked up again and the oldest wins; a losing
        duplicate is deleted, so all workers attach their children to the same run. On an existing
        parent (resumed study) only params not logged yet are added (MLflow params are immutable;
        conflicting values are listed in tag ``fs.param_conflicts``), tags are updated, the spec
        artifact is overwritten and the run is marked RUNNING again.

        Args:
            spec: the study spec as a dict (logged as ``spec.json``; secrets redacted).
            params: study-level params (nested dicts are flattened with dots).
            tags: e.g. sampler, seeds, data hash, code version, storage URL (redacted here).
            spec_path: optional original spec file, logged verbatim (redacted) e.g. as ``spec.toml``.

        Returns:
            The parent run id.
        """
        if self._parent_id is None:
            parents = self._find_parents()
            if parents:
                self._parent_id = parents[0].info.run_id
                retry(lambda: self.client.update_run(self._parent_id, status="RUNNING"), what="update parent")
            else:
                self._parent_id = self._create_parent()
        run_id = self._parent_id
        store.log_params_once(self.client, run_id, clean_params(params))
        self.set_tags(run_id, dict(tags))
        store.log_spec(self.client, run_id, spec, spec_path)
        return run_id

    def _create_parent(self) -> str:
        """Create a parent run; when workers race, the oldest parent wins and a losing duplicate is deleted."""
        created = retry(
            lambda: self.client.create_run(
                self.experiment_id,
                tags={TAG_ROLE: "parent", "fs.study_name": self.study_name},
                run_name=f"study-{self.study_name}"[:200],
            ),
            what="create parent",
        )
        parents = self._find_parents()
        winner = parents[0].info.run_id if parents else created.info.run_id
        if winner != created.info.run_id:
            log.info("parent run race: keeping %s, deleting duplicate %s", winner, created.info.run_id)
            retry(lambda: self.client.delete_run(created.info.run_id), what="delete duplicate")
        return winner

    def finish_parent(self, *, status: str = "FINISHED", tags: Mapping[str, Any] | None = None) -> None:
        """Terminate the parent run at the end of the study (a resumed study re-opens it).

        Args:
            status: ``FINISHED`` | ``FAILED`` | ``KILLED``.
            tags: final study-level tags (e.g. number of trials, best values).
        """
        parent = self._known_parent()
        if parent is None:
            return
        if tags:
            self.set_tags(parent, dict(tags))
        retry(lambda: self.client.set_terminated(parent, status=status), what="end parent")

    # ---- trials --------------------------------------------------------------------------------

    def _require_parent(self) -> str:
        parent = self._known_parent()
        if parent is None:
            raise RuntimeError("StudyTracker: call parent_run_id() before logging trials")
        return parent

    def find_trial_run(self, trial_number: int) -> str | None:
        """Run id of the newest child run tagged with this Optuna trial number, or ``None``.

        Args:
            trial_number: Optuna trial number.
        """
        runs = self._search(
            f"tags.`{TAG_TRIAL_NUMBER}` = {_q(str(int(trial_number)))}",
            order_by=["attributes.start_time DESC"],
        )
        runs = [r for r in runs if r.data.tags.get(TAG_ROLE) != "parent"]
        return runs[0].info.run_id if runs else None

    def child_runs(self) -> list[Run]:
        """All active child runs of the study's parent (``mlflow.entities.Run``), oldest first."""
        parent = self._require_parent()
        runs = self._search(f"tags.`{TAG_PARENT}` = {_q(parent)}")
        return sorted(runs, key=lambda r: (r.info.start_time or 0, r.info.run_id))

    def start_trial_run(
        self,
        *,
        trial_number: int,
        run_name: str,
        params: Mapping[str, Any],
        tags: Mapping[str, Any],
    ) -> str:
        """Start (or resume) the child run of one Optuna trial.

        Optuna never reuses a trial number within a study (a retried trial gets a new number), so an
        existing run with the same ``fs.trial_number`` belongs to this very trial (e.g. the runner
        re-entered after a transient error): it is reused and set RUNNING again instead of creating a
        duplicate. Params already logged are kept (immutable in MLflow); differing values are listed
        in tag ``fs.param_conflicts``.

        Args:
            trial_number: Optuna trial number (tag ``fs.trial_number``).
            run_name: e.g. from :func:`run_name`.
            params: flat dotted params (see :func:`flatten_config`); nested dicts are flattened too.
                Numeric values are also logged as metrics at step 0.
            tags: extra tags (role, name, seeds...). A caller's ``fs.role`` is stored as ``fs.trial_role``
                because ``fs.role`` is reserved for ``parent`` / ``trial``.

        Returns:
            The child run id.
        """
        parent = self._require_parent()
        tags = dict(tags)
        if TAG_ROLE in tags and tags[TAG_ROLE] != "trial":
            tags.setdefault(TAG_TRIAL_ROLE, tags.pop(TAG_ROLE))
        own = {
            TAG_PARENT: parent,
            TAG_ROLE: "trial",
            TAG_TRIAL_NUMBER: str(int(trial_number)),
            "fs.optuna_state": "RUNNING",
        }
        all_tags = {**clean_tags(tags), **own}
        flat = flatten_params(params)
        existing = self.find_trial_run(trial_number)
        if existing is None:
            run_id = self._create_child(all_tags, run_name, what="create trial run")
        else:
            run_id = existing
            retry(lambda: self.client.update_run(run_id, status="RUNNING"), what="reopen trial run")
            self.set_tags(run_id, all_tags)
        store.log_params_once(self.client, run_id, clean_params(flat))
        numeric = numeric_params(flat)
        if numeric:
            self.log_metrics(run_id, numeric, step=0)
        return run_id

    def start_extra_run(self, *, run_name: str, params: Mapping[str, Any], tags: Mapping[str, Any]) -> str:
        """Start a child run that belongs to no Optuna trial (a reproduction, an inspection).

        Args:
            run_name: the run's name.
            params: flat dotted params, as for :meth:`start_trial_run`.
            tags: tags; ``fs.role`` is stored as ``fs.trial_role`` (``fs.role`` is reserved).
        """
        parent = self._require_parent()
        tags = dict(tags)
        if TAG_ROLE in tags:
            tags.setdefault(TAG_TRIAL_ROLE, tags.pop(TAG_ROLE))
        all_tags = {**clean_tags(tags), TAG_PARENT: parent, TAG_ROLE: "extra"}
        run_id = self._create_child(all_tags, run_name, what="create extra run")
        store.log_params_once(self.client, run_id, clean_params(flatten_params(params)))
        return run_id

    def _create_child(self, tags: dict[str, str], run_name: str, *, what: str) -> str:
        run = retry(
            lambda: self.client.create_run(self.experiment_id, tags=tags, run_name=run_name[:250] or None),
            what=what,
        )
        return run.info.run_id

    # ---- writes on any run of the study ------------------------------------------------------------

    def log_metrics(self, run_id: str, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Log numeric metrics at ``step`` (``None`` → 0); NaN / inf are kept: they mark divergence."""
        store.log_metrics(self.client, run_id, metrics, step)

    def log_artifact(
        self, run_id: str, local_path: str | os.PathLike[str], artifact_path: str | None = None
    ) -> None:
        """Upload a file or directory to the run's artifacts, optionally under ``artifact_path``."""
        store.log_artifact(self.client, run_id, local_path, artifact_path)

    def set_tags(self, run_id: str, tags: Mapping[str, Any]) -> None:
        """Set several tags at once (bools become ``true``/``false``, lists ``2-2-6-2``; redacted)."""
        store.set_tags(self.client, run_id, tags)

    def end_trial_run(self, run_id: str, *, status: str, tags: Mapping[str, Any] | None = None) -> None:
        """Terminate a child run; never leaves it RUNNING.

        Args:
            run_id: the child run.
            status: ``FINISHED`` | ``FAILED`` | ``KILLED`` (e.g. COMPLETE → FINISHED, PRUNED → KILLED,
                FAIL → FAILED).
            tags: final tags, e.g. ``fs.optuna_state``, ``fs.pareto``, ``fs.stop_rung``,
                ``fs.failure_reason``.
        """
        status = status.upper()
        if status not in _TERMINAL:
            raise ValueError(f"status: must be one of {', '.join(_TERMINAL)}, got {status!r}")
        try:
            if tags:
                self.set_tags(run_id, dict(tags))
        finally:
            # terminate even if tagging failed, so the run does not stay RUNNING
            retry(lambda: self.client.set_terminated(run_id, status=status), what="end trial run")

    def close_stale_runs(
        self,
        live_trial_numbers: Iterable[int] | None,
        optuna_states: Mapping[int, str],
    ) -> dict[str, str]:
        """Terminate child runs left RUNNING by dead workers (crash recovery).

        A RUNNING child is stale when its trial is not in ``live_trial_numbers`` (when given) and its
        Optuna state is not RUNNING — or, with a live set, whatever Optuna still says (the worker is
        known to be gone). Final status follows the Optuna state: COMPLETE → FINISHED, PRUNED → KILLED,
        FAIL → FAILED, anything else (RUNNING / WAITING / unknown) → KILLED. Tags ``fs.closed_stale``,
        ``fs.optuna_state`` and ``fs.failure_reason`` say why.

        Args:
            live_trial_numbers: trials whose workers are known to be alive, or ``None`` to rely on
                ``optuna_states`` alone.
            optuna_states: trial number → Optuna state name (``COMPLETE``, ``FAIL``, ...).

        Returns:
            run id → status set, for each run closed.
        """
        live = None if live_trial_numbers is None else {int(n) for n in live_trial_numbers}
        states = {int(k): str(v).upper().removeprefix("TRIALSTATE.") for k, v in optuna_states.items()}
        closed: dict[str, str] = {}
        for run in self._search(f"tags.`{TAG_ROLE}` = 'trial' and attributes.status = 'RUNNING'"):
            raw = run.data.tags.get(TAG_TRIAL_NUMBER)
            if raw is None or not raw.lstrip("-").isdigit():
                continue
            number = int(raw)
            state = states.get(number, "UNKNOWN")
            if live is not None and number in live:
                continue
            if live is None and state == "RUNNING":
                continue
            status = {"COMPLETE": "FINISHED", "PRUNED": "KILLED", "FAIL": "FAILED"}.get(state, "KILLED")
            reason = (
                f"stale run closed by crash recovery: worker gone, Optuna state {state}"
                if state != "COMPLETE"
                else "stale run closed by crash recovery: trial completed but run was not ended"
            )
            tags = {"fs.closed_stale": "true", "fs.optuna_state": state}
            if state != "COMPLETE":
                tags.setdefault("fs.failure_reason", reason)
            self.end_trial_run(run.info.run_id, status=status, tags=tags)
            log.info("closed stale run %s (trial %d) as %s", run.info.run_id, number, status)
            closed[run.info.run_id] = status
        return closed

    def update_pareto_tags(
        self, pareto_numbers: Iterable[int], run_ids_by_number: Mapping[int, str] | None = None
    ) -> None:
        """Set ``fs.pareto = "true"/"false"`` on child runs.

        Args:
            pareto_numbers: trial numbers on the Pareto front.
            run_ids_by_number: trial number → run id; ``None`` → every child run with a trial number.
        """
        front = {int(n) for n in pareto_numbers}
        if run_ids_by_number is None:
            run_ids_by_number = {
                int(r.data.tags[TAG_TRIAL_NUMBER]): r.info.run_id
                for r in self.child_runs()
                if r.data.tags.get(TAG_TRIAL_NUMBER, "").isdigit()
            }
        for number, run_id in run_ids_by_number.items():
            self.set_tags(run_id, {TAG_PARETO: "true" if int(number) in front else "false"})
