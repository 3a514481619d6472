"""Scale-out and fault tolerance against real servers: PostgreSQL (Optuna storage) and `mlflow server`.

Workers are started with deploy/worker.sh (the script the SLURM and Kubernetes examples run). Every wait
polls a condition with a deadline; nothing sleeps in place of synchronisation.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from conftest import DEPLOY, ROOT, postgres_ctl, wait_for
from harness_utils import cli, load_study, mlflow_runs, quick_spec, write_spec

pytestmark = pytest.mark.slow

HOST = socket.gethostname()
FAST_RECOVERY = {"FOCALNET_SEARCH_HEARTBEAT_S": "1", "FOCALNET_SEARCH_GRACE_S": "3"}


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Worker environment: one dataset cache for the module, fast heartbeats, one thread per worker."""
    return {
        "FOCALNET_SEARCH_CACHE": str(tmp_path_factory.mktemp("cache")),
        "FS_THREADS": "1",
        **FAST_RECOVERY,
    }


def _spec(tmp: Path, name: str, *, n_trials: int, steps: int) -> Path:
    """studies/quick.toml with early stopping off (every trial runs to the end: counts are exact)."""
    spec = quick_spec(early_stopping={"enabled": False}, train={"steps": steps, "eval_every": steps})
    spec["study"]["name"] = name
    spec["study"]["n_trials"] = n_trials
    spec["study"].pop("timeout_min", None)
    return write_spec(tmp / f"{name}.toml", spec)


def _start_worker(
    tmp: Path, spec: Path, storage: str, tracking: str, env: dict[str, str], log: str
) -> subprocess.Popen:
    full = {
        **os.environ,
        **env,
        "STUDY": str(spec),
        "FS_STORAGE": storage,
        "FS_TRACKING_URI": tracking,
        "FS_PYTHON": sys.executable,
    }
    out = open(tmp / f"{log}.log", "w")  # noqa: SIM115 (the child holds it; closed when the test's tmp goes)
    return subprocess.Popen(
        [str(DEPLOY / "worker.sh")],
        cwd=tmp,
        env=full,
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait(timeout=30)


def _wait_exit(procs: list[subprocess.Popen], timeout: float) -> list[int]:
    wait_for(lambda: all(p.poll() is not None for p in procs), timeout=timeout, what="workers to finish")
    return [p.returncode for p in procs]


def _children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            if int(stat.read_text().rpartition(")")[2].split()[1]) == pid:
                out.append(int(stat.parent.name))
    return out


def _rdb(url: str):
    from search.storage.connect import make_storage

    return make_storage(url, heartbeat=False)  # picks the installed PostgreSQL driver


def _rdb_study(url: str, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=_rdb(url))


def _running_trial_of(get_study, pid: int):
    """The RUNNING trial owned by worker `pid` whose MLflow run exists, or None (storage not ready yet)."""
    try:
        study = get_study()
    except (KeyError, FileNotFoundError, ValueError):
        return None
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        if t.user_attrs.get("worker") == f"{HOST}:{pid}" and t.user_attrs.get("mlflow_run_id"):
            return t
    return None


def _check_counts(study: optuna.Study, n: int) -> list[optuna.trial.FrozenTrial]:
    """Exactly n COMPLETE trials, distinct numbers, nothing left RUNNING/WAITING; FAILs are explained."""
    trials = study.get_trials()
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    assert len(complete) == n, [(t.number, t.state.name, t.user_attrs.get("fail_reason")) for t in trials]
    numbers = [t.number for t in trials]
    assert len(numbers) == len(set(numbers))
    assert not [t for t in trials if t.state.name in ("RUNNING", "WAITING")]
    return trials


def _mlflow_children(uri: str, name: str):
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(f"focalnet-search/{name}")
    assert exp is not None
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    parents = [r for r in runs if r.data.tags.get("fs.role") == "parent"]
    children = [r for r in runs if r.data.tags.get("fs.role") == "trial"]
    return client, runs, parents, children


def _assert_no_secret(secret: str, runs, logs: list[Path]) -> None:
    for r in runs:
        for k, v in {**r.data.params, **r.data.tags}.items():
            assert secret not in f"{k}={v}", f"password leaked into run {r.info.run_id} {k}"
    for log in logs:
        assert secret not in log.read_text(), f"password leaked into {log.name}"


def _assert_cmdline_clean(pid: int, secret: str) -> None:
    def execed() -> bytes | None:  # worker.sh execs python: wait for the worker itself, not the shell
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        return cmdline if b"search" in cmdline else None

    cmdline = wait_for(execed, timeout=60, what="the worker's exec")
    assert secret.encode() not in cmdline, cmdline
    assert b"worker" in cmdline, cmdline  # it is the worker itself, not a shell on the way


def _assert_parent_finished_with_report(client, parent) -> None:
    run = client.get_run(parent.info.run_id)
    assert run.info.status == "FINISHED" and run.info.end_time, run.info
    report = {a.path for a in client.list_artifacts(parent.info.run_id, "report")}
    assert {"report/pareto.csv", "report/pareto_accuracy_vs_params.png", "report/hypervolume.json"} <= report


def test_two_workers_postgres_one_parent_on_tracking_server(
    tmp_path: Path, postgres, mlflow_server: str, env: dict[str, str]
) -> None:
    """Two workers on PostgreSQL + MLflow server: exactly N trials, children of both under one parent."""
    n = 6
    spec = _spec(tmp_path, "scale-two", n_trials=n, steps=60)
    procs = [_start_worker(tmp_path, spec, postgres.url, mlflow_server, env, f"w{i}") for i in range(2)]
    try:
        for p in procs:  # the URL reaches the worker by environment: `ps` shows no password
            _assert_cmdline_clean(p.pid, postgres.password)
        rcs = _wait_exit(procs, timeout=240)
    finally:
        _stop(procs)
    logs = [tmp_path / "w0.log", tmp_path / "w1.log"]
    assert rcs == [0, 0], "\n".join(p.read_text()[-2000:] for p in logs)
    study = _rdb_study(postgres.url, "scale-two")
    trials = _check_counts(study, n)
    for t in trials:
        if t.state.name == "FAIL":  # only a surplus trial of the start race may exist, never run
            assert "surplus" in t.user_attrs["fail_reason"] and "mlflow_run_id" not in t.user_attrs
    complete = sorted(t.number for t in trials if t.state.name == "COMPLETE")

    client, runs, parents, children = _mlflow_children(mlflow_server, "scale-two")
    assert len(parents) == 1
    parent = parents[0]
    assert sorted(int(c.data.tags["fs.trial_number"]) for c in children) == complete
    assert all(c.data.tags["mlflow.parentRunId"] == parent.info.run_id for c in children)
    assert all(c.info.status == "FINISHED" for c in children)
    assert len({c.data.tags["fs.worker"] for c in children}) == 2, "both workers should have logged trials"
    assert "***" in parent.data.params["storage"] and "fs_worker" in parent.data.params["storage"]
    arts = [a.path for a in client.list_artifacts(parent.info.run_id)]
    assert "spec.json" in arts, f"artifacts go through the server's artifact root: {arts}"
    _assert_parent_finished_with_report(client, parent)
    _assert_no_secret(postgres.password, runs, logs)


def test_sigkilled_worker_trial_failed_retried_run_closed(
    tmp_path: Path, postgres, mlflow_server: str, env: dict[str, str]
) -> None:
    """kill -9 a worker mid-trial: heartbeat fails its trial, the live worker retries it, MLflow run closed."""
    n = 4
    name = "scale-kill"
    spec = _spec(tmp_path, name, n_trials=n, steps=300)
    victim = _start_worker(tmp_path, spec, postgres.url, mlflow_server, env, "victim")
    survivor = _start_worker(tmp_path, spec, postgres.url, mlflow_server, env, "survivor")
    storage = _rdb(postgres.url)
    try:
        trial = wait_for(
            lambda: _running_trial_of(
                lambda: optuna.load_study(study_name=name, storage=storage), victim.pid
            ),
            timeout=180,
            what="a RUNNING trial owned by the victim worker",
        )
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait(timeout=30)
        assert _wait_exit([survivor], timeout=240) == [0], (tmp_path / "survivor.log").read_text()[-3000:]
    finally:
        _stop([victim, survivor])
    study = optuna.load_study(study_name=name, storage=storage)
    trials = _check_counts(study, n)
    dead = study.trials[trial.number]
    assert dead.state.name == "FAIL"
    retries = [t for t in trials if t.system_attrs.get("failed_trial") == trial.number]
    assert len(retries) == 1 and retries[0].state.name == "COMPLETE"
    assert retries[0].params == dead.params
    assert retries[0].user_attrs["worker"] == f"{HOST}:{survivor.pid}"

    client, runs, parents, children = _mlflow_children(mlflow_server, name)
    dead_run = client.get_run(trial.user_attrs["mlflow_run_id"])
    assert dead_run.info.status in ("FAILED", "KILLED")
    assert not [c for c in children if c.info.status == "RUNNING"]
    finished = sorted(int(c.data.tags["fs.trial_number"]) for c in children if c.info.status == "FINISHED")
    assert finished == sorted(t.number for t in trials if t.state.name == "COMPLETE")

    # Re-running after the crash: nothing lost, nothing run twice.
    before = [(t.number, t.state.name) for t in study.get_trials()]
    again = _start_worker(tmp_path, spec, postgres.url, mlflow_server, env, "again")
    try:
        assert _wait_exit([again], timeout=120) == [0], (tmp_path / "again.log").read_text()[-3000:]
    finally:
        _stop([again])
    assert [(t.number, t.state.name) for t in study.get_trials()] == before
    _assert_no_secret(
        postgres.password, runs, [tmp_path / f"{x}.log" for x in ("victim", "survivor", "again")]
    )


def test_version_mismatch_refused(tmp_path: Path, postgres, env: dict[str, str]) -> None:
    """A study created by Optuna 4.9 must not be joined by this (5.x) worker: exit 2, one line."""
    from search.spec.parse import load_spec
    from search.storage.connect import library_versions
    from search.study.setup import open_study

    spec_path = _spec(tmp_path, "scale-versions", n_trials=2, steps=30)
    study = open_study(load_spec(spec_path), postgres.url, create=True)
    study.set_user_attr("versions", {**library_versions(), "optuna": "4.9.0"})
    w = _start_worker(tmp_path, spec_path, postgres.url, "none", env, "refused")
    try:
        assert _wait_exit([w], timeout=120) == [2]
    finally:
        _stop([w])
    out = (tmp_path / "refused.log").read_text().strip()
    assert len(out.splitlines()) == 1, out
    assert "optuna==4.9.0" in out and f"optuna=={optuna.__version__}" in out
    assert postgres.password not in out
    assert (
        _rdb_study(postgres.url, "scale-versions").get_trials(
            states=(optuna.trial.TrialState.RUNNING, optuna.trial.TrialState.COMPLETE)
        )
        == []
    )


def test_journal_jobs4_sigkill_then_restart_completes(tmp_path: Path, env: dict[str, str]) -> None:
    """Local journal storage, `run --jobs 4`, one worker SIGKILLed mid-trial; a restart completes the study."""
    n = 6
    name = "scale-journal"
    spec = _spec(tmp_path, name, n_trials=n, steps=300)
    run_env = {**os.environ, "PYTHONPATH": str(ROOT), **env}
    with open(tmp_path / "run1.log", "w") as log:
        run = subprocess.Popen(
            [sys.executable, "-m", "search", "run", str(spec), "--jobs", "4", "--no-progress"],
            cwd=tmp_path,
            env=run_env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:

            def victim_trial():
                try:
                    study = load_study(tmp_path, name)
                except (KeyError, FileNotFoundError):
                    return None
                for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
                    if t.user_attrs.get("mlflow_run_id") and str(t.user_attrs.get("worker", "")).startswith(
                        f"{HOST}:"
                    ):
                        return t
                return None

            trial = wait_for(victim_trial, timeout=180, what="a RUNNING trial of a --jobs worker")
            os.kill(int(trial.user_attrs["worker"].rpartition(":")[2]), signal.SIGKILL)
            wait_for(lambda: run.poll() is not None, timeout=240, what="`run --jobs 4` to finish")
        finally:
            if run.poll() is None:
                workers = _children(run.pid)  # own sessions: killing `run` would leave them running
                run.kill()
                run.wait(timeout=30)
                for pid in workers:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
    assert run.returncode == 0, (tmp_path / "run1.log").read_text()[-3000:]
    r = cli(["run", str(spec), "--jobs", "4", "--no-progress"], tmp_path, env=env, timeout=240)  # restart
    assert r.returncode == 0, r.stderr[-3000:]
    study = load_study(tmp_path, name)
    trials = _check_counts(study, n)
    dead = study.trials[trial.number]
    assert dead.state.name == "FAIL" and "stale" in dead.user_attrs["fail_reason"]
    retries = [t for t in trials if t.user_attrs.get("retry_of") == trial.number]
    assert len(retries) == 1 and retries[0].state.name == "COMPLETE"
    runs = mlflow_runs(tmp_path, name)
    assert not [r for r in runs if r.data.tags.get("fs.role") == "trial" and r.info.status == "RUNNING"]
    assert next(r for r in runs if r.info.run_id == trial.user_attrs["mlflow_run_id"]).info.status in (
        "FAILED",
        "KILLED",
    )
    done = sorted(
        int(r.data.tags["fs.trial_number"])
        for r in runs
        if r.data.tags.get("fs.role") == "trial" and r.info.status == "FINISHED"
    )
    assert done == sorted(t.number for t in trials if t.state.name == "COMPLETE")


def test_journal_stale_trial_detected_on_next_start(tmp_path: Path, env: dict[str, str]) -> None:
    """No live sibling: the dead worker's trial stays RUNNING until the next start fails and retries it."""
    n = 2
    name = "scale-restart"
    spec = _spec(tmp_path, name, n_trials=n, steps=300)
    storage = f"journal:{tmp_path / 'mlruns' / 'optuna.journal'}"
    tracking = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    (tmp_path / "mlruns").mkdir()
    w = _start_worker(tmp_path, spec, storage, tracking, env, "lone")
    try:
        trial = wait_for(
            lambda: _running_trial_of(lambda: load_study(tmp_path, name), w.pid),
            timeout=180,
            what="a RUNNING trial of the lone worker",
        )
        os.kill(w.pid, signal.SIGKILL)
        w.wait(timeout=30)
    finally:
        _stop([w])
    assert load_study(tmp_path, name).trials[trial.number].state.name == "RUNNING"
    r = cli(["run", str(spec), "--no-progress"], tmp_path, env=env, timeout=600)  # 2 busy cores: minutes
    assert r.returncode == 0, r.stderr[-3000:]
    study = load_study(tmp_path, name)
    trials = _check_counts(study, n)
    assert "stale" in study.trials[trial.number].user_attrs["fail_reason"]
    assert [t.state.name for t in trials if t.user_attrs.get("retry_of") == trial.number] == ["COMPLETE"]
    runs = mlflow_runs(tmp_path, name)
    assert next(r for r in runs if r.info.run_id == trial.user_attrs["mlflow_run_id"]).info.status in (
        "FAILED",
        "KILLED",
    )


def test_postgres_restart_under_two_running_workers(
    tmp_path: Path, postgres, mlflow_server: str, env: dict[str, str]
) -> None:
    """`run --jobs 2` on PostgreSQL (URL by environment); the server is stopped (`pg_ctl stop -m fast`) and
    started again while both workers train: nothing lost, no worker crashes, the parent run ends FINISHED."""
    n = 6
    name = "scale-outage"
    spec = _spec(tmp_path, name, n_trials=n, steps=300)
    run_env = {**os.environ, "PYTHONPATH": str(ROOT), **env, "FS_STORAGE": postgres.url,
               "FS_TRACKING_URI": mlflow_server}  # fmt: skip
    storage = _rdb(postgres.url)
    log_path = tmp_path / "run.log"
    with open(log_path, "w") as log:
        run = subprocess.Popen(
            [sys.executable, "-m", "search", "run", str(spec), "--jobs", "2", "--no-progress"],
            cwd=tmp_path,
            env=run_env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        workers = []
        try:

            def both_training():
                try:
                    study = optuna.load_study(study_name=name, storage=storage)
                except KeyError:
                    return None
                running = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
                owners = {t.user_attrs["worker"] for t in running if "mlflow_run_id" in t.user_attrs}
                return owners if len(owners) == 2 else None

            owners = wait_for(both_training, timeout=300, what="both workers training")
            workers = [int(o.rpartition(":")[2]) for o in owners]
            for pid in workers:  # `run --jobs` passes the URL by environment too
                _assert_cmdline_clean(pid, postgres.password)
            postgres_ctl(postgres, "stop")
            try:
                wait_for(lambda: log_path.read_text().count("storage: unreachable") >= 2, timeout=60,
                         what="the workers to notice the outage")  # fmt: skip
                time.sleep(4)  # the outage itself: longer than the 3 s heartbeat grace period
            finally:
                postgres_ctl(postgres, "start")
            wait_for(lambda: run.poll() is not None, timeout=600, what="the study to finish")
        finally:
            if run.poll() is None:
                run.kill()
                run.wait(timeout=30)
                for pid in workers:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
    text = log_path.read_text()
    assert run.returncode == 0, text[-3000:]
    assert "Traceback" not in text and "exited with errors" not in text, text[-3000:]
    assert "storage: reachable again" in text
    study = optuna.load_study(study_name=name, storage=storage)
    trials = _check_counts(study, n)
    for t in trials:  # a FAIL is a surplus start or a trial failed while its heartbeat was lost, retried
        if t.state.name == "FAIL" and "surplus" not in str(t.user_attrs.get("fail_reason")):
            retry = [r for r in trials if r.system_attrs.get("failed_trial") == t.number]
            assert [r.state.name for r in retry] == ["COMPLETE"], (t.number, t.user_attrs.get("fail_reason"))
    client, runs, parents, children = _mlflow_children(mlflow_server, name)
    assert len(parents) == 1 and not [c for c in children if c.info.status == "RUNNING"]
    _assert_parent_finished_with_report(client, parents[0])
    _assert_no_secret(postgres.password, runs, [log_path])
