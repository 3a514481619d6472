"""A worker with nothing queued waits for another worker's trial without asking Optuna for new ones.

The live study of 2026-12-05 (README, "The main study") showed the bug: while the other worker trained the
last seed-check trial, the idle one asked for a trial every second and failed each as surplus (155 of them).
"""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path

import optuna

from search.spec.parse import load_spec
from search.study.workers import _trial_loop

ROOT = Path(__file__).resolve().parents[1]


class _Parent:
    """What the loop needs of a parent run when nothing is tracked."""

    tracker = None

    def keep_open(self) -> None:
        pass

    def close_dead_runs(self) -> None:
        pass


def test_seed_check_waits_for_a_running_trial_without_creating_trials() -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    spec = load_spec(ROOT / "studies" / "quick.toml")
    study = optuna.create_study(directions=list(spec.objectives.directions))
    running = study.ask()  # another worker's trial on this host, in a live process (this one)
    running.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
    values = [0.5] * len(spec.objectives.directions)
    finisher = threading.Timer(2.5, lambda: study.tell(running, values))
    finisher.start()
    try:
        ran = _trial_loop(
            study, spec, _Parent(), data=None, n_trials=None, timeout_s=None, threads=1, progress=False,
            queued_only=True,
        )  # fmt: skip
    finally:
        finisher.join()
    assert ran == 0
    assert [t.state.name for t in study.get_trials()] == ["COMPLETE"]  # it waited, then left: no new trial
