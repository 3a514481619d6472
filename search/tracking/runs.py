"""MLflow tracking for the search harness: one parent run per study, one child run per Optuna trial.

This module holds the run lifecycle (:class:`StudyTracker`: the parent run, child runs started, resumed
and ended, crash recovery of stale runs, Pareto tags). What is logged (redaction, flattened params, run
names) lives in :mod:`search.tracking.params`; where and how it is written (store URIs, the experiment,
retried batched writes through an explicit ``MlflowClient``, so several trials, threads or worker
processes can log to one store at once) in :mod:`search.tracking.store`. Some of their names are
re-exported here for existing callers; :func:`~search.tracking.params.redact_url` is imported from its home.
``mlflow`` is imported lazily, so ``import search.tracking.runs`` stays cheap (mlflow takes seconds to
import; a study with tracking off never loads it).

Every write goes through an :class:`~search.tracking.outbox.Outbox`: it never raises a tracking error,
and while the server cannot take writes they wait and are replayed in order (a run created meanwhile
has a placeholder id until then). The one parent run of a study is agreed on through a
:class:`ParentClaim` (in a worker: a compare-and-set on the Optuna study, see
``search.study.lifecycle``), never by searching MLflow and creating when nothing is found.

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
import shutil
import tempfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from search.tracking import store
from search.tracking.outbox import Outbox, Resolve
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
    "ParentClaim",
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
#: ``fs.role`` of a parent run created but not (yet) claimed; a worker that loses the claim deletes it.
ROLE_CANDIDATE = "parent-candidate"

_TERMINAL = ("FINISHED", "FAILED", "KILLED")


def _q(value: str) -> str:
    """Quote a value for an MLflow filter string."""
    return "'" + str(value).replace("'", "\\'") + "'"


class ParentClaim(Protocol):
    """Where every worker of a study agrees on its one parent run (a shared, atomic slot)."""

    def get(self) -> str | None:
        """The claimed parent run id, or None."""
        ...

    def compare_and_set(self, expected: str | None, new: str) -> str:
        """Store ``new`` if the slot still holds ``expected``; return what the slot holds afterwards."""
        ...


class _OldestParent:
    """The claim of a single process without a study (a tool, a test): the oldest parent run, else a new one."""

    def __init__(self, tracker: StudyTracker) -> None:
        self._tracker = tracker

    def get(self) -> str | None:
        parents = self._tracker._find_parents()
        return parents[0].info.run_id if parents else None

    def compare_and_set(self, expected: str | None, new: str) -> str:
        return new  # one process: nobody else claims


def _spool(path: str) -> str:
    """Copy a file or folder the caller will delete, for a write that waits; returns the copy's path."""
    src = Path(path)
    dst = Path(tempfile.mkdtemp(prefix="fs-outbox-")) / src.name
    if src.is_dir():
        shutil.copytree(src, dst)
    else:
        shutil.copy2(src, dst)
    return str(dst)


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
        self._outbox: Outbox | None = None
        store.http_client_defaults(tracking_uri)

    def __repr__(self) -> str:
        return f"StudyTracker(tracking_uri={redact_url(self.tracking_uri)!r}, study_name={self.study_name!r})"

    # Client objects hold DB engines / HTTP sessions; rebuild them in the receiving process.
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_client"] = None
        state["_outbox"] = None
        return state

    @property
    def client(self) -> MlflowClient:
        """The lazily created ``MlflowClient`` bound to ``tracking_uri``."""
        if self._client is None:
            from mlflow import MlflowClient  # lazy: mlflow's import takes seconds (module docstring)

            self._client = MlflowClient(tracking_uri=self.tracking_uri)
        return self._client

    @property
    def outbox(self) -> Outbox:
        """The writes of this process, in order; they wait here while MLflow cannot take them."""
        if self._outbox is None:
            self._outbox = Outbox()
        return self._outbox

    @property
    def reachable(self) -> bool:
        """No write waits: MLflow took every write so far (reads now see them)."""
        return self._outbox is None or self._outbox.clear

    def flush(self, timeout_s: float) -> int:
        """Wait up to ``timeout_s`` for waiting writes; drop (with one line) what is still waiting then.

        Returns:
            How many writes were dropped.
        """
        if self._outbox is None or self._outbox.flush(timeout_s) == 0:
            return 0
        return self._outbox.give_up()

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
        """The parent run id; a tool that has not claimed it looks it up (the oldest parent)."""
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
        """The parent run for a single process without a study (tools, tests): see :meth:`claim_parent`.

        The oldest parent run in the experiment is adopted, else one is created. Workers of a study must
        use :meth:`claim_parent` with the study's claim instead: searching MLflow cannot stop two workers
        that start together from both creating one.
        """
        return self.claim_parent(
            _OldestParent(self), spec=spec, params=params, tags=tags, spec_path=spec_path
        )

    def claim_parent(
        self,
        claim: ParentClaim,
        *,
        spec: Mapping[str, Any],
        params: Mapping[str, Any],
        tags: Mapping[str, Any],
        spec_path: str | os.PathLike[str] | None = None,
        on_claimed: Callable[[str], None] | None = None,
    ) -> str:
        """Adopt the study's one parent run, or create it and claim it; log spec, params and tags on it.

        Create-then-resolve: when ``claim`` holds no usable run, a candidate run is created and
        compare-and-set into the claim; whoever loses deletes its candidate (nobody else knows it) and
        adopts the winner. A later worker adopts the claimed run. Adopting marks it ``fs.role=parent``
        and RUNNING, adds params not logged yet (MLflow params are immutable; conflicting values are
        listed in tag ``fs.param_conflicts``), updates tags and overwrites the spec artifact. A claimed
        run MLflow does not know (another tracking store) is replaced; a deleted one is restored.

        Args:
            claim: the shared slot (the Optuna study's, in a worker).
            spec: the study spec as a dict (logged as ``spec.json``; secrets redacted).
            params: study-level params (nested dicts are flattened with dots).
            tags: e.g. sampler, seeds, data hash, code version, storage URL (redacted here).
            spec_path: optional original spec file, logged verbatim (redacted) e.g. as ``spec.toml``.
            on_claimed: called with the run id once the run is settled (later, if MLflow is down now).

        Returns:
            The parent run id, or a placeholder while MLflow cannot be reached (later writes may use it).
        """
        created: list[str] = []  # kept across replays: a retried set-up never makes a second candidate
        params, tags, spec = clean_params(params), dict(tags), dict(spec)

        def settle(resolve: Resolve) -> str:
            current = claim.get()
            if current is None or not self._adoptable(current):
                if not created:
                    created.append(self._create_candidate())
                current = claim.compare_and_set(current, created[0])
            if created and created[0] != current:
                log.info("parent run race: adopting %s, deleting candidate %s", current, created[0])
                store.retry(lambda: self.client.delete_run(created[0]), what="delete candidate")
                created.clear()
            self._adopt(current, params=params, tags=tags, spec=spec, spec_path=spec_path)
            return current

        self._parent_id = self.outbox.create("set up the parent run", settle, on_done=on_claimed)
        return self._parent_id

    def _adoptable(self, run_id: str) -> bool:
        """The claimed run exists in this store (restored if deleted); False when MLflow does not know it."""
        from mlflow.exceptions import MlflowException

        try:
            run = store.retry(lambda: self.client.get_run(run_id), what="get parent")
        except MlflowException as e:
            if e.error_code == "RESOURCE_DOES_NOT_EXIST":
                return False
            raise
        if run.info.lifecycle_stage == "deleted":
            store.retry(lambda: self.client.restore_run(run_id), what="restore parent")
        return True

    def _create_candidate(self) -> str:
        run = store.create_run(
            self.client,
            self.experiment_id,
            tags={TAG_ROLE: ROLE_CANDIDATE, "fs.study_name": self.study_name},
            run_name=f"study-{self.study_name}"[:200],
        )
        return run.info.run_id

    def _adopt(
        self,
        run_id: str,
        *,
        params: dict[str, str],
        tags: dict[str, Any],
        spec: dict[str, Any],
        spec_path: str | os.PathLike[str] | None,
    ) -> None:
        client = self.client
        store.set_tags(client, run_id, {**tags, TAG_ROLE: "parent", "fs.study_name": self.study_name})
        store.retry(lambda: client.update_run(run_id, status="RUNNING"), what="update parent")
        store.log_params_once(client, run_id, params)
        with tempfile.TemporaryDirectory(prefix="fs-spec-") as tmp:
            for path in store.spec_files(spec, spec_path, Path(tmp)):
                store.log_artifact(client, run_id, path)

    def finish_parent(self, *, status: str = "FINISHED", tags: Mapping[str, Any] | None = None) -> None:
        """Terminate the parent run at the end of the study (a resumed study re-opens it).

        Args:
            status: ``FINISHED`` | ``FAILED`` | ``KILLED``.
            tags: final study-level tags (e.g. number of trials, best values).
        """
        parent = self._known_parent()
        if parent is not None:
            self._terminate(parent, status, tags, what="end the parent run")

    def reopen_parent(self) -> None:
        """Mark the parent RUNNING again if a worker that thought it was the last one closed it meanwhile."""
        parent = self._parent_id
        if parent is None:
            return

        def reopen(resolve: Resolve) -> None:
            run_id = resolve(parent)
            if store.retry(lambda: self.client.get_run(run_id), what="get parent").info.status != "RUNNING":
                store.retry(lambda: self.client.update_run(run_id, status="RUNNING"), what="reopen parent")

        self.outbox.write("re-open the parent run", reopen)

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
        parent = self.outbox.resolve(self._require_parent())
        runs = self._search(f"tags.`{TAG_PARENT}` = {_q(parent)}")
        return sorted(runs, key=lambda r: (r.info.start_time or 0, r.info.run_id))

    def start_trial_run(
        self,
        *,
        trial_number: int,
        run_name: str,
        params: Mapping[str, Any],
        tags: Mapping[str, Any],
        on_created: Callable[[str], None] | None = None,
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
            on_created: called with the run id once the run exists (later, if MLflow is down now).

        Returns:
            The child run id, or a placeholder while MLflow cannot be reached.
        """
        parent = self._require_parent()
        tags = dict(tags)
        if TAG_ROLE in tags and tags[TAG_ROLE] != "trial":
            tags.setdefault(TAG_TRIAL_ROLE, tags.pop(TAG_ROLE))
        own = {TAG_ROLE: "trial", TAG_TRIAL_NUMBER: str(int(trial_number)), "fs.optuna_state": "RUNNING"}
        flat = flatten_params(params)
        numeric = numeric_params(flat)
        ts = store.now_ms()

        def create(resolve: Resolve) -> str:
            all_tags = {**clean_tags(tags), **own, TAG_PARENT: resolve(parent)}
            existing = self.find_trial_run(trial_number)  # also a create whose answer a restart lost
            if existing is None:
                run = store.create_run(self.client, self.experiment_id, tags=all_tags, run_name=run_name)
                run_id = run.info.run_id
            else:
                run_id = existing
                store.retry(lambda: self.client.update_run(run_id, status="RUNNING"), what="reopen trial run")
                store.set_tags(self.client, run_id, all_tags)
            store.log_params_once(self.client, run_id, clean_params(flat))
            if numeric:
                store.log_metrics(self.client, run_id, numeric, step=0, timestamp_ms=ts)
            return run_id

        return self.outbox.create("create a trial run", create, on_done=on_created)

    def start_extra_run(self, *, run_name: str, params: Mapping[str, Any], tags: Mapping[str, Any]) -> str:
        """Start a child run that belongs to no Optuna trial (a reproduction, an inspection).

        Args:
            run_name: the run's name.
            params: flat dotted params, as for :meth:`start_trial_run`.
            tags: tags; ``fs.role`` is stored as ``fs.trial_role`` (``fs.role`` is reserved).

        Returns:
            The run id, or a placeholder while MLflow cannot be reached.
        """
        parent = self._require_parent()
        tags = dict(tags)
        if TAG_ROLE in tags:
            tags.setdefault(TAG_TRIAL_ROLE, tags.pop(TAG_ROLE))
        cleaned = clean_params(flatten_params(params))

        def create(resolve: Resolve) -> str:
            all_tags = {**clean_tags(tags), TAG_PARENT: resolve(parent), TAG_ROLE: "extra"}
            run = store.create_run(self.client, self.experiment_id, tags=all_tags, run_name=run_name)
            store.log_params_once(self.client, run.info.run_id, cleaned)
            return run.info.run_id

        return self.outbox.create("create an extra run", create)

    # ---- writes on any run of the study ------------------------------------------------------------

    def log_metrics(self, run_id: str, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Log numeric metrics at ``step`` (``None`` → 0); NaN / inf are kept: they mark divergence."""
        metrics, ts = dict(metrics), store.now_ms()  # the time of the measurement, not of a later replay
        self.outbox.write(
            "log metrics",
            lambda resolve: store.log_metrics(self.client, resolve(run_id), metrics, step, timestamp_ms=ts),
        )

    def log_artifact(
        self, run_id: str, local_path: str | os.PathLike[str], artifact_path: str | None = None
    ) -> None:
        """Upload a file or directory to the run's artifacts, optionally under ``artifact_path``.

        A write that has to wait uploads a copy: the caller may delete its file as soon as this returns.
        """
        src = [os.fspath(local_path), False]

        def keep() -> None:
            src[:] = [_spool(str(src[0])), True]

        def cleanup(_: Any) -> None:
            if src[1]:
                shutil.rmtree(Path(str(src[0])).parent, ignore_errors=True)

        self.outbox.write(
            "log an artifact",
            lambda resolve: store.log_artifact(self.client, resolve(run_id), str(src[0]), artifact_path),
            on_done=cleanup,
            on_queue=keep,
        )

    def set_tags(self, run_id: str, tags: Mapping[str, Any]) -> None:
        """Set several tags at once (bools become ``true``/``false``, lists ``2-2-6-2``; redacted)."""
        tags = dict(tags)
        self.outbox.write("set tags", lambda resolve: store.set_tags(self.client, resolve(run_id), tags))

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
        self._terminate(run_id, status, tags, what="end a trial run")

    def _terminate(self, run_id: str, status: str, tags: Mapping[str, Any] | None, *, what: str) -> None:
        tags = dict(tags or {})

        def end(resolve: Resolve) -> None:
            rid = resolve(run_id)
            try:
                if tags:
                    store.set_tags(self.client, rid, tags)
            finally:
                # terminate even if tagging failed, so the run does not stay RUNNING
                store.retry(lambda: self.client.set_terminated(rid, status=status), what=what)

        self.outbox.write(what, end)

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
