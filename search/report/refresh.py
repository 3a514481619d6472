"""Refresh a study's MLflow parent report without stopping training.

Drawing the Pareto plots and logging them costs seconds (more on a loaded machine); done between trials
it delays the next trial by that much. `BackgroundRefresh` runs the refresh in one background thread,
at most one at a time and at most once per interval, and skips a refresh that would start while the
previous one is still drawing (the next one shows the newer state anyway). The final, complete report
(with hyperparameter importances) is drawn once, synchronously, when the study ends.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable

__all__ = ["BackgroundRefresh"]


class BackgroundRefresh:
    """Call ``refresh`` in a background thread, at most once per ``every_s`` seconds.

    Args:
        refresh: the work (e.g. ``lambda: refresh_parent(study, spec, tracker, importances=False)``).
        every_s: minimum seconds between the starts of two refreshes.
    """

    def __init__(self, refresh: Callable[[], None], *, every_s: float) -> None:
        self._refresh = refresh
        self._every_s = float(every_s)
        self._last = time.monotonic()  # the study just started: nothing to show yet
        self._thread: threading.Thread | None = None
        self.started = 0

    def maybe(self) -> bool:
        """After a trial: start a refresh if the interval has passed and none is running. Returns whether it did."""
        if self._thread is not None and self._thread.is_alive():
            return False
        if time.monotonic() - self._last < self._every_s:
            return False
        self._last = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="report-refresh", daemon=True)
        self._thread.start()
        self.started += 1
        return True

    def _run(self) -> None:
        try:
            self._refresh()
        except Exception as e:  # the study's results are safe in storage; the report can be redone
            print(f"warning: could not refresh the MLflow parent report: {e}", file=sys.stderr)

    def join(self) -> None:
        """Wait for a refresh in progress (call before the final, synchronous refresh)."""
        if self._thread is not None:
            self._thread.join()
