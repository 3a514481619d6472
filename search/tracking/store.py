"""Where and how the search harness writes to MLflow: store URIs, experiment names, retried batched writes.

The first half says where things go: the default SQLite store, its artifact folder, the experiment of a
study, and :func:`ensure_local_store` that migrates a SQLite store once before workers start. The
second half writes through an explicit ``MlflowClient`` and run id (never the fluent global state):
every call is retried on transient errors ("database is locked", a refused or dropped connection, a
server error) and on integrity errors (two workers inserting the same row: the retry re-reads first), and
params, metrics and tags go in batches within MLflow's per-call limits. ``mlflow`` is imported lazily, inside the functions that write: it takes seconds to
import, and a study run with tracking off never needs it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import re
import time
import uuid
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
    "create_run",
    "error_reason",
    "experiment_name",
    "get_or_create_experiment",
    "http_client_defaults",
    "is_retryable",
    "is_unreachable",
    "log_artifact",
    "log_metrics",
    "log_params_once",
    "now_ms",
    "retry",
    "search_runs",
    "set_tags",
    "spec_files",
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
    in the parent process. No-op for other URIs (a server migrates its own store). The migration's
    INFO log lines are hidden (warnings and errors are not).

    Args:
        uri: the tracking URI.
    """
    db = _sqlite_path(uri)
    if db is None:
        return  # a server migrates its own store; one that is down now is waited for by the outbox
    db.expanduser().parent.mkdir(parents=True, exist_ok=True)
    from mlflow import (
        MlflowClient,  # lazy (module docstring); imported first: importing mlflow configures its loggers
    )

    with _quiet_migration_logs():
        retry(lambda: MlflowClient(tracking_uri=uri).search_experiments(max_results=1), what="init store")


def experiment_name(study_name: str) -> str:
    """MLflow experiment name of a study: ``focalnet-search/<study_name>``."""
    return EXPERIMENT_PREFIX + study_name


def get_or_create_experiment(
    client: MlflowClient, name: str, *, artifact_location: str | None, tags: Mapping[str, str]
) -> str:
    """Id of the experiment ``name``: created when missing (racing workers are fine), restored when deleted."""
    from mlflow.exceptions import MlflowException  # lazy: mlflow's import takes seconds (module docstring)

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

# The server or the connection to it is gone for now: wait for it, however long (a restart, a redeploy).
# urllib3's messages name the status ("too many 503 error responses"); bare codes would match port numbers.
_UNREACHABLE = (
    "connection refused",
    "connection reset",
    "connection aborted",
    "remote end closed",
    "remotedisconnected",
    "failed to establish a new connection",
    "name or service not known",
    "temporary failure in name resolution",
    "timed out",
    "timeout exception",
    "temporarily unavailable",
    "too many 502 error",
    "too many 503 error",
    "too many 504 error",
    "too many 408 error",
    "too many 429 error",
    "too many requests",
)
# The server answered, but the write may succeed when tried again: a busy SQLite backend, a deadlock, a
# server error, or two workers inserting the same row at once (the retry re-reads and writes what is left).
_RETRY_IN_PLACE = (
    "database is locked",
    "database table is locked",
    "database schema has changed",
    "deadlock",
    "could not serialize",
    "too many 500 error",
    "internal server error",
    "integrityerror",
    "unique constraint failed",
    "duplicate key",
    "/gkpj",  # SQLAlchemy's IntegrityError code, in the message of every version
)

#: Seconds one call keeps retrying before its caller is told (the outbox then queues it).
RETRY_BUDGET_S = float(os.environ.get("FOCALNET_SEARCH_TRACKING_RETRY_S", "10"))


def is_unreachable(exc: BaseException) -> bool:
    """True when the tracking server (or its database connection) cannot be reached right now."""
    text = str(exc).lower()
    return any(t in text for t in _UNREACHABLE) or isinstance(exc, ConnectionError | TimeoutError)


def error_reason(exc: BaseException) -> str:
    """A short, redacted reason for a tracking error: the known cause if one is named, else its first line."""
    text = str(exc)
    lower = text.lower()
    known = next((t for t in (*_UNREACHABLE, *_RETRY_IN_PLACE) if t in lower), None)
    if known is not None:
        return f"{type(exc).__name__}: {known}"
    first = text.strip().splitlines()[0] if text.strip() else ""
    return redact_url(f"{type(exc).__name__}: {first[:200]}")


def is_retryable(exc: BaseException) -> bool:
    """True for errors a later identical call may not hit: unreachable, busy, server error, duplicate row."""
    text = str(exc).lower()
    return is_unreachable(exc) or any(t in text for t in _RETRY_IN_PLACE)


def retry(
    fn: Callable[[], T],
    *,
    what: str,
    attempts: int = 8,
    base_s: float = 0.05,
    budget_s: float | None = None,
) -> T:
    """Call ``fn``, retrying on :func:`is_retryable` errors with jittered exponential backoff.

    Args:
        fn: the call; when it reads before it writes, a retry re-reads (integrity errors resolve).
        what: names the call in debug logs.
        attempts: at most this many calls.
        base_s: first backoff; doubled per attempt, capped at 2 s.
        budget_s: stop retrying after this many seconds (default :data:`RETRY_BUDGET_S`), so an
            unreachable server holds a caller up briefly, not for every attempt's HTTP timeout.
    """
    deadline = time.monotonic() + (RETRY_BUDGET_S if budget_s is None else budget_s)
    for attempt in range(attempts):
        try:
            return fn()
        except Exception as exc:
            delay = min(2.0, base_s * 2**attempt) * (0.5 + random.random())
            if attempt == attempts - 1 or not is_retryable(exc) or time.monotonic() + delay > deadline:
                raise
            log.debug("mlflow %s: transient error (%s), retry in %.2fs", what, redact_url(str(exc)), delay)
            time.sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover


#: MLflow's own HTTP retries (7, backoff factor 2: minutes per call against a stopped server) are cut to
#: seconds for this harness's processes; :func:`retry` and the outbox decide what happens next.
_HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
}


def http_client_defaults(tracking_uri: str) -> None:
    """For an ``http(s)`` tracking URI, set MLflow's HTTP retry settings the user has not set.

    MLflow reads them per request from the environment, so they are set there (``setdefault``: a
    value the user exported wins).

    Args:
        tracking_uri: the tracking URI; other schemes make no HTTP requests and change nothing.
    """
    if tracking_uri.startswith(("http://", "https://")):
        for key, value in _HTTP_DEFAULTS.items():
            os.environ.setdefault(key, value)


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
    """Log params not yet on the run; record keys whose existing value differs in ``fs.param_conflicts``.

    Re-logging a param with the value it has is success. Two workers logging the same params at once
    collide on the database's unique key (an integrity error): the retry re-reads the run and logs
    only what is still missing.
    """
    if not params:
        return
    from mlflow.entities import Param  # lazy: mlflow's import takes seconds (module docstring)

    def write() -> list[str]:
        current = client.get_run(run_id).data.params
        items = [Param(k, v) for k, v in params.items() if k not in current]
        for i in range(0, len(items), _BATCH_PARAMS):
            client.log_batch(run_id, params=items[i : i + _BATCH_PARAMS])
        return sorted(k for k, v in params.items() if k in current and current[k] != v)

    conflicts = retry(write, what="log params")
    if conflicts:
        log.warning("run %s: params already logged with other values: %s", run_id, ", ".join(conflicts))
        set_tags(client, run_id, {"fs.param_conflicts": ",".join(conflicts)})


def now_ms() -> int:
    """The current time in MLflow's unit (milliseconds since the epoch)."""
    return int(time.time() * 1000)


def log_metrics(
    client: MlflowClient,
    run_id: str,
    metrics: Mapping[str, float],
    step: int | None = None,
    *,
    timestamp_ms: int | None = None,
) -> None:
    """Log numeric metrics in batches at ``step`` (``None`` → 0); non-numeric values are skipped.

    Args:
        timestamp_ms: when they were measured (default: now). A replay sends the same timestamp, so a
            batch the server had already stored is recognised as a duplicate, not stored twice.
    """
    from mlflow.entities import Metric  # lazy: mlflow's import takes seconds (module docstring)

    ts = now_ms() if timestamp_ms is None else timestamp_ms
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
    from mlflow.entities import RunTag  # lazy: mlflow's import takes seconds (module docstring)

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


def spec_files(spec: Mapping[str, Any], spec_path: str | os.PathLike[str] | None, tmp: Path) -> list[Path]:
    """Write ``spec.json`` (the spec dict) and a copy of the spec file (e.g. ``spec.toml``), both redacted.

    Args:
        spec: the study spec as a dict.
        spec_path: the original spec file, or None.
        tmp: the folder to write them to.

    Returns:
        The files written, to be logged as artifacts.
    """
    files = []
    js = tmp / "spec.json"
    js.write_text(redact_url(json.dumps(spec, indent=2, sort_keys=True, default=str)) + "\n")
    files.append(js)
    if spec_path is not None and Path(spec_path).is_file():
        src = Path(spec_path)
        name = src.name if src.suffix == ".json" and src.name != "spec.json" else f"spec{src.suffix}"
        if name != "spec.json":
            dst = tmp / name
            dst.write_text(redact_url(src.read_text(errors="replace")))
            files.append(dst)
    return files


def create_run(
    client: MlflowClient, experiment_id: str, *, tags: Mapping[str, str], run_name: str | None
) -> Run:
    """Create a run exactly once, even when a retry follows a create whose answer was lost.

    A server restarting mid-request may have committed the run and dropped the reply. The run carries a
    one-off ``fs.create_token`` tag; before each retry the token is looked up, so the retry finds that
    run instead of creating a second one.

    Args:
        client: the MLflow client.
        experiment_id: the experiment.
        tags: the run's tags.
        run_name: its name (truncated to 250 characters), or None.
    """
    token = uuid.uuid4().hex
    tried = False

    def attempt() -> Run:
        nonlocal tried
        if tried:
            found = client.search_runs([experiment_id], filter_string=f"tags.`fs.create_token` = '{token}'")
            if found:
                return found[0]
        tried = True
        return client.create_run(
            experiment_id, tags={**tags, "fs.create_token": token}, run_name=(run_name or "")[:250] or None
        )

    return retry(attempt, what="create run")
