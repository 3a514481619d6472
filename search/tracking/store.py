"""Where and how the search harness writes to MLflow: store URIs, experiment names, retried batched writes.

The first half says where things go: the default SQLite store, its artifact folder, the experiment of a
study, and :func:`ensure_local_store` that migrates a SQLite store once before workers start. The
second half writes through an explicit ``MlflowClient`` and run id (never the fluent global state):
every call is retried on "database is locked"-style transient errors, and params, metrics and tags go in
batches within MLflow's per-call limits. ``mlflow`` is imported lazily.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import re
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from search.tracking.params import clean_tags, is_np_number, redact_url

if TYPE_CHECKING:  # pragma: no cover - typing only
    from mlflow import MlflowClient
    from mlflow.entities import Run

__all__ = [
    "EXPERIMENT_PREFIX",
    "default_artifact_location",
    "default_tracking_uri",
    "ensure_local_store",
    "store_exists",
    "experiment_name",
    "get_or_create_experiment",
    "log_artifact",
    "log_metrics",
    "log_params_once",
    "log_spec",
    "retry",
    "search_runs",
    "set_tags",
]

log = logging.getLogger(__name__)

EXPERIMENT_PREFIX = "focalnet-search/"
_BATCH_PARAMS = 100  # log_batch accepts at most 100 params per call
_BATCH_METRICS = 1000

T = TypeVar("T")


# --------------------------------------------------------------------------------------------------
# Store locations and experiments
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


def store_exists(uri: str) -> bool:
    """False for a SQLite store whose file does not exist (read-mostly commands must not create one)."""
    db = _sqlite_path(uri)
    return db is None or db.expanduser().is_file()


# Loggers of MLflow's schema creation and alembic's migrations: their INFO lines ("Creating initial MLflow
# database tables...", "Context impl SQLiteImpl.") tell a user nothing on a study's first run.
_MIGRATION_LOGGERS = ("mlflow.store.db.utils", "mlflow.store.db_migrations", "alembic")


@contextlib.contextmanager
def _quiet_migration_logs() -> Iterator[None]:
    """Hide the migration loggers' INFO lines for the block; warnings and errors still show."""
    loggers = [logging.getLogger(name) for name in _MIGRATION_LOGGERS]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(max(lg.getEffectiveLevel(), logging.WARNING))
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def ensure_local_store(uri: str) -> None:
    """Create and migrate a SQLite store once, before worker processes start.

    Concurrent first-time schema migrations of the same SQLite file collide, so the runner calls this
    in the parent process. No-op apart from a connectivity check for non-SQLite URIs. The migration's
    INFO log lines are hidden (warnings and errors are not).

    Args:
        uri: the tracking URI.
    """
    db = _sqlite_path(uri)
    if db is not None:
        db.expanduser().parent.mkdir(parents=True, exist_ok=True)
    from mlflow import MlflowClient  # imported first: importing mlflow configures its loggers

    with _quiet_migration_logs():
        retry(lambda: MlflowClient(tracking_uri=uri).search_experiments(max_results=1), what="init store")


def experiment_name(study_name: str) -> str:
    """MLflow experiment name of a study: ``focalnet-search/<study_name>``."""
    return EXPERIMENT_PREFIX + study_name


def get_or_create_experiment(
    client: MlflowClient, name: str, *, artifact_location: str | None, tags: Mapping[str, str]
) -> str:
    """Id of the experiment ``name``: created when missing (racing workers are fine), restored when deleted."""
    from mlflow.exceptions import MlflowException

    exp = client.get_experiment_by_name(name)
    if exp is None:
        try:
            return client.create_experiment(name, artifact_location=artifact_location, tags=dict(tags))
        except MlflowException:
            # another worker created it between our lookup and create
            exp = client.get_experiment_by_name(name)
            if exp is None:
                raise
    if exp.lifecycle_stage == "deleted":
        client.restore_experiment(exp.experiment_id)
    return exp.experiment_id


# --------------------------------------------------------------------------------------------------
# Retry on transient errors
# --------------------------------------------------------------------------------------------------

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


def retry(fn: Callable[[], T], *, what: str, attempts: int = 8, base_s: float = 0.05) -> T:
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
# Reads and batched writes on one run
# --------------------------------------------------------------------------------------------------


def search_runs(
    client: MlflowClient, experiment_id: str, filter_string: str, *, order_by: list[str] | None = None
) -> list[Run]:
    """All active runs of the experiment matching ``filter_string`` (follows page tokens)."""
    runs: list[Run] = []
    token: str | None = None
    while True:
        page = retry(
            lambda tok=token: client.search_runs(
                [experiment_id],
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


def log_params_once(client: MlflowClient, run_id: str, params: dict[str, str]) -> None:
    """Log params not yet on the run; record keys whose existing value differs in ``fs.param_conflicts``."""
    if not params:
        return
    from mlflow.entities import Param

    current = retry(lambda: client.get_run(run_id), what="get_run").data.params
    new = {k: v for k, v in params.items() if k not in current}
    conflicts = sorted(k for k, v in params.items() if k in current and current[k] != v)
    items = [Param(k, v) for k, v in new.items()]
    for i in range(0, len(items), _BATCH_PARAMS):
        chunk = items[i : i + _BATCH_PARAMS]
        retry(lambda c=chunk: client.log_batch(run_id, params=c), what="log params")
    if conflicts:
        log.warning("run %s: params already logged with other values: %s", run_id, ", ".join(conflicts))
        set_tags(client, run_id, {"fs.param_conflicts": ",".join(conflicts)})


def log_metrics(
    client: MlflowClient, run_id: str, metrics: Mapping[str, float], step: int | None = None
) -> None:
    """Log numeric metrics in batches at ``step`` (``None`` → 0); non-numeric values are skipped."""
    from mlflow.entities import Metric

    ts = int(time.time() * 1000)
    items = [
        Metric(str(k), float(v), ts, int(step or 0))
        for k, v in metrics.items()
        if (isinstance(v, int | float) and not isinstance(v, bool)) or is_np_number(v)
    ]
    for i in range(0, len(items), _BATCH_METRICS):
        chunk = items[i : i + _BATCH_METRICS]
        retry(lambda c=chunk: client.log_batch(run_id, metrics=c), what="log metrics")


def set_tags(client: MlflowClient, run_id: str, tags: Mapping[str, Any]) -> None:
    """Set several tags in batches, values cleaned by :func:`search.tracking.params.clean_tags`."""
    if not tags:
        return
    from mlflow.entities import RunTag

    items = [RunTag(k, v) for k, v in clean_tags(tags).items()]
    for i in range(0, len(items), _BATCH_PARAMS):
        chunk = items[i : i + _BATCH_PARAMS]
        retry(lambda c=chunk: client.log_batch(run_id, tags=c), what="set tags")


def log_artifact(
    client: MlflowClient, run_id: str, local_path: str | os.PathLike[str], artifact_path: str | None = None
) -> None:
    """Upload a file or a directory to the run's artifacts (optionally under ``artifact_path``)."""
    path = os.fspath(local_path)
    if os.path.isdir(path):
        retry(lambda: client.log_artifacts(run_id, path, artifact_path), what="log artifacts")
    else:
        retry(lambda: client.log_artifact(run_id, path, artifact_path), what="log artifact")


def log_spec(
    client: MlflowClient,
    run_id: str,
    spec: Mapping[str, Any],
    spec_path: str | os.PathLike[str] | None,
) -> None:
    """Upload ``spec.json`` (the spec dict) and the original spec file (e.g. ``spec.toml``), both redacted."""
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
            log_artifact(client, run_id, path)
