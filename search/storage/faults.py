"""Storage faults: retried storage calls, a heartbeat that survives outages, a study lock, one trial by ask/tell.

A database outage (a restart, a failover, a dropped connection) must not crash a worker or lose a trial:

- :class:`ResilientStorage` wraps an ``RDBStorage``: every call is retried with jittered backoff while the
  error is a connection error, for up to ``FOCALNET_SEARCH_OUTAGE_S`` seconds (default 60). One line is
  printed when the storage becomes unreachable and one when it is back.
- :class:`TrialHeartbeat` records the running trial's heartbeat and, unlike Optuna's thread, never dies
  on an error: it keeps beating and resumes when the database is back.
- :func:`fail_stale_trials` fails trials whose heartbeat stopped, except right after this process saw an
  outage: then every worker's heartbeat stopped, so their trials get a grace period to beat again.
- :func:`run_trial` runs one trial with ``ask``/``tell`` (instead of ``study.optimize``, whose error paths
  crash on a storage error or a trial failed elsewhere). A trial failed by another worker while this one
  ran it (its heartbeat was lost) is reported in one line and given up: its retry runs elsewhere.
- :func:`study_lock` serialises short read-then-write sections (re-enqueueing fixed trials) across every
  worker of a study: a PostgreSQL advisory lock, or ``flock`` on the journal / SQLite file.
  :func:`compare_and_set_study_attr` is one such section: an atomic compare-and-set on a study system
  attr (the MLflow parent run every worker agrees on).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import random
import signal
import sys
import threading
import time
import traceback
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import BaseStorage
from optuna.storages._heartbeat import BaseHeartbeat, is_heartbeat_enabled
from optuna.trial import FrozenTrial, TrialState

from search.tracking.params import redact_url

__all__ = [
    "OUTAGE_S",
    "ResilientStorage",
    "StorageOutage",
    "TrialHeartbeat",
    "TrialOutcome",
    "compare_and_set_study_attr",
    "fail_stale_trials",
    "is_transient",
    "run_trial",
    "study_lock",
]

OUTAGE_S = float(os.environ.get("FOCALNET_SEARCH_OUTAGE_S", "60"))
_BACKOFF_MAX_S = 5.0


class StorageOutage(RuntimeError):
    """The storage stayed unreachable for longer than the outage window (the worker stops)."""


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def is_transient(exc: BaseException) -> bool:
    """True for a lost or refused database connection (worth retrying), anywhere in the cause chain."""
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        name, module = type(e).__name__, type(e).__module__
        if module.startswith(("sqlalchemy", "psycopg")) and name in (
            "OperationalError",
            "InterfaceError",
            "DisconnectionError",
            "TimeoutError",
        ):
            return True
        if getattr(e, "connection_invalidated", False):
            return True
        e = e.__cause__ or e.__context__
    return False


def _first_line(exc: BaseException) -> str:
    text = str(exc.__cause__ or exc).strip().splitlines()
    return redact_url(f"{type(exc.__cause__ or exc).__name__}: {text[0] if text else ''}")


class ResilientStorage(BaseStorage, BaseHeartbeat):
    """An Optuna storage whose calls survive a database outage of up to ``outage_s`` seconds.

    Args:
        backend: the storage to wrap (Optuna's ``_CachedStorage(RDBStorage(...))``).
        rdb: the ``RDBStorage`` itself (engine, grace period).
        outage_s: how long one call keeps retrying before :class:`StorageOutage`.
    """

    def __init__(self, backend: Any, *, rdb: Any, outage_s: float = OUTAGE_S) -> None:
        self._backend = backend
        self.rdb = rdb
        self.outage_s = outage_s
        self._state_lock = threading.Lock()
        self._down_since: float | None = None
        self._recovered_at: float | None = None

    # ---- outage bookkeeping (shared by the main thread and the heartbeat thread) ----------------

    def _note_down(self, exc: BaseException) -> None:
        with self._state_lock:
            if self._down_since is not None:
                return
            self._down_since = time.monotonic()
        _say(f"storage: unreachable ({_first_line(exc)}); retrying for up to {self.outage_s:.0f}s")

    def _note_up(self) -> None:
        with self._state_lock:
            if self._down_since is None:
                return
            down, self._down_since = time.monotonic() - self._down_since, None
            self._recovered_at = time.monotonic()
        _say(f"storage: reachable again after {down:.1f}s")

    def recently_recovered(self) -> bool:
        """Down now, or back for less than grace + 2 heartbeats (others' heartbeats may not have resumed)."""
        interval = self.rdb.heartbeat_interval or 0
        window = (self.rdb.grace_period or 2 * interval) + 2 * interval
        with self._state_lock:
            if self._down_since is not None:
                return True
            return self._recovered_at is not None and time.monotonic() - self._recovered_at < window

    def _call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        fn = getattr(self._backend, name)
        deadline: float | None = None
        delay = 0.25
        while True:
            try:
                result = fn(*args, **kwargs)
            except UpdateFinishedTrialError:
                # A retried final write may have been committed before the connection dropped.
                if (
                    deadline is not None
                    and name == "set_trial_state_values"
                    and self._already_set(*args, **kwargs)
                ):
                    self._note_up()
                    return True
                raise
            except Exception as exc:
                if not is_transient(exc):
                    raise
                now = time.monotonic()
                if deadline is None:
                    deadline = now + self.outage_s
                self._note_down(exc)
                if now >= deadline:
                    raise StorageOutage(
                        f"storage: unreachable for {self.outage_s:.0f}s ({_first_line(exc)}); "
                        "set FOCALNET_SEARCH_OUTAGE_S for a longer window"
                    ) from None
                time.sleep(min(delay * (0.5 + random.random()), max(0.0, deadline - now)))
                delay = min(_BACKOFF_MAX_S, delay * 2)
                continue
            if deadline is not None:
                self._note_up()
            return result

    def _already_set(self, trial_id: int, state: TrialState, values: Any = None, **_: Any) -> bool:
        stored = self._backend.get_trial(trial_id)
        return stored.state == state and (values is None or list(stored.values or []) == list(values))

    def try_heartbeat(self, trial_id: int) -> bool:
        """One heartbeat attempt, no retry loop (the heartbeat thread must keep its rhythm)."""
        try:
            self._backend.record_heartbeat(trial_id)
        except Exception as exc:
            if not is_transient(exc):
                raise
            self._note_down(exc)
            return False
        self._note_up()
        return True

    def __getattr__(self, name: str) -> Any:  # anything else (engine, url, …) is the backend's
        if name.startswith("__") or name in ("_backend", "rdb"):
            raise AttributeError(name)
        return getattr(self._backend, name)


def _delegate(name: str) -> Callable[..., Any]:
    def method(self: ResilientStorage, *args: Any, **kwargs: Any) -> Any:
        return self._call(name, *args, **kwargs)

    method.__name__ = name
    return method


_DELEGATED = sorted(
    {n for n, f in vars(BaseStorage).items() if callable(f) and not n.startswith("_")}
    | {
        "record_heartbeat",
        "_get_stale_trial_ids",
        "get_heartbeat_interval",
        "get_heartbeat_stale_trial_callback",
    }
)
for _name in _DELEGATED:
    setattr(ResilientStorage, _name, _delegate(_name))
ResilientStorage.__abstractmethods__ = frozenset()


class TrialHeartbeat:
    """Heartbeat of one running trial in a background thread that outlives storage errors.

    Args:
        storage: the study's storage; a no-op unless it has heartbeats enabled.
        trial_id: the trial's storage id.
    """

    def __init__(self, storage: Any, trial_id: int) -> None:
        self._storage, self._trial_id = storage, trial_id
        self._interval = storage.get_heartbeat_interval() if is_heartbeat_enabled(storage) else None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._warned = False

    def _beat(self) -> None:
        try:
            if isinstance(self._storage, ResilientStorage):
                self._storage.try_heartbeat(self._trial_id)
            else:
                self._storage.record_heartbeat(self._trial_id)
        except Exception as exc:  # never let the heartbeat die: a dead heartbeat gets a live trial failed
            if not self._warned:
                _say(f"heartbeat of trial id {self._trial_id}: {_first_line(exc)}; will keep trying")
                self._warned = True

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            self._beat()

    def __enter__(self) -> TrialHeartbeat:
        if self._interval:
            self._beat()
            self._thread = threading.Thread(target=self._loop, name="fs-heartbeat", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


def fail_stale_trials(study: optuna.Study) -> None:
    """Optuna's stale-trial check (RDB heartbeat), skipped while this process has just seen an outage."""
    storage = study._storage
    if not is_heartbeat_enabled(storage):
        return
    if isinstance(storage, ResilientStorage) and storage.recently_recovered():
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


class TrialOutcome:
    """What :func:`run_trial` did: the stored trial, and whether another worker had failed it meanwhile."""

    def __init__(self, frozen: FrozenTrial, *, lost: bool) -> None:
        self.frozen, self.lost = frozen, lost


@contextlib.contextmanager
def _ctrl_c_held() -> Iterator[list[int]]:
    """Hold Ctrl-C (SIGINT) for the block; the caller re-delivers it with ``signal.raise_signal``.

    ``study.ask`` stores the RUNNING trial before it returns: a Ctrl-C inside it would leave that trial
    RUNNING, owned by no worker, and a resumed study would never run it again. Main thread only (where
    Python runs signal handlers); a Ctrl-C that arrives while the block raises is re-delivered here.
    """
    pending: list[int] = []
    old = signal.getsignal(signal.SIGINT)
    if threading.current_thread() is not threading.main_thread() or old is None:
        yield pending
        return
    signal.signal(signal.SIGINT, lambda signum, frame: pending.append(signum))
    try:
        yield pending
    except BaseException:
        signal.signal(signal.SIGINT, old)
        if pending:
            signal.raise_signal(signal.SIGINT)
        raise
    finally:
        signal.signal(signal.SIGINT, old)


def run_trial(
    study: optuna.Study,
    func: Callable[[optuna.Trial], Any],
    *,
    quiet: tuple[type[BaseException], ...] = (),
) -> TrialOutcome:
    """Ask for a trial, run ``func`` under a heartbeat, tell the result; re-raise Ctrl-C after marking it.

    A failure of ``func`` marks the trial FAIL (the objective records why); its traceback is printed
    unless the exception is one of ``quiet`` (expected failures: divergence, a surplus trial).

    Args:
        study: the study (its storage should be a :class:`ResilientStorage` for RDB URLs).
        func: the objective, called with the trial.
        quiet: exception types whose traceback is not printed.
    """
    fail_stale_trials(study)
    values: Any = None
    state: TrialState | None = None
    interrupted: KeyboardInterrupt | None = None
    with warnings.catch_warnings(), _ctrl_c_held() as ctrl_c:
        warnings.simplefilter("ignore", UserWarning)  # "heartbeat is supposed to be used with optimize"
        trial = study.ask()
    try:
        if ctrl_c:  # a Ctrl-C held during ask: deliver it now that the trial can be marked
            signal.raise_signal(signal.SIGINT)
        with TrialHeartbeat(study._storage, trial._trial_id):
            try:
                values = func(trial)
            except optuna.TrialPruned:
                state = TrialState.PRUNED
            except UpdateFinishedTrialError:  # failed elsewhere; the stored state is the truth
                state = TrialState.FAIL
            except Exception as exc:
                state = TrialState.FAIL
                if not isinstance(exc, quiet):
                    _say(f"trial {trial.number} failed:\n{traceback.format_exc().rstrip()}")
    except KeyboardInterrupt as exc:  # Ctrl-C: the objective marked the trial; tell it below, then stop
        interrupted, state, values = exc, TrialState.FAIL, None
    stored = study._storage.get_trial(trial._trial_id)
    lost = stored.state != TrialState.RUNNING
    if not lost:
        if interrupted is not None and "fail_reason" not in stored.user_attrs:
            study._storage.set_trial_user_attr(trial._trial_id, "fail_reason", "interrupted (Ctrl-C)")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a NaN value becomes FAIL, reported by the summary line
            stored = study.tell(trial, values, state=state, skip_if_finished=True)
    if lost:
        _say(
            f"trial {trial.number}: failed by another worker while this one ran it (its heartbeat was lost, "
            "e.g. in a storage outage); its retry runs elsewhere, moving on"
        )
    if interrupted is not None:
        raise interrupted
    return TrialOutcome(stored, lost=lost)


# ----------------------------------------------------------------------------------------------------------
# A lock over every worker of one study


def _lock_key(name: str) -> int:
    return int.from_bytes(hashlib.sha256(f"focalnet-search:{name}".encode()).digest()[:8], "big", signed=True)


@contextlib.contextmanager
def _flock(path: str) -> Iterator[None]:
    with open(path, "rb") as f:  # the file exists (a journal / SQLite store); nothing new is created
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


@contextlib.contextmanager
def _pg_lock(engine: Any, key: int, outage_s: float) -> Iterator[None]:
    import sqlalchemy  # start-up cost (0.3 s): only PostgreSQL storages take this lock

    deadline = time.monotonic() + outage_s
    while True:
        try:
            conn = engine.connect()
            conn.execute(sqlalchemy.text("SELECT pg_advisory_lock(:k)"), {"k": key})
            break
        except Exception as exc:
            if not is_transient(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(1.0)
    try:
        yield
    finally:
        with contextlib.suppress(Exception):  # a dropped connection releases the lock by itself
            conn.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:k)"), {"k": key})
            conn.rollback()
        with contextlib.suppress(Exception):
            conn.close()


@contextlib.contextmanager
def study_lock(study: optuna.Study) -> Iterator[None]:
    """Hold a lock that every worker of this study (any host) takes for the same section."""
    storage = study._storage
    rdb = storage.rdb if isinstance(storage, ResilientStorage) else getattr(storage, "_backend", None)
    engine = getattr(rdb, "engine", None) or getattr(storage, "engine", None)
    path = getattr(getattr(storage, "_backend", None), "_file_path", None)  # JournalFileBackend
    if engine is not None and engine.dialect.name == "postgresql":
        outage = storage.outage_s if isinstance(storage, ResilientStorage) else OUTAGE_S
        with _pg_lock(engine, _lock_key(study.study_name), outage):
            yield
    elif engine is not None and engine.dialect.name == "sqlite" and engine.url.database:
        with _flock(engine.url.database):
            yield
    elif path is not None and os.path.exists(path):
        with _flock(path):
            yield
    else:  # in-memory storage: one process
        yield


def compare_and_set_study_attr(
    study: optuna.Study, key: str, expected: Any, new: Any, *, user: bool = False
) -> Any:
    """Set study system attr ``key`` to ``new`` if it holds ``expected`` (None: unset), atomically across workers.

    Args:
        study: the study.
        key: the system attr.
        expected: the value the caller read.
        new: the value to store.
        user: a study *user* attr instead (what the report and users read).

    Returns:
        The value the attr holds afterwards: ``new`` when this call won, else what another worker stored.
    """
    storage = study._storage
    get = storage.get_study_user_attrs if user else storage.get_study_system_attrs
    put = storage.set_study_user_attr if user else storage.set_study_system_attr
    with study_lock(study):
        current = get(study._study_id).get(key)
        if current != expected:
            return current
        put(study._study_id, key, new)
        return new
