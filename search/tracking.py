"""MLflow tracking for the search harness: one parent run per study, one child run per Optuna trial.

Everything goes through ``mlflow.MlflowClient`` with explicit run ids (never the fluent
``mlflow.start_run`` global state), so several trials, threads or worker processes can log to the
same store at once. ``mlflow`` is imported lazily, so ``import search.tracking`` stays cheap.

Run layout (experiment ``focalnet-search/<study_name>``):

- parent run: tag ``fs.role = "parent"``; params = study settings, tags = sampler, seeds, data hash,
  code version, storage URL (redacted); artifact ``spec.json`` (and ``spec.toml`` when given a file).
- child runs: tags ``mlflow.parentRunId``, ``fs.role = "trial"``, ``fs.trial_number``; params are the
  flattened resolved config (``arch.*``, ``baseline.*``, ``train.*``, ``data.*``); numeric params are
  also logged as metrics so MLflow's scatter / parallel-coordinates charts order them numerically.

Every string that reaches a param, tag or log line is passed through :func:`redact_url`.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import re
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

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
    "redact_url",
    "run_name",
]

log = logging.getLogger(__name__)

EXPERIMENT_PREFIX = "focalnet-search/"
ParamValue = str | float | int | bool

# MLflow limits (3.x): param values 6000 chars, tag values 8000; stay well under both.
_MAX_PARAM_LEN = 6000
_MAX_TAG_LEN = 5000
_BATCH_PARAMS = 100  # log_batch accepts at most 100 params per call
_BATCH_METRICS = 1000

# Tags this module owns. Callers may pass other ``fs.*`` tags freely.
TAG_ROLE = "fs.role"
TAG_TRIAL_NUMBER = "fs.trial_number"
TAG_TRIAL_ROLE = "fs.trial_role"
TAG_PARENT = "mlflow.parentRunId"
TAG_PARETO = "fs.pareto"

_TERMINAL = ("FINISHED", "FAILED", "KILLED")

T = TypeVar("T")


# --------------------------------------------------------------------------------------------------
# URL redaction
# --------------------------------------------------------------------------------------------------

# ``scheme://user:secret@host`` → ``scheme://user:***@host``. The user part may not contain ``/``, ``@``
# or ``:``; the secret may contain anything up to the last ``@`` of the authority.
_USERINFO_RE = re.compile(r"(?P<pre>[A-Za-z][A-Za-z0-9+.\-]*://[^:/@\s]*:)(?P<pw>[^\s/]*)(?P<at>@)")
_QUERY_SECRET_RE = re.compile(
    r"(?P<pre>[?&;](?:password|passwd|pwd|pass|secret|token|api_key|apikey|access_token)=)(?P<pw>[^&;#\s]*)",
    re.IGNORECASE,
)


def redact_url(url: str) -> str:
    """Remove passwords from a storage / tracking URL (or any text containing URLs).

    Args:
        url: e.g. ``postgresql://user:secret@host/db`` or ``mysql://h/db?password=x``.

    Returns:
        The same text with every password replaced by ``***``
        (``postgresql://user:***@host/db``, ``mysql://h/db?password=***``).
    """
    if not isinstance(url, str):
        url = str(url)
    out = _USERINFO_RE.sub(lambda m: m["pre"] + ("***" if m["pw"] else "") + m["at"], url)
    return _QUERY_SECRET_RE.sub(lambda m: m["pre"] + "***", out)


# --------------------------------------------------------------------------------------------------
# Store helpers
# --------------------------------------------------------------------------------------------------


def default_tracking_uri() -> str:
    """The default tracking URI: a SQLite DB under ``./mlruns`` (MLflow 3.17+ refuses the file store)."""
    return "sqlite:///mlruns/mlflow.db"


def _sqlite_path(uri: str) -> Path | None:
    """Filesystem path of a ``sqlite:///`` URI (relative to the cwd unless it has 4 slashes)."""
    if not uri.startswith("sqlite:"):
        return None
    rest = uri[len("sqlite:") :].split("?", 1)[0]
    if not rest.startswith("///"):
        return None
    path = rest[3:]  # "sqlite:////abs" → "/abs", "sqlite:///rel" → "rel"
    if not path or path == ":memory:":
        return None
    return Path(path)


def default_artifact_location(tracking_uri: str, study_name: str | None = None) -> str | None:
    """Absolute ``file://`` artifact location for a SQLite store, ``None`` for servers.

    Artifacts of ``sqlite:///dir/mlflow.db`` live under ``dir/artifacts[/<study_name>]``, resolved
    against the current directory now, so workers started elsewhere still find them.

    Args:
        tracking_uri: the tracking URI.
        study_name: optional sub-folder (sanitised) so studies do not share one folder.
    """
    db = _sqlite_path(tracking_uri)
    if db is None:
        return None  # an http(s) server / database store chooses its own artifact root
    root = db.expanduser().resolve().parent / "artifacts"
    if study_name:
        root = root / re.sub(r"[^A-Za-z0-9._-]+", "_", study_name)
    return root.as_uri()


def ensure_local_store(uri: str) -> None:
    """Create and migrate a SQLite store once, before worker processes start.

    Concurrent first-time schema migrations of the same SQLite file collide, so the runner calls this
    in the parent process. No-op apart from a connectivity check for non-SQLite URIs.

    Args:
        uri: the tracking URI.
    """
    db = _sqlite_path(uri)
    if db is not None:
        db.expanduser().parent.mkdir(parents=True, exist_ok=True)
    from mlflow import MlflowClient

    _retry(lambda: MlflowClient(tracking_uri=uri).search_experiments(max_results=1), what="init store")


def experiment_name(study_name: str) -> str:
    """MLflow experiment name of a study: ``focalnet-search/<study_name>``."""
    return EXPERIMENT_PREFIX + study_name


_TRANSIENT = (
    "database is locked",
    "database table is locked",
    "database schema has changed",
    "deadlock",
    "could not serialize",
    "connection reset",
    "connection refused",
    "too many requests",
    "temporarily unavailable",
)


def _is_transient(exc: BaseException) -> bool:
    text = str(exc).lower()
    return any(t in text for t in _TRANSIENT)


def _retry(fn: Callable[[], T], *, what: str, attempts: int = 8, base_s: float = 0.05) -> T:
    """Call ``fn``, retrying briefly on "database is locked"-style transient errors.

    SQLite allows one writer at a time; with many workers a write can time out. Jittered exponential
    backoff (≈ 6 s worst case) spreads the retries so they do not collide again.
    """
    for attempt in range(attempts):
        try:
            return fn()
        except Exception as exc:
            if attempt == attempts - 1 or not _is_transient(exc):
                raise
            delay = min(2.0, base_s * 2**attempt) * (0.5 + random.random())
            log.debug("mlflow %s: transient error (%s), retry in %.2fs", what, redact_url(str(exc)), delay)
            time.sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover


# --------------------------------------------------------------------------------------------------
# Config flattening and run names
# --------------------------------------------------------------------------------------------------


def _fmt_value(value: Any) -> ParamValue:
    """Param value: scalars stay, lists become ``2-2-6-2``, ``None`` becomes ``none``."""
    if isinstance(value, bool | int | float):
        return value
    if value is None:
        return "none"
    if isinstance(value, list | tuple):
        if not value:
            return "none"
        # nested lists (per-stage tuples) use "_" between stages so "-" stays the inner separator
        sep = "_" if any(isinstance(v, list | tuple) for v in value) else "-"
        return sep.join(str(_fmt_value(v)) for v in value)
    return redact_url(str(value))


def _flatten(prefix: str, obj: Any, out: dict[str, ParamValue]) -> None:
    if isinstance(obj, Mapping):
        for key, val in obj.items():
            _flatten(f"{prefix}.{key}" if prefix else str(key), val, out)
    else:
        out[prefix] = _fmt_value(obj)


def flatten_config(resolved_config: Mapping[str, Any]) -> dict[str, ParamValue]:
    """Flatten a resolved trial config into dotted MLflow params.

    ``model.focalnet.*``, ``model.backbone``, ``model.head_*`` and ``model.num_keypoints`` become
    ``arch.*`` (plus derived ``arch.num_stages`` and ``arch.depth = sum(depths)``); ``train.*`` and
    ``data.*`` keep their prefix. For the baseline backbone only ``arch.backbone = baseline`` is
    under ``arch.``; its own fields, head and keypoint count go to ``baseline.*`` so parallel
    coordinates never show FocalNet defaults for the baseline. Lists are joined as ``2-2-6-2``.

    Args:
        resolved_config: ``{"model": {...}, "train": {...}, "data": {...}}``.
    """
    out: dict[str, ParamValue] = {}
    model = dict(resolved_config.get("model") or {})
    backbone = str(model.get("backbone", "focalnet"))
    out["arch.backbone"] = backbone
    if backbone == "baseline":
        _flatten("baseline", model.get("baseline") or {}, out)
        for key, val in model.items():
            if key not in ("backbone", "baseline", "focalnet"):
                _flatten(f"baseline.{key}", val, out)
    else:
        focal = dict(model.get("focalnet") or {})
        _flatten("arch", focal, out)
        depths = focal.get("depths")
        if isinstance(depths, list | tuple) and depths and all(isinstance(d, int) for d in depths):
            out.setdefault("arch.num_stages", len(depths))
            out.setdefault("arch.depth", int(sum(depths)))
        for key, val in model.items():
            if key not in ("backbone", "baseline", "focalnet"):
                _flatten(f"arch.{key}", val, out)
    for section in ("train", "data"):
        if resolved_config.get(section) is not None:
            _flatten(section, resolved_config[section], out)
    for key, val in resolved_config.items():  # anything else keeps its own top-level name
        if key not in ("model", "train", "data"):
            _flatten(str(key), val, out)
    return out


def _short(value: Any) -> str:
    if isinstance(value, list | tuple):
        uniq = list(dict.fromkeys(value))
        return "-".join(str(v) for v in uniq) if len(uniq) > 1 else str(uniq[0]) if uniq else ""
    return str(value)


def run_name(trial_number: int, resolved_config: Mapping[str, Any], *, label: str | None = None) -> str:
    """Short CleanRL-style run name telling config and seed.

    ``t007-fn-p4-s3-d32-L2-seq-s0``: trial 7, FocalNet, patch 4, 3 stages, embed dim 32, focal level 2,
    context mode ``seq``, train seed 0. The baseline is ``t000-baseline-s0``; a ``label`` (variant or
    cell name) replaces the architecture part: ``t003-<label>-s0``.

    Args:
        trial_number: Optuna trial number.
        resolved_config: the trial's resolved config.
        label: optional name of a fixed trial.
    """
    model = resolved_config.get("model") or {}
    seed = (resolved_config.get("train") or {}).get("seed", 0)
    parts = [f"t{int(trial_number):03d}"]
    if label:
        parts.append(re.sub(r"[^A-Za-z0-9._+-]+", "_", label)[:40])
    elif model.get("backbone", "focalnet") == "baseline":
        parts.append("baseline")
    else:
        fn = model.get("focalnet") or {}
        parts.append("fn")
        if "patch_size" in fn:
            parts.append(f"p{fn['patch_size']}")
        if isinstance(fn.get("depths"), list | tuple):
            parts.append(f"s{len(fn['depths'])}")
        if "embed_dim" in fn:
            parts.append(f"d{fn['embed_dim']}")
        for key in ("focal_levels", "focal_level"):
            if key in fn:
                parts.append(f"L{_short(fn[key])}")
                break
        for key in ("contexts", "context", "context_mode"):
            if isinstance(fn.get(key), str):
                parts.append(str(fn[key])[:4])
                break
    parts.append(f"s{seed}")
    return "-".join(parts)


# --------------------------------------------------------------------------------------------------
# Tracker
# --------------------------------------------------------------------------------------------------


def _clean_params(params: Mapping[str, Any]) -> dict[str, str]:
    """Flatten nested dicts, stringify, redact and truncate param values."""
    flat: dict[str, ParamValue] = {}
    _flatten("", dict(params), flat)
    return {k: redact_url(str(v))[:_MAX_PARAM_LEN] for k, v in flat.items()}


def _clean_tags(tags: Mapping[str, Any]) -> dict[str, str]:
    out = {}
    for key, val in tags.items():
        if isinstance(val, bool):
            val = "true" if val else "false"
        out[str(key)] = redact_url(str(_fmt_value(val)))[:_MAX_TAG_LEN]
    return out


def _numeric(params: Mapping[str, Any]) -> dict[str, float]:
    """Numeric (not bool) hyperparameters, to be logged as metrics too."""
    return {
        k: float(v)
        for k, v in params.items()
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(float(v))
    }


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
            from mlflow import MlflowClient

            self._client = MlflowClient(tracking_uri=self.tracking_uri)
        return self._client

    # ---- experiment / parent -------------------------------------------------------------------

    @property
    def experiment_id(self) -> str:
        """Id of the study's experiment (get-or-create; restores a deleted one)."""
        if self._experiment_id is None:
            self._experiment_id = _retry(self._get_or_create_experiment, what="experiment")
        return self._experiment_id

    def _get_or_create_experiment(self) -> str:
        from mlflow.exceptions import MlflowException

        exp = self.client.get_experiment_by_name(self.experiment_name)
        if exp is None:
            try:
                return self.client.create_experiment(
                    self.experiment_name,
                    artifact_location=default_artifact_location(self.tracking_uri, self.study_name),
                    tags={"fs.study_name": self.study_name},
                )
            except MlflowException:
                # another worker created it between our lookup and create
                exp = self.client.get_experiment_by_name(self.experiment_name)
                if exp is None:
                    raise
        if exp.lifecycle_stage == "deleted":
            self.client.restore_experiment(exp.experiment_id)
        return exp.experiment_id

    def _search(self, filter_string: str, *, order_by: list[str] | None = None) -> list[Run]:
        """All active runs of the experiment matching ``filter_string`` (follows page tokens)."""
        runs: list[Run] = []
        token: str | None = None
        while True:
            page = _retry(
                lambda tok=token: self.client.search_runs(
                    [self.experiment_id],
                    filter_string=filter_string,
                    max_results=1000,
                    order_by=order_by,
                    page_token=tok,
                ),
                what="search_runs",
            )
            runs.extend(page)
            token = page.token
            if not token:
                return runs

    def _find_parents(self) -> list[Run]:
        runs = self._search(f"tags.`{TAG_ROLE}` = 'parent'")
        return sorted(runs, key=lambda r: (r.info.start_time or 0, r.info.run_id))

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
                _retry(
                    lambda: self.client.update_run(self._parent_id, status="RUNNING"), what="update parent"
                )
            else:
                created = _retry(
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
                    log.info(
                        "parent run race: keeping %s, deleting duplicate %s", winner, created.info.run_id
                    )
                    _retry(lambda: self.client.delete_run(created.info.run_id), what="delete duplicate")
                self._parent_id = winner
        run_id = self._parent_id
        self._log_params_once(run_id, _clean_params(params))
        self.set_tags(run_id, dict(tags))
        self._log_spec(run_id, spec, spec_path)
        return run_id

    def _log_spec(
        self, run_id: str, spec: Mapping[str, Any], spec_path: str | os.PathLike[str] | None
    ) -> None:
        with tempfile.TemporaryDirectory(prefix="fs-spec-") as tmp:
            files = []
            js = Path(tmp) / "spec.json"
            js.write_text(redact_url(json.dumps(spec, indent=2, sort_keys=True, default=str)) + "\n")
            files.append(js)
            if spec_path is not None and Path(spec_path).is_file():
                src = Path(spec_path)
                name = src.name if src.suffix == ".json" and src.name != "spec.json" else f"spec{src.suffix}"
                if name != "spec.json":
                    dst = Path(tmp) / name
                    dst.write_text(redact_url(src.read_text(errors="replace")))
                    files.append(dst)
            for path in files:
                self.log_artifact(run_id, path)

    def finish_parent(self, *, status: str = "FINISHED", tags: Mapping[str, Any] | None = None) -> None:
        """Terminate the parent run at the end of the study (a resumed study re-opens it).

        Args:
            status: ``FINISHED`` | ``FAILED`` | ``KILLED``.
            tags: final study-level tags (e.g. number of trials, best values).
        """
        if self._parent_id is None:
            parents = self._find_parents()
            if not parents:
                return
            self._parent_id = parents[0].info.run_id
        if tags:
            self.set_tags(self._parent_id, dict(tags))
        _retry(lambda: self.client.set_terminated(self._parent_id, status=status), what="end parent")

    # ---- trials --------------------------------------------------------------------------------

    def _require_parent(self) -> str:
        if self._parent_id is None:
            parents = self._find_parents()
            if not parents:
                raise RuntimeError("StudyTracker: call parent_run_id() before logging trials")
            self._parent_id = parents[0].info.run_id
        return self._parent_id

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
        all_tags = {**_clean_tags(tags), **own}
        flat: dict[str, ParamValue] = {}
        _flatten("", dict(params), flat)
        existing = self.find_trial_run(trial_number)
        if existing is None:
            run = _retry(
                lambda: self.client.create_run(
                    self.experiment_id, tags=all_tags, run_name=run_name[:250] or None
                ),
                what="create trial run",
            )
            run_id = run.info.run_id
        else:
            run_id = existing
            _retry(lambda: self.client.update_run(run_id, status="RUNNING"), what="reopen trial run")
            self.set_tags(run_id, all_tags)
        self._log_params_once(run_id, _clean_params(flat))
        numeric = _numeric(flat)
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
        all_tags = {**_clean_tags(tags), TAG_PARENT: parent, TAG_ROLE: "extra"}
        run = _retry(
            lambda: self.client.create_run(
                self.experiment_id, tags=all_tags, run_name=run_name[:250] or None
            ),
            what="create extra run",
        )
        flat: dict[str, ParamValue] = {}
        _flatten("", dict(params), flat)
        self._log_params_once(run.info.run_id, _clean_params(flat))
        return run.info.run_id

    def _log_params_once(self, run_id: str, params: dict[str, str]) -> None:
        """Log params not yet on the run; record keys whose existing value differs."""
        if not params:
            return
        from mlflow.entities import Param

        current = _retry(lambda: self.client.get_run(run_id), what="get_run").data.params
        new = {k: v for k, v in params.items() if k not in current}
        conflicts = sorted(k for k, v in params.items() if k in current and current[k] != v)
        items = [Param(k, v) for k, v in new.items()]
        for i in range(0, len(items), _BATCH_PARAMS):
            chunk = items[i : i + _BATCH_PARAMS]
            _retry(lambda c=chunk: self.client.log_batch(run_id, params=c), what="log params")
        if conflicts:
            log.warning("run %s: params already logged with other values: %s", run_id, ", ".join(conflicts))
            self.set_tags(run_id, {"fs.param_conflicts": ",".join(conflicts)})

    def log_metrics(self, run_id: str, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Log metrics in batches (NaN / inf are kept: MLflow stores them and they mark divergence).

        Args:
            run_id: run to log to.
            metrics: name → value; non-numeric values are skipped.
            step: training step (``None`` → 0).
        """
        from mlflow.entities import Metric

        ts = int(time.time() * 1000)
        items = [
            Metric(str(k), float(v), ts, int(step or 0))
            for k, v in metrics.items()
            if (isinstance(v, int | float) and not isinstance(v, bool)) or _is_np_number(v)
        ]
        for i in range(0, len(items), _BATCH_METRICS):
            chunk = items[i : i + _BATCH_METRICS]
            _retry(lambda c=chunk: self.client.log_batch(run_id, metrics=c), what="log metrics")

    def log_artifact(
        self, run_id: str, local_path: str | os.PathLike[str], artifact_path: str | None = None
    ) -> None:
        """Upload a file or directory to the run's artifacts.

        Args:
            run_id: target run.
            local_path: file or directory.
            artifact_path: optional sub-folder inside the run's artifacts.
        """
        path = os.fspath(local_path)
        if os.path.isdir(path):
            _retry(lambda: self.client.log_artifacts(run_id, path, artifact_path), what="log artifacts")
        else:
            _retry(lambda: self.client.log_artifact(run_id, path, artifact_path), what="log artifact")

    def set_tags(self, run_id: str, tags: Mapping[str, Any]) -> None:
        """Set several tags in one call (values stringified and redacted).

        Args:
            run_id: target run.
            tags: tag name → value (bools become ``true``/``false``, lists ``2-2-6-2``).
        """
        if not tags:
            return
        from mlflow.entities import RunTag

        items = [RunTag(k, v) for k, v in _clean_tags(tags).items()]
        for i in range(0, len(items), _BATCH_PARAMS):
            chunk = items[i : i + _BATCH_PARAMS]
            _retry(lambda c=chunk: self.client.log_batch(run_id, tags=c), what="set tags")

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
            _retry(lambda: self.client.set_terminated(run_id, status=status), what="end trial run")

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


def _is_np_number(value: Any) -> bool:
    """numpy scalars without importing numpy."""
    return type(value).__module__ == "numpy" and hasattr(value, "dtype") and value.dtype.kind in "iuf"
