"""MLflow writes that wait while the tracking server cannot take them, replayed in order when it can.

A tracking error must never stop a worker: the trial's result lives in the Optuna storage, MLflow is a
view of it. :class:`Outbox` runs each write at once while MLflow answers (retried briefly by
:func:`search.tracking.store.retry`). When a write still fails with a retryable error (server down or
restarting, database busy) it is queued with every write after it, one line is printed, and a
background thread replays the queue in order until it is empty; then one more line says so. A write
that fails for good (a bad value) is dropped with one line per kind of write.

A run created while queued has no id yet: :meth:`Outbox.create` returns a placeholder
(``pending-run-<n>``) that later writes use; :meth:`Outbox.resolve`, called inside each write, maps it
to the real id once the create has been replayed.
"""

from __future__ import annotations

import itertools
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from search.tracking.store import error_reason, is_retryable, is_unreachable

__all__ = ["PENDING_PREFIX", "WAIT_AT_EXIT_S", "Outbox", "Unresolved"]

PENDING_PREFIX = "pending-run-"
#: Seconds between two replay attempts while the server is unreachable.
RETRY_EVERY_S = 2.0
#: A queued write that keeps failing with a server (not connection) error is dropped after this many tries.
MAX_SERVER_ERRORS = 15
#: Seconds a leaving worker waits for MLflow to take its waiting writes before it drops them.
WAIT_AT_EXIT_S = float(os.environ.get("FOCALNET_SEARCH_TRACKING_WAIT_S", "60"))

Resolve = Callable[[str], str]


class Unresolved(LookupError):
    """A write refers to a run whose create was dropped: the write cannot be made."""


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass
class _Write:
    what: str
    fn: Callable[[Resolve], Any]
    placeholder: str | None = None
    on_done: Callable[[Any], None] | None = None
    on_queue: Callable[[], None] | None = None
    failures: int = 0


class Outbox:
    """Runs MLflow writes now, or queues them (in order) while the tracking server cannot take them.

    Args:
        say: where the one-line notices go (stderr).
        retry_every_s: pause between replay attempts while the server is unreachable.
    """

    def __init__(self, *, say: Callable[[str], None] = _say, retry_every_s: float = RETRY_EVERY_S) -> None:
        self._say = say
        self._retry_every_s = retry_every_s
        self._cond = threading.Condition()
        self._queue: deque[_Write] = deque()
        self._replaying = False  # a queued write is in flight: new writes must queue behind it
        self._running = False  # the replay thread is alive
        self._ids: dict[str, str] = {}
        self._numbers = itertools.count()
        self._down_since: float | None = None
        self._caught_up = 0
        self._dropped: set[str] = set()

    # ---- state ---------------------------------------------------------------------------------

    @property
    def pending(self) -> int:
        """Writes waiting (or in flight) in the queue."""
        with self._cond:
            return len(self._queue)

    @property
    def clear(self) -> bool:
        """Nothing queued: writes go straight to MLflow, and reads see every write of this process."""
        with self._cond:
            return not self._queue and not self._replaying

    def resolve(self, run_id: str) -> str:
        """The real run id of ``run_id`` (itself unless it is a placeholder)."""
        if not run_id.startswith(PENDING_PREFIX):
            return run_id
        with self._cond:
            real = self._ids.get(run_id)
        if real is None:
            raise Unresolved(f"run {run_id} was never created in MLflow")
        return real

    # ---- writes --------------------------------------------------------------------------------

    def write(
        self,
        what: str,
        fn: Callable[[Resolve], Any],
        *,
        on_done: Callable[[Any], None] | None = None,
        on_queue: Callable[[], None] | None = None,
    ) -> None:
        """Run ``fn(resolve)`` now, or queue it behind earlier writes; never raises an MLflow error.

        Args:
            what: names the write in notices ("log metrics", "end trial run").
            fn: the write; it maps run ids through the ``resolve`` it is given, at the time it runs.
            on_done: called with ``fn``'s result once it succeeded (now or on replay).
            on_queue: called in the caller's thread when the write is queued (e.g. to copy a file the
                caller is about to delete).
        """
        self._submit(_Write(what, fn, on_done=on_done, on_queue=on_queue))

    def create(
        self, what: str, fn: Callable[[Resolve], str], *, on_done: Callable[[str], None] | None = None
    ) -> str:
        """Create a run now (its id) or later (a placeholder that later writes may use).

        Args:
            what: names the write in notices.
            fn: creates the run and returns its id.
            on_done: called with the real id once the run exists.
        """
        placeholder = f"{PENDING_PREFIX}{next(self._numbers)}"
        item = _Write(what, fn, placeholder=placeholder, on_done=on_done)
        self._submit(item)
        with self._cond:
            return self._ids.get(placeholder, placeholder)

    def _submit(self, item: _Write) -> None:
        with self._cond:
            behind = bool(self._queue) or self._replaying
        if behind:  # keep the order: nothing overtakes a waiting write
            self._queue_up(item, None)
            return
        try:
            result = item.fn(self.resolve)
        except Exception as exc:
            if is_retryable(exc):
                self._queue_up(item, exc)
            else:
                self._drop(item, exc)
            return
        self._done(item, result)

    def _queue_up(self, item: _Write, exc: BaseException | None) -> None:
        if item.on_queue is not None:
            try:
                item.on_queue()
            except Exception as e:  # the write then fails on replay and is dropped with its notice
                self._say(f"tracking: keeping {item.what} for later: {error_reason(e)}")
        with self._cond:
            self._queue.append(item)
            if not self._running:  # checked and set under the lock the replay ends under: never lost
                self._running = True
                threading.Thread(target=self._replay, name="fs-tracking-outbox", daemon=True).start()
            first = exc is not None and self._down_since is None
            if first:
                self._down_since, self._caught_up = time.monotonic(), 0
        if first:
            self._say(
                f"tracking: MLflow cannot take writes now ({error_reason(exc)}); training goes on, "
                "the writes wait and are sent when it can"
            )

    def _done(self, item: _Write, result: Any) -> None:
        if item.placeholder is not None:
            with self._cond:
                self._ids[item.placeholder] = result
        if item.on_done is not None:
            try:
                item.on_done(result)
            except Exception as exc:  # bookkeeping after a write (e.g. a trial attr) must not stop the rest
                self._say(f"tracking: after {item.what}: {error_reason(exc)}")

    def _drop(self, item: _Write, exc: BaseException) -> None:
        if item.what not in self._dropped:
            self._dropped.add(item.what)
            self._say(f"tracking: {item.what} not logged ({error_reason(exc)}); training goes on")

    # ---- replay --------------------------------------------------------------------------------

    def _replay(self) -> None:
        """Send the queue in order; wait while the server is unreachable; stop when it is empty."""
        while True:
            time.sleep(self._retry_every_s)  # a pause, not a wait for something: the server is down
            while True:
                with self._cond:
                    if not self._queue:
                        self._finish_replay()
                        return
                    item = self._queue[0]
                    self._replaying = True
                try:
                    result = item.fn(self.resolve)
                except Exception as exc:
                    item.failures += 1
                    if is_unreachable(exc) or (is_retryable(exc) and item.failures < MAX_SERVER_ERRORS):
                        break  # wait, then try the same write again
                    self._pop(item)
                    self._drop(item, exc)
                    continue
                self._pop(item)
                with self._cond:
                    self._caught_up += 1
                self._done(item, result)

    def _pop(self, item: _Write) -> None:
        with self._cond:
            if self._queue and self._queue[0] is item:  # not when `give_up` emptied the queue meanwhile
                self._queue.popleft()

    def _finish_replay(self) -> None:
        """With the lock held and the queue empty: the replay ends."""
        self._running = self._replaying = False
        self._cond.notify_all()
        if self._down_since is not None:
            down, self._down_since = time.monotonic() - self._down_since, None
            self._say(f"tracking: MLflow caught up after {down:.1f}s ({self._caught_up} waiting writes sent)")

    def flush(self, timeout_s: float) -> int:
        """Wait up to ``timeout_s`` for the queue to empty; return how many writes are still waiting."""
        deadline = time.monotonic() + max(0.0, timeout_s)
        with self._cond:
            while self._queue or self._replaying:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(min(left, 1.0))
            return len(self._queue)

    def give_up(self) -> int:
        """Drop what waits (the process is leaving; MLflow stayed away); returns how many were dropped."""
        with self._cond:
            n = len(self._queue)
            self._queue.clear()
            self._down_since = None
            self._cond.notify_all()
        if n:
            self._say(
                f"tracking: {n} writes never reached MLflow and are dropped; the trials' results are in "
                "the Optuna storage (`python -m search report` redraws the report)"
            )
        return n
