"""Many workers joining one study at once (issue 22): one parent run, and no tracking error kills a worker.

Processes against real servers: PostgreSQL (Optuna storage) and `mlflow server`, both started with the
deploy/ scripts. The long, repeated version with MLflow server restarts is bench/bench_race.py.
"""

from __future__ import annotations

import os
from pathlib import Path

import optuna
import pytest
from conftest import wait_for
from harness_utils import ROOT
from race_check import check_study, problems, race_spec, start_workers, wait_workers
from servers import MlflowServer, free_port
from zygote import spawn

pytestmark = pytest.mark.slow

_CLAIM = """
import os, sys, time
from pathlib import Path
import optuna
from search.storage.connect import make_storage
from search.study.lifecycle import StudyParentClaim
from search.tracking.runs import StudyTracker
name, ready, n = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
study = optuna.load_study(study_name=name, storage=make_storage(os.environ["FS_STORAGE"], heartbeat=False))
tracker = StudyTracker(tracking_uri=os.environ["FS_TRACKING_URI"], study_name=name)
tracker.experiment_id  # connections open before the barrier, so the claims below collide
(ready / str(os.getpid())).touch()
while len(list(ready.iterdir())) < n:
    time.sleep(0.002)  # start together
run_id = tracker.claim_parent(
    StudyParentClaim(study), spec={"study": {"name": name}}, params={"study.name": name, "study.n_trials": 4},
    tags={"fs.note": "race"},
)
assert tracker.flush(120) == 0
print(run_id)
"""

_PARAMS = """
import os, sys, time
from pathlib import Path
from search.tracking import store
from search.tracking.runs import StudyTracker
run_id, ready, n = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
client = StudyTracker(tracking_uri=os.environ["FS_TRACKING_URI"], study_name="params").client
client.get_run(run_id)
(ready / str(os.getpid())).touch()
while len(list(ready.iterdir())) < n:
    time.sleep(0.002)  # start together
store.log_params_once(client, run_id, {f"p{i:02d}": str(i) for i in range(60)})
"""


def _race(script: str, args: list[str], n: int, ready: Path, env: dict[str, str]) -> list[str]:
    """Run `script` in `n` processes (forked from the test zygote) that meet at a barrier; return their outputs."""
    ready.mkdir()
    full = {**os.environ, "PYTHONPATH": str(ROOT), **env}
    procs = [spawn([*args, str(ready), str(n)], Path.cwd(), full, code=script) for _ in range(n)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0] * n, [err[-2000:] for _, err in outs]
    return [out.strip() for out, _ in outs]


def test_processes_racing_to_create_the_parent_run_agree_on_one(
    tmp_path: Path, postgres, mlflow_server: str
) -> None:
    """6 processes claim the parent at the same moment, 3 times: one parent each time, every other
    candidate deleted, the storage's claim names it, its params logged once without conflicts."""
    from mlflow import MlflowClient
    from mlflow.entities import ViewType

    from search.storage.connect import make_storage

    n = 6
    client = MlflowClient(mlflow_server)
    env = {"FS_STORAGE": postgres.url, "FS_TRACKING_URI": mlflow_server}
    for round_ in range(3):
        name = f"claim-race-{round_}"
        storage = make_storage(postgres.url, heartbeat=False)
        study = optuna.create_study(study_name=name, storage=storage, directions=["maximize"])
        ids = _race(_CLAIM, [name], n, tmp_path / f"ready-{round_}", env)
        assert len(set(ids)) == 1, ids
        exp = client.get_experiment_by_name(f"focalnet-search/{name}")
        active = client.search_runs([exp.experiment_id])
        assert [(r.info.run_id, r.data.tags["fs.role"]) for r in active] == [(ids[0], "parent")]
        every = client.search_runs([exp.experiment_id], run_view_type=ViewType.ALL)
        losers = [r for r in every if r.info.run_id != ids[0]]
        assert all(r.info.lifecycle_stage == "deleted" for r in losers)
        assert study._storage.get_study_system_attrs(study._study_id)["fs:mlflow_parent"] == ids[0]
        parent = client.get_run(ids[0])
        assert parent.info.status == "RUNNING"
        assert parent.data.params == {"study.name": name, "study.n_trials": "4"}
        assert "fs.param_conflicts" not in parent.data.tags


def test_a_param_logged_twice_with_the_same_value_is_success(tmp_path: Path, mlflow_server: str) -> None:
    """4 processes log the same 60 params to one run at once (the rows collide in the server's database):
    all succeed, each param is stored once; re-logging is a no-op, a different value is a recorded conflict."""
    from mlflow import MlflowClient

    from search.tracking import store

    client = MlflowClient(mlflow_server)
    exp = store.get_or_create_experiment(client, "focalnet-search/params", artifact_location=None, tags={})
    expected = {f"p{i:02d}": str(i) for i in range(60)}
    for round_ in range(2):
        run_id = client.create_run(exp).info.run_id
        _race(_PARAMS, [run_id], 4, tmp_path / f"ready-{round_}", {"FS_TRACKING_URI": mlflow_server})
        run = client.get_run(run_id)
        assert run.data.params == expected
        assert "fs.param_conflicts" not in run.data.tags
    store.log_params_once(client, run_id, expected)  # the same values again: success, nothing recorded
    assert "fs.param_conflicts" not in client.get_run(run_id).data.tags
    store.log_params_once(client, run_id, {**expected, "p07": "other"})
    run = client.get_run(run_id)
    assert run.data.params["p07"] == "7" and run.data.tags["fs.param_conflicts"] == "p07"


def test_worker_starts_while_the_tracking_server_refuses_connections(tmp_path: Path, postgres) -> None:
    """The MLflow server is not up yet when the worker starts (connection refused): the worker trains,
    says so once, and once the server is up every run is there: one parent, one FINISHED run per trial."""
    server = MlflowServer(tmp_path / "mlflow", port=free_port())
    spec = race_spec(tmp_path, "refused", n_trials=3, steps=30)
    env = {"FOCALNET_SEARCH_CACHE": str(tmp_path / "cache"), "FS_THREADS": "1",
           "FOCALNET_SEARCH_TRACKING_WAIT_S": "600"}  # fmt: skip
    procs = start_workers(1, spec, storage=postgres.url, tracking=server.uri, env=env, logs=tmp_path / "logs")
    log = tmp_path / "logs" / "w0.log"
    try:
        wait_for(
            lambda: "MLflow cannot take writes now" in log.read_text() or procs[0].poll() is not None,
            timeout=300,
            what="the worker to find the tracking server down",
        )
        assert procs[0].poll() is None, log.read_text()[-3000:]
        server.start()
        rcs = wait_workers(procs, timeout=900)
        text = log.read_text()
        assert rcs == [0], text[-3000:]
        assert text.count("MLflow cannot take writes now") == 1 and "MLflow caught up" in text, text[-3000:]
        counts = check_study(
            storage=postgres.url, tracking=server.uri, name="refused", n_trials=3, rcs=rcs, logs=[log]
        )
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=30)
        server.stop()
    assert problems(counts) == [], counts
    assert counts["child_runs"] == counts["complete"] == 3


def test_workers_started_at_once_leave_one_parent_and_one_run_per_trial(
    tmp_path: Path, postgres, mlflow_server: str
) -> None:
    """The short load test: 4 deploy/worker.sh processes started at the same moment on one study."""
    n_trials = 6
    spec = race_spec(tmp_path, "race-short", n_trials=n_trials, steps=30)
    env = {"FOCALNET_SEARCH_CACHE": str(tmp_path / "cache"), "FS_THREADS": "1"}
    procs = start_workers(
        4, spec, storage=postgres.url, tracking=mlflow_server, env=env, logs=tmp_path / "logs"
    )
    rcs = wait_workers(procs, timeout=900)
    logs = sorted((tmp_path / "logs").glob("w*.log"))
    counts = check_study(
        storage=postgres.url, tracking=mlflow_server, name="race-short", n_trials=n_trials, rcs=rcs, logs=logs
    )
    assert problems(counts) == [], (counts, [p.read_text()[-1500:] for p in logs])
    assert counts["complete"] == counts["child_runs"] == n_trials
