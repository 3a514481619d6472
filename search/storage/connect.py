"""Optuna storage: URL → storage object, study creation/loading, version pinning, stale-trial recovery.

Embedded default: Optuna's journal file (`mlruns/optuna.journal`), safe for several processes on one
machine (SQLite is not). Scale-out: any SQLAlchemy URL (`postgresql://…`) as `RDBStorage` with heartbeats,
so a trial whose worker died is failed and retried once by a live worker; its calls are retried through a
database outage (`search.storage.faults.ResilientStorage`). Read-only commands open storage with `read_only=True`,
which never creates a file.
"""

from __future__ import annotations

import importlib.metadata as md
import importlib.util
import os
import random
import socket
import time
import warnings
from pathlib import Path
from typing import Any

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import JournalStorage, RDBStorage, _CachedStorage
from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock
from optuna.trial import TrialState

from search.spec.parse import parse_spec
from search.storage.faults import ResilientStorage
from search.tracking.params import redact_url

__all__ = [
    "DEFAULT_STORAGE",
    "StorageError",
    "make_storage",
    "library_versions",
    "check_versions",
    "recover_stale_trials",
    "worker_id",
    "pid_alive",
    "load_stored_study",
    "HEARTBEAT_INTERVAL_S",
    "GRACE_PERIOD_S",
]

DEFAULT_STORAGE = "journal:mlruns/optuna.journal"
HEARTBEAT_INTERVAL_S = int(os.environ.get("FOCALNET_SEARCH_HEARTBEAT_S", "10"))
GRACE_PERIOD_S = int(os.environ.get("FOCALNET_SEARCH_GRACE_S", str(3 * HEARTBEAT_INTERVAL_S)))


class StorageError(ValueError):
    """Bad storage URL or an incompatible study in storage (CLI exit code 2)."""


class NoStorage(StorageError):
    """A read-only command found no storage file at the URL (nothing was created)."""


def make_storage(url: str, *, heartbeat: bool = True, read_only: bool = False) -> Any:
    """Build an Optuna storage from a URL.

    Args:
        url: "" or "journal:PATH" (journal file, default), or an SQLAlchemy URL such as
            "postgresql://user:pw@host/db" or "sqlite:///file.db".
        heartbeat: for RDB storages, enable Optuna's heartbeat and retry-once of stale trials.
        read_only: for `list`/`report`/…: raise :class:`NoStorage` instead of creating a missing
            journal or SQLite file.
    """
    url = url or DEFAULT_STORAGE
    if url.startswith("journal:"):
        path = Path(url.removeprefix("journal:"))
        if not path.name:
            raise StorageError(f"storage: journal URL needs a file path, got {url!r}")
        if read_only and not path.is_file():
            raise NoStorage(f"storage: no journal file {path}")
        path.parent.mkdir(parents=True, exist_ok=True)
        # The open-lock works on every filesystem (NFS included), unlike the symlink lock's assumptions.
        return JournalStorage(JournalFileBackend(str(path), lock_obj=JournalFileOpenLock(str(path))))
    if "://" not in url:
        raise StorageError(
            f"storage: unsupported URL {url!r}; allowed: journal:PATH, postgresql://…, sqlite:///PATH"
        )
    if read_only and url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).is_file():
        raise NoStorage(f"storage: no SQLite file {url.removeprefix('sqlite:///')}")
    if url.startswith("postgresql://") and not _importable("psycopg") and _importable("psycopg2"):
        url = "postgresql+psycopg2://" + url.removeprefix(
            "postgresql://"
        )  # SQLAlchemy 2.1 defaults to psycopg 3
    kwargs: dict[str, Any] = {}
    try:
        with (
            warnings.catch_warnings()
        ):  # heartbeat API is "experimental"; the warnings would break one-line errors
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            warnings.simplefilter("ignore", FutureWarning)
            if heartbeat:
                kwargs = {
                    "heartbeat_interval": HEARTBEAT_INTERVAL_S,
                    "grace_period": GRACE_PERIOD_S,
                    **_retry_callback_kwargs(),
                }
            engine_kwargs = {"pool_pre_ping": True} if url.startswith("postgresql") else {}
            for attempt in range(5):
                try:
                    rdb = RDBStorage(url, engine_kwargs=engine_kwargs, **kwargs)
                    return ResilientStorage(_CachedStorage(rdb), rdb=rdb)
                except (
                    Exception
                ) as e:  # workers starting together on an empty database race to create the schema
                    if attempt == 4 or not any(m in str(e) for m in ("duplicate key", "already exists")):
                        raise
                    time.sleep(0.2 + random.random())
    except (optuna.exceptions.StorageInternalError, ImportError, Exception) as e:  # noqa: BLE001
        raise StorageError(f"storage: cannot open {redact_url(url)}: {str(e).splitlines()[0]}") from None


def _importable(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def _retry_callback_kwargs() -> dict[str, Any]:
    """Retry a heartbeat-stale trial once (Optuna >= 4.9 renamed the callback and its RDBStorage argument)."""
    if hasattr(optuna.storages, "RetryHeartbeatStaleTrialCallback"):
        return {
            "heartbeat_stale_trial_callback": optuna.storages.RetryHeartbeatStaleTrialCallback(
                max_retry=1, inherit_intermediate_values=False
            )
        }
    return {
        "failed_trial_callback": optuna.storages.RetryFailedTrialCallback(
            max_retry=1, inherit_intermediate_values=False
        )
    }


def library_versions() -> dict[str, str]:
    """Versions that must match across the workers of one study."""
    import torch  # start-up cost: search.cli imports this module before it sets the OpenMP policy

    try:
        project = md.version("focalnet-search")
    except md.PackageNotFoundError:
        project = "0+unknown"
    return {"optuna": optuna.__version__, "torch": torch.__version__, "focalnet-search": project}


def check_versions(study: Any) -> None:
    """Refuse to work on a study created with different library versions (mixed numbers are not comparable)."""
    stored = study.user_attrs.get("versions")
    if not stored:
        return
    mine = library_versions()
    for name in sorted(stored):
        if stored[name] != mine.get(name):
            raise StorageError(
                f"versions: study {study.study_name!r} was created with {name}=={stored[name]}, "
                f"this worker has {name}=={mine.get(name)}; use identical versions"
            )


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def pid_alive(pid: int) -> bool:
    """True while process `pid` on this host runs (a zombie is dead)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a killed worker its parent has not reaped yet is a zombie: dead
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def recover_stale_trials(study: Any) -> list[int]:
    """Fail RUNNING trials whose worker process on this host is gone, and enqueue one retry each.

    Journal storage has no heartbeat, so a worker records `host:pid` on each trial and the next start on
    that host detects dead owners. (RDB storages use Optuna's heartbeat instead.) Returns the failed
    trial numbers.
    """
    host = socket.gethostname()
    failed = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        owner = t.user_attrs.get("worker", "")
        h, _, pid = owner.rpartition(":")
        if h != host or not pid.isdigit() or pid_alive(int(pid)):
            continue
        # The reason goes first: a finished trial's attrs cannot change. A concurrent recoverer (or the
        # trial finishing after all) makes one of these raise: then the trial is not ours to retry.
        try:
            study._storage.set_trial_user_attr(t._trial_id, "fail_reason", f"worker {owner} died (stale)")
            ok = study._storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL)
        except UpdateFinishedTrialError:
            continue
        if ok:
            failed.append(t.number)
            if t.user_attrs.get("retry_of") is None:  # retry once, like Optuna's RetryFailedTrialCallback
                keys = t.user_attrs.get("fixed_keys") or (
                    "role",
                    "name",
                    "fixed_overrides",
                    "cell",
                    "seed",
                    "verifies",
                )
                attrs = {k: t.user_attrs[k] for k in (*keys, "fixed_keys", "attempt") if k in t.user_attrs}
                study.enqueue_trial(t.params, user_attrs={**attrs, "retry_of": t.number})
    return failed


def load_stored_study(name: str, storage: str | None) -> tuple[Any, Any]:
    """Load a study by name from storage; its spec comes from the study itself (no file needed)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = storage or DEFAULT_STORAGE
    missing = f"study: no study named {name!r} in {redact_url(url)}; see `python -m search list`"
    try:
        study = optuna.load_study(study_name=name, storage=make_storage(url, heartbeat=False, read_only=True))
    except NoStorage:
        raise StorageError(missing) from None
    except KeyError:
        raise StorageError(missing) from None
    raw = study.user_attrs.get("spec_raw")
    spec = (
        parse_spec(raw, source=study.user_attrs.get("spec_source", f"study {name}"), check=False)
        if raw
        else None
    )
    if spec is None:
        raise StorageError(f"study: {name!r} has no stored spec (not created by this harness)")
    return study, spec
