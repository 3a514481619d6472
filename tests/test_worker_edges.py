"""Edges of a worker's loop and objective that the live study and CI ran into.

- A worker with nothing queued waits for another worker's trial without asking Optuna for new ones: in the
  live study of 2026-12-05 (README, "The main study") the idle worker asked for a trial every second while
  the other trained the last seed-check trial, and failed each as surplus (155 of them).
- A Ctrl-C that lands right after a trial's MLflow run was created ends that run KILLED.
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


class _InterruptedTracker:
    """MLflow as the objective sees it, with a Ctrl-C landing right after the trial's run was created."""

    def __init__(self) -> None:
        self.ended: list[tuple[str, str]] = []

    def start_trial_run(self, *, on_created, **_) -> str:  # noqa: ANN001, ANN003
        on_created("run-1")
        raise KeyboardInterrupt  # before `start_trial_run` returns its id

    def end_trial_run(self, run_id: str, *, status: str, tags: dict) -> None:  # noqa: ARG002
        self.ended.append((run_id, status))


def test_ctrl_c_right_after_the_run_is_created_ends_it_killed() -> None:
    """Seen in CI: a Ctrl-C between the run's creation and the objective's try block left the run RUNNING,
    and crash recovery closed it FAILED instead of KILLED."""
    from types import SimpleNamespace

    import pytest

    from search.study.objective import Objective

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    spec = load_spec(ROOT / "studies" / "quick.toml")
    tracker = _InterruptedTracker()
    data = SimpleNamespace(data_hash="0" * 12, num_keypoints=16)
    objective = Objective(spec=spec, data=data, tracker=tracker, threads=1, progress=False)
    study = optuna.create_study(directions=list(spec.objectives.directions))
    study.enqueue_trial({}, user_attrs={"role": "baseline", "fixed_overrides": {}})
    trial = study.ask()
    with pytest.raises(KeyboardInterrupt):
        objective(trial)
    assert tracker.ended == [("run-1", "KILLED")]
    assert study.trials[0].user_attrs["fail_reason"] == "interrupted (Ctrl-C)"
