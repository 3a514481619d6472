"""Faults and lifecycle without training: retried storage calls, the heartbeat, ask/tell, fixed-trial re-queueing,
the parent run's status, read-only commands. Storage faults are injected into a real SQLite RDB storage."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import optuna
import pytest
import sqlalchemy.exc
from conftest import wait_for
from harness_utils import ROOT, cli, quick_spec, write_spec
from optuna.storages import RDBStorage, _CachedStorage
from optuna.trial import TrialState
from zygote import spawn

from search.storage.faults import (
    ResilientStorage,
    StorageOutage,
    TrialHeartbeat,
    fail_stale_trials,
    run_trial,
    study_lock,
)
from search.study.lifecycle import LEASE_PREFIX, ParentRun, enqueue_fixed, requeue_fixed_trials


def _outage() -> Exception:
    err = sqlalchemy.exc.OperationalError(
        "SELECT 1", {}, Exception("server closed the connection unexpectedly")
    )
    wrapped = optuna.exceptions.StorageInternalError("An exception is raised during the commit.")
    wrapped.__cause__ = err
    return wrapped


class Flaky:
    """A storage backend whose calls fail like a database that is down while `down` is set."""

    def __init__(self, backend) -> None:
        self._backend, self.down, self.failures = backend, False, 0

    def __getattr__(self, name):
        fn = getattr(self._backend, name)
        if not callable(fn):
            return fn

        def call(*args, **kwargs):
            if self.down:
                self.failures += 1
                raise _outage()
            return fn(*args, **kwargs)

        return call


def _rdb(tmp_path: Path, *, heartbeat: int | None = None) -> tuple[ResilientStorage, Flaky, RDBStorage]:
    kwargs = {"heartbeat_interval": heartbeat, "grace_period": 2} if heartbeat else {}
    with pytest.warns(optuna.exceptions.ExperimentalWarning) if heartbeat else _nullcontext():
        rdb = RDBStorage(f"sqlite:///{tmp_path / 'optuna.db'}", **kwargs)
    flaky = Flaky(_CachedStorage(rdb))
    return ResilientStorage(flaky, rdb=rdb, outage_s=30), flaky, rdb


class _nullcontext:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


def _bring_back_after(flaky: Flaky, failures: int) -> threading.Thread:
    """Restore the backend once `failures` calls have failed (the outage is over)."""

    def watch() -> None:
        wait_for(lambda: flaky.failures >= failures, timeout=30, interval=0.01, what="failed calls")
        flaky.down = False

    t = threading.Thread(target=watch, daemon=True)
    t.start()
    return t


def test_storage_calls_ride_out_an_outage(tmp_path: Path, capsys) -> None:
    storage, flaky, _ = _rdb(tmp_path)
    study = optuna.create_study(storage=storage, study_name="s", directions=["maximize"])
    trial = study.ask()
    flaky.down = True
    watcher = _bring_back_after(flaky, 3)
    trial.set_user_attr("k", 1)  # retried until the database is back
    watcher.join()
    study.tell(trial, 1.0)
    assert study.trials[0].user_attrs == {"k": 1} and study.trials[0].state == TrialState.COMPLETE
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "unreachable" in err[0] and "reachable again" in err[1], err


def test_outage_longer_than_the_window_stops_with_one_line(tmp_path: Path) -> None:
    storage, flaky, _ = _rdb(tmp_path)
    storage.outage_s = 0.5
    study = optuna.create_study(storage=storage, study_name="s", directions=["maximize"])
    flaky.down = True
    with pytest.raises(StorageOutage, match="unreachable for 0s") as e:
        study.ask()
    assert "\n" not in str(e.value)


def test_non_transient_errors_are_not_retried(tmp_path: Path) -> None:
    storage, flaky, _ = _rdb(tmp_path)
    study = optuna.create_study(storage=storage, study_name="s", directions=["maximize"])
    with pytest.raises(KeyError):
        optuna.load_study(study_name="nope", storage=storage)
    assert flaky.failures == 0 and study.trials == []


def test_final_write_committed_before_the_connection_dropped_is_not_an_error(tmp_path: Path) -> None:
    storage, flaky, _ = _rdb(tmp_path)
    study = optuna.create_study(storage=storage, study_name="s", directions=["maximize"])
    trial = study.ask()
    real = flaky._backend.set_trial_state_values
    calls = []

    def commit_then_drop(*args, **kwargs):  # the first attempt commits, then the reply is lost
        calls.append(1)
        result = real(*args, **kwargs)
        if len(calls) == 1:
            raise _outage()
        return result

    flaky._backend.set_trial_state_values = commit_then_drop
    assert storage.set_trial_state_values(trial._trial_id, TrialState.COMPLETE, [2.0]) is True
    assert study.trials[0].values == [2.0] and len(calls) == 2


def test_heartbeat_survives_errors_and_resumes(tmp_path: Path) -> None:
    storage, flaky, rdb = _rdb(tmp_path, heartbeat=1)
    study = optuna.create_study(storage=storage, study_name="s", directions=["maximize"])
    trial = study.ask()

    def last_beat():
        with rdb.engine.connect() as c:
            return c.execute(sqlalchemy.text("SELECT heartbeat FROM trial_heartbeats")).scalar()

    with TrialHeartbeat(storage, trial._trial_id):
        first = wait_for(last_beat, timeout=10, what="first heartbeat")
        flaky.down = True
        wait_for(lambda: flaky.failures >= 2, timeout=20, what="heartbeats failing")
        flaky.down = False
        wait_for(lambda: last_beat() > first, timeout=20, what="heartbeat to resume")


def test_stale_check_waits_after_an_outage(tmp_path: Path) -> None:
    storage, flaky, rdb = _rdb(tmp_path, heartbeat=1)
    study = optuna.create_study(storage=storage, study_name="s", directions=["maximize"])
    trial = study.ask()
    storage.record_heartbeat(trial._trial_id)
    with rdb.engine.begin() as c:  # a heartbeat from long ago: stale
        c.execute(sqlalchemy.text("UPDATE trial_heartbeats SET heartbeat = '2000-01-01 00:00:00'"))
    flaky.down = True
    watcher = _bring_back_after(flaky, 1)
    study.trials  # noqa: B018 (a read that sees the outage)
    watcher.join()
    fail_stale_trials(study)  # just recovered: the other workers' heartbeats may not have resumed yet
    assert study.trials[0].state == TrialState.RUNNING
    storage._recovered_at -= 60
    fail_stale_trials(study)
    assert study.trials[0].state == TrialState.FAIL


def test_trial_failed_elsewhere_one_line_and_move_on(tmp_path: Path, capsys) -> None:
    storage, _, _ = _rdb(tmp_path)
    study = optuna.create_study(storage=storage, study_name="s", directions=["maximize"])

    def objective(trial: optuna.Trial) -> float:
        trial.set_user_attr("worker", "me")
        storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)  # what a stale check elsewhere does
        trial.set_user_attr("val", 1.0)  # raises UpdateFinishedTrialError
        return 1.0

    outcome = run_trial(study, objective)
    assert outcome.lost and outcome.frozen.state == TrialState.FAIL
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "failed by another worker" in err[0], err
    assert run_trial(study, lambda t: 2.0).frozen.state == TrialState.COMPLETE  # the worker goes on


def test_ctrl_c_marks_trial_and_prints_nothing(tmp_path: Path, capsys) -> None:
    study = optuna.create_study(directions=["maximize"])

    def objective(trial: optuna.Trial) -> float:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_trial(study, objective)
    t = study.trials[0]
    assert t.state == TrialState.FAIL and "interrupted" in t.user_attrs["fail_reason"]
    assert capsys.readouterr().err == ""


def test_ctrl_c_during_ask_marks_the_new_trial() -> None:
    # Ctrl-C after ask stored the RUNNING trial but before it returned: the trial must not stay RUNNING
    # (no worker would own it and a resumed study would never run it: tests/test_ablation_e2e.py's resume).
    study = optuna.create_study(directions=["maximize"])
    real_ask = study.ask

    def ask_then_ctrl_c(*args, **kwargs) -> optuna.Trial:
        trial = real_ask(*args, **kwargs)
        signal.raise_signal(signal.SIGINT)
        return trial

    study.ask = ask_then_ctrl_c
    ran: list[int] = []
    old = signal.signal(signal.SIGINT, signal.default_int_handler)  # what a terminal's Ctrl-C meets
    try:
        with pytest.raises(KeyboardInterrupt):
            run_trial(study, lambda t: ran.append(t.number) or 1.0)
    finally:
        signal.signal(signal.SIGINT, old)
    t = study.trials[0]
    assert t.state == TrialState.FAIL and t.user_attrs["fail_reason"] == "interrupted (Ctrl-C)"
    assert ran == []  # the objective never started
    assert signal.getsignal(signal.SIGINT) is old


def test_unexpected_failure_prints_traceback_expected_one_does_not(capsys) -> None:
    study = optuna.create_study(directions=["maximize"])

    def broken(trial):
        raise TypeError("bug")

    def diverged(trial):
        raise ArithmeticError("nan")

    assert run_trial(study, broken).frozen.state == TrialState.FAIL
    assert "Traceback" in capsys.readouterr().err
    assert run_trial(study, diverged, quiet=(ArithmeticError,)).frozen.state == TrialState.FAIL
    assert capsys.readouterr().err == ""


# ----------------------------------------------------------------------------------------------------------
# fixed trials come back once per attempt


BASELINE = {"role": "baseline", "name": "baseline", "fixed_overrides": {"model": {"backbone": "baseline"}}}
VARIANT = {"role": "variant", "name": "v1", "fixed_overrides": {}}


def _journal_study(path: Path) -> optuna.Study:
    from search.storage.connect import make_storage

    return optuna.create_study(
        study_name="s", storage=make_storage(f"journal:{path}"), directions=["maximize"], load_if_exists=True
    )


def test_failed_fixed_trials_are_requeued_once_per_attempt(tmp_path: Path) -> None:
    study = _journal_study(tmp_path / "j.journal")
    assert requeue_fixed_trials(study, [BASELINE, VARIANT]) == ["baseline", "v1"]
    assert requeue_fixed_trials(study, [BASELINE, VARIANT]) == []  # queued: nothing to add
    base = study.ask()
    assert base.user_attrs["name"] == "baseline" and base.user_attrs["attempt"] == 0
    base.set_user_attr("fail_reason", "interrupted (Ctrl-C)")
    study.tell(base, state=TrialState.FAIL)
    v = study.ask()
    study.tell(v, 1.0)
    assert requeue_fixed_trials(study, [BASELINE, VARIANT]) == ["baseline"]
    assert requeue_fixed_trials(study, [BASELINE, VARIANT]) == []
    again = study.ask()
    assert again.user_attrs["name"] == "baseline" and again.user_attrs["attempt"] == 1
    assert again.user_attrs["fixed_overrides"] == BASELINE["fixed_overrides"]


def test_fixed_trials_added_later_are_requeued_too(tmp_path: Path) -> None:
    """Generic over fixed trials: one enqueued after the search (not in the spec's list) comes back as well."""
    study = _journal_study(tmp_path / "j.journal")
    verify = {"role": "verify", "name": "verify-t3", "seed": 1, "fixed_overrides": {"train": {"seed": 1}}}
    enqueue_fixed(study, verify)
    study.tell(study.ask(), state=TrialState.FAIL)
    assert requeue_fixed_trials(study, []) == ["verify-t3"]
    t = study.ask()
    assert {k: t.user_attrs[k] for k in verify} == verify and t.user_attrs["attempt"] == 1


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_fixed_trial_whose_retry_died_comes_back_on_the_next_start(tmp_path: Path) -> None:
    """A dead worker's baseline is retried once; when the retry dies too, the next start enqueues it again."""
    import socket

    from search.spec.parse import load_spec
    from search.study.setup import open_study

    raw = quick_spec()
    raw["study"]["name"] = "dies"
    spec = load_spec(write_spec(tmp_path / "dies.toml", raw))
    url = f"journal:{tmp_path / 'j.journal'}"
    for attempt in range(3):
        study = open_study(spec, url, create=True)
        waiting = study.get_trials(states=(TrialState.WAITING,))
        assert [t.user_attrs["name"] for t in waiting] == ["baseline"], attempt
        trial = study.ask()  # a worker takes it and dies
        trial.set_user_attr("worker", f"{socket.gethostname()}:{_dead_pid()}")
    names = [
        (t.user_attrs.get("name"), t.user_attrs.get("retry_of"), t.state.name) for t in study.get_trials()
    ]
    assert names == [("baseline", None, "FAIL"), ("baseline", 0, "FAIL"), ("baseline", None, "RUNNING")]


_RACE = """
import sys, optuna
from search.storage.connect import make_storage
from search.study.lifecycle import requeue_fixed_trials
study = optuna.load_study(study_name="s", storage=make_storage("journal:" + sys.argv[1]))
open(sys.argv[2], "w").close()
while len(__import__("glob").glob(sys.argv[3] + "/ready-*")) < int(sys.argv[4]):
    pass  # start together
print(requeue_fixed_trials(study, [{"role": "baseline", "name": "baseline", "fixed_overrides": {}}]))
"""


def test_workers_starting_together_never_duplicate(tmp_path: Path) -> None:
    journal = tmp_path / "j.journal"
    study = _journal_study(journal)
    n = 4
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [
        spawn([str(journal), str(tmp_path / f"ready-{i}"), str(tmp_path), str(n)], tmp_path, env, code=_RACE)
        for i in range(n)
    ]
    outs = [p.communicate(timeout=120)[0] for p in procs]
    assert [p.returncode for p in procs] == [0] * n
    assert sorted(outs) == ["['baseline']\n"] + ["[]\n"] * (n - 1)
    assert [t.user_attrs["name"] for t in study.get_trials()] == ["baseline"]


def test_study_lock_excludes_a_second_holder(tmp_path: Path) -> None:
    study = _journal_study(tmp_path / "j.journal")
    inside = threading.Event()
    order = []

    def other() -> None:
        inside.wait(10)
        with study_lock(study):
            order.append("other")

    t = threading.Thread(target=other)
    t.start()
    with study_lock(study):
        inside.set()
        t.join(0.5)  # the other thread cannot get in while we hold the lock
        order.append("first")
    t.join(10)
    assert order == ["first", "other"]


# ----------------------------------------------------------------------------------------------------------
# the parent run: FINISHED / KILLED / FAILED when the last worker leaves


def _parent(tmp_path: Path, name: str):
    from search.spec.parse import parse_spec
    from search.tracking.runs import StudyTracker

    raw = quick_spec()
    raw["study"]["name"] = name
    spec = parse_spec(raw, source="t.toml", check=False)
    study = _journal_study(tmp_path / f"{name}.journal")
    tracker = StudyTracker(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}", study_name=name)
    return study, spec, tracker


@pytest.mark.parametrize(
    ("raised", "status"), [(None, "FINISHED"), (KeyboardInterrupt, "KILLED"), (RuntimeError, "FAILED")]
)
def test_parent_run_status_when_the_last_worker_leaves(tmp_path: Path, raised, status) -> None:
    study, spec, tracker = _parent(tmp_path, "p")
    with (
        pytest.raises(raised) if raised else _nullcontext(),
        ParentRun(study, spec, tracker, params={}, tags={}) as p,
    ):
        assert tracker.client.get_run(p.run_id).info.status == "RUNNING"
        assert study.user_attrs["mlflow_parent_run_id"] == p.run_id
        if raised:
            raise raised
    run = tracker.client.get_run(p.run_id)
    assert run.info.status == status and run.info.end_time
    arts = {a.path for a in tracker.client.list_artifacts(p.run_id, "report")}
    assert "report/pareto.csv" in arts


def test_parent_stays_open_while_another_worker_lives(tmp_path: Path) -> None:
    study, spec, tracker = _parent(tmp_path, "q")
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        key = f"{LEASE_PREFIX}{os.uname().nodename}:{other.pid}"
        entry = {"state": "running", "t": time.time(), "host": os.uname().nodename, "pid": other.pid}
        study._storage.set_study_system_attr(study._study_id, key, entry)
        with ParentRun(study, spec, tracker, params={}, tags={}) as p:
            pass
        assert tracker.client.get_run(p.run_id).info.status == "RUNNING"
        assert tracker.client.list_artifacts(p.run_id, "report") == []  # the last one to leave reports
    finally:
        other.kill()
        other.wait()
    with ParentRun(study, spec, tracker, params={}, tags={}) as p2:  # the other worker died: this one closes
        assert p2.run_id == p.run_id
    assert tracker.client.get_run(p.run_id).info.status == "FINISHED"
    assert "report/pareto.csv" in {a.path for a in tracker.client.list_artifacts(p.run_id, "report")}


def test_workers_leaving_together_still_leave_a_report(tmp_path: Path, monkeypatch) -> None:
    """Two workers that leave at once each see the other alive and skip the report; the one that ends the
    parent run (under the study lock) writes it after all."""
    study, spec, tracker = _parent(tmp_path, "t")
    monkeypatch.setattr(ParentRun, "_others_alive", lambda self: True)  # the peek before the lock
    with ParentRun(study, spec, tracker, params={}, tags={}) as p:
        pass
    assert tracker.client.get_run(p.run_id).info.status == "FINISHED"
    assert "report/pareto.csv" in {a.path for a in tracker.client.list_artifacts(p.run_id, "report")}


# ----------------------------------------------------------------------------------------------------------
# read-only commands


def test_read_only_commands_leave_an_empty_directory_empty(tmp_path: Path) -> None:
    r = cli(["list"], tmp_path)
    assert r.returncode == 0 and "no studies" in r.stdout, r.stderr
    for args in (["report", "nosuch"], ["reproduce", "nosuch"], ["inspect", "nosuch", "--trial", "0"]):
        r = cli(args, tmp_path)
        assert r.returncode == 2, (args, r.stderr)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and "no study named 'nosuch'" in lines[0], (args, lines)
    assert list(tmp_path.iterdir()) == []


def test_storage_file_must_be_private(tmp_path: Path) -> None:
    secret = tmp_path / "storage.url"
    secret.write_text(f"journal:{tmp_path / 'x.journal'}\n")
    secret.chmod(0o644)
    r = cli(["list"], tmp_path, env={"FS_STORAGE_FILE": str(secret)})
    assert r.returncode == 2 and "chmod 600" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    secret.chmod(0o600)
    spec = write_spec(tmp_path / "s.toml", quick_spec())
    assert spec.exists()
    r = cli(["list"], tmp_path, env={"FS_STORAGE_FILE": str(secret)})
    assert r.returncode == 0 and "no studies" in r.stdout and "x.journal" in r.stdout


# ----------------------------------------------------------------------------------------------------------
# threads


def test_openmp_waits_passively_unless_told_otherwise(tmp_path: Path) -> None:
    code = (
        "import os, sys\n"
        "from search.cli import main\n"
        "assert 'torch' not in sys.modules  # OpenMP reads the policy when torch loads\n"
        "main(['list'])\n"
        "print(os.environ['OMP_WAIT_POLICY'])\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"} | {"PYTHONPATH": str(ROOT)}
    for given, expected in ((None, "PASSIVE"), ("ACTIVE", "ACTIVE")):
        run_env = env if given is None else {**env, "OMP_WAIT_POLICY": given}
        out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=run_env, capture_output=True,
                             text=True, timeout=300)  # fmt: skip
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip().splitlines()[-1] == expected


def test_default_threads_are_usable_cores_per_worker() -> None:
    from search.study.threads import choose_threads

    cores = len(os.sched_getaffinity(0))
    assert choose_threads(jobs=1)[0] == cores
    assert choose_threads(jobs=cores * 2)[0] == 1
    threads, why = choose_threads(jobs=1, requested=3)
    assert threads == 3 and "requested" in why
