"""Tests for search.tracking.runs against a real MLflow SQLite store."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from search.tracking.params import redact_url
from search.tracking.runs import (
    StudyTracker,
    default_artifact_location,
    default_tracking_uri,
    ensure_local_store,
    flatten_config,
    run_name,
)
from search.tracking.store import _quiet_migration_logs

ROOT = Path(__file__).resolve().parents[1]
SECRET = "s3cr3tPW"

FOCAL_CONFIG = {
    "model": {
        "backbone": "focalnet",
        "num_keypoints": 16,
        "focalnet": {
            "img_size": 64,
            "patch_size": 4,
            "embed_dim": 32,
            "depths": [2, 2, 6],
            "focal_levels": [2, 2, 2],
            "contexts": "seq",
            "use_layerscale": False,
        },
        "baseline": {"img_size": 64, "channels": [8, 16, 32]},
        "head_hidden": [256],
        "head_dropout": 0.1,
    },
    "train": {"steps": 400, "lr": 0.002, "seed": 0, "loss": "smooth_l1", "eval_steps": []},
    "data": {"uri": "synthetic:easy", "img_size": 64},
}
BASELINE_CONFIG = {
    **FOCAL_CONFIG,
    "model": {**FOCAL_CONFIG["model"], "backbone": "baseline"},
}


@pytest.fixture(scope="module")
def uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One migrated store per module: schema creation costs ~1 s, so tests share it."""
    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root}/mlflow.db"
    ensure_local_store(uri)
    return uri


def _tracker(uri: str, name: str) -> StudyTracker:
    tracker = StudyTracker(tracking_uri=uri, study_name=name)
    tracker.parent_run_id(
        spec={"study": {"name": name, "storage": f"postgresql://u:{SECRET}@db/optuna"}},
        params={"n_trials": 4, "sampler": {"name": "nsga2", "seed": 1}},
        tags={"fs.sampler": "NSGAIISampler", "fs.data_hash": "abc", "fs.code_version": "deadbeef"},
    )
    return tracker


# ---- pure helpers ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://user:secret@host/db", "postgresql://user:***@host/db"),
        ("postgresql+psycopg2://user:p@ss:w@host:5432/db", "postgresql+psycopg2://user:***@host:5432/db"),
        ("mysql://host/db?user=u&password=secret&x=1", "mysql://host/db?user=u&password=***&x=1"),
        ("https://user:tok@mlflow.example.com", "https://user:***@mlflow.example.com"),
        ("sqlite:///mlruns/mlflow.db", "sqlite:///mlruns/mlflow.db"),
        ("postgresql://user@host/db", "postgresql://user@host/db"),
        ("http://host:5000", "http://host:5000"),
    ],
)
def test_redact_url(url: str, expected: str) -> None:
    assert redact_url(url) == expected


def test_defaults_and_artifact_location(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert default_tracking_uri() == "sqlite:///mlruns/mlflow.db"
    monkeypatch.chdir(tmp_path)
    loc = default_artifact_location(default_tracking_uri(), "my study")
    assert loc == (tmp_path.resolve() / "mlruns" / "artifacts" / "my_study").as_uri()
    assert default_artifact_location("http://localhost:5000") is None


def test_import_is_cheap() -> None:
    code = "import sys, search.tracking.runs, search.report.plots; assert 'mlflow' not in sys.modules; assert 'matplotlib' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[1])


def test_new_store_prints_no_info_lines(tmp_path: Path) -> None:
    # A fresh SQLite store, created the way `run` (so the first `make study`) creates it, with root logging
    # at INFO so that no logger's INFO line could hide: MLflow's own handler and the root's both print.
    db = tmp_path / "mlruns" / "mlflow.db"
    code = f"""
import logging, sqlite3
logging.basicConfig(level=logging.INFO)
import mlflow  # sets its loggers' levels on import
names = ("mlflow.store.db.utils", "mlflow.store.db_migrations", "alembic")
before = [logging.getLogger(n).level for n in names]
from search.tracking.store import ensure_local_store
ensure_local_store("sqlite:///{db}")
tables = {{r[0] for r in sqlite3.connect("{db}").execute("select name from sqlite_master where type='table'")}}
print("tables", "experiments" in tables, "alembic_version" in tables)
print("levels restored", before == [logging.getLogger(n).level for n in names])
"""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert "tables True True" in r.stdout  # the store really was created and migrated here
    assert "levels restored True" in r.stdout
    info = [line for line in (r.stdout + r.stderr).splitlines() if "INFO" in line]
    assert info == []


def test_quiet_migration_logs_keeps_warnings(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("alembic.runtime.migration")
    caplog.set_level(logging.INFO, logger="alembic")  # importing mlflow sets it to WARNING; undone after
    with _quiet_migration_logs():
        logger.info("Context impl SQLiteImpl.")
        logger.warning("a real problem")
    logger.info("after the block")
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.WARNING, "a real problem"),
        (logging.INFO, "after the block"),
    ]


def test_flatten_config_focalnet() -> None:
    flat = flatten_config(FOCAL_CONFIG)
    assert flat["arch.backbone"] == "focalnet"
    assert flat["arch.embed_dim"] == 32
    assert flat["arch.depths"] == "2-2-6"
    assert flat["arch.focal_levels"] == "2-2-2"
    assert flat["arch.contexts"] == "seq"
    assert flat["arch.num_stages"] == 3 and flat["arch.depth"] == 10
    assert flat["arch.head_hidden"] == "256" and flat["arch.head_dropout"] == 0.1
    assert flat["train.lr"] == 0.002 and flat["train.eval_steps"] == "none"
    assert flat["data.uri"] == "synthetic:easy"
    assert not any(k.startswith("baseline.") for k in flat)


def test_flatten_config_baseline() -> None:
    flat = flatten_config(BASELINE_CONFIG)
    assert flat["arch.backbone"] == "baseline"
    assert [k for k in flat if k.startswith("arch.")] == ["arch.backbone"]
    assert flat["baseline.channels"] == "8-16-32"
    assert "train.lr" in flat


def test_run_name() -> None:
    assert run_name(7, FOCAL_CONFIG) == "t007-fn-p4-s3-d32-L2-seq-s0"
    assert run_name(0, BASELINE_CONFIG) == "t000-baseline-s0"
    assert run_name(3, FOCAL_CONFIG, label="wide ctx") == "t003-wide_ctx-s0"


def _with_head(config: dict, **model) -> dict:
    """``config`` as stored today: a ``head`` table instead of the old ``head_hidden``/``head_dropout``."""
    old = {k: v for k, v in config["model"].items() if not k.startswith("head_")}
    return {**config, "model": {**old, **model}}


def test_run_name_and_params_show_the_head() -> None:
    hm = _with_head(FOCAL_CONFIG, head={"kind": "heatmap", "stage": 1, "hidden": [64]})
    assert run_name(7, hm) == "t007-fn-p4-s3-d32-L2-seq-hm1-s0"
    neg = _with_head(FOCAL_CONFIG, head={"kind": "simcc", "stage": -2}, coord_channels=True)
    assert run_name(7, neg) == "t007-fn-p4-s3-d32-L2-seq-simcc1+xy-s0"  # stage counted from the first
    assert run_name(7, _with_head(FOCAL_CONFIG, head={"kind": "pool", "stage": -1})) == run_name(
        7, FOCAL_CONFIG
    )
    assert (
        run_name(7, _with_head(FOCAL_CONFIG, head={"kind": "pool", "stage": 0}))
        == "t007-fn-p4-s3-d32-L2-seq-pool0-s0"
    )
    bl = _with_head(BASELINE_CONFIG, head={"kind": "flatten", "stage": 2}, coord_channels=False)
    assert run_name(0, bl) == "t000-baseline-s0"  # the team's head is the default
    assert (
        run_name(0, _with_head(BASELINE_CONFIG, head={"kind": "heatmap", "stage": -1}))
        == "t000-baseline-hm2-s0"
    )
    for config in (
        hm,
        _with_head(BASELINE_CONFIG, head={"kind": "heatmap", "stage": -1}, coord_channels=True),
    ):
        flat = flatten_config({**config, "model": {**config["model"], "coord_channels": True}})
        assert flat["head.kind"] == "heatmap" and flat["model.coord_channels"] is True
        assert not any(k.startswith(("arch.head", "baseline.head")) for k in flat)
    assert flatten_config(hm)["head.hidden"] == "64"


# ---- MLflow store ---------------------------------------------------------------------------------


def test_parent_is_unique_and_logs_spec(uri: str) -> None:
    tracker = _tracker(uri, "parent-unique")
    first = tracker._parent_id
    # a second tracker (another worker process) and a second call both reuse the parent
    other = _tracker(uri, "parent-unique")
    assert other._parent_id == first
    assert tracker.parent_run_id(spec={}, params={"n_trials": 4}, tags={}) == first
    parents = tracker._find_parents()
    assert [r.info.run_id for r in parents] == [first]
    run = tracker.client.get_run(first)
    assert run.data.tags["fs.role"] == "parent"
    assert run.data.params["sampler.name"] == "nsga2"
    assert tracker.client.get_experiment(run.info.experiment_id).name == "focalnet-search/parent-unique"
    artifacts = [a.path for a in tracker.client.list_artifacts(first)]
    assert "spec.json" in artifacts


def test_parent_duplicates_resolve_to_oldest(uri: str) -> None:
    tracker = StudyTracker(tracking_uri=uri, study_name="dupes")
    old = tracker.client.create_run(tracker.experiment_id, tags={"fs.role": "parent"}, start_time=1000)
    tracker.client.create_run(tracker.experiment_id, tags={"fs.role": "parent"}, start_time=2000)
    assert tracker.parent_run_id(spec={}, params={}, tags={}) == old.info.run_id


def test_children_params_metrics_tags(uri: str) -> None:
    tracker = _tracker(uri, "children")
    parent = tracker._parent_id
    flat = flatten_config(FOCAL_CONFIG)
    rid = tracker.start_trial_run(
        trial_number=7,
        run_name=run_name(7, FOCAL_CONFIG),
        params=flat,
        tags={"fs.role": "search", "fs.seed": 0},
    )
    tracker.log_metrics(rid, {"val.pck_0.1": 0.5, "val.mpe_px": float("nan")}, step=100)
    tracker.log_metrics(rid, {"val.pck_0.1": 0.7}, step=200)
    tracker.end_trial_run(rid, status="FINISHED", tags={"fs.optuna_state": "COMPLETE", "fs.pareto": True})
    run = tracker.client.get_run(rid)
    assert run.info.status == "FINISHED"
    assert run.info.run_name == "t007-fn-p4-s3-d32-L2-seq-s0"
    tags = run.data.tags
    assert tags["mlflow.parentRunId"] == parent
    assert tags["fs.trial_number"] == "7" and tags["fs.role"] == "trial"
    assert tags["fs.trial_role"] == "search" and tags["fs.pareto"] == "true"
    assert tags["fs.optuna_state"] == "COMPLETE"
    params = run.data.params
    assert params["arch.embed_dim"] == "32" and params["arch.depths"] == "2-2-6"
    assert params["train.lr"] == "0.002" and params["arch.contexts"] == "seq"
    metrics = run.data.metrics
    # numeric hyperparameters are also metrics; strings and bools are not
    assert metrics["arch.embed_dim"] == 32 and metrics["train.lr"] == pytest.approx(0.002)
    assert "arch.depths" not in metrics and "arch.use_layerscale" not in metrics
    assert metrics["val.pck_0.1"] == pytest.approx(0.7)
    history = tracker.client.get_metric_history(rid, "val.pck_0.1")
    assert sorted(m.step for m in history) == [100, 200]
    assert tracker.find_trial_run(7) == rid
    assert tracker.find_trial_run(8) is None
    assert [r.info.run_id for r in tracker.child_runs()] == [rid]


def test_restart_same_trial_number_reuses_run(uri: str) -> None:
    tracker = _tracker(uri, "reuse")
    flat = flatten_config(FOCAL_CONFIG)
    rid = tracker.start_trial_run(trial_number=1, run_name="t001", params=flat, tags={})
    tracker.end_trial_run(rid, status="KILLED", tags={})
    again = tracker.start_trial_run(
        trial_number=1, run_name="t001", params={**flat, "train.lr": 0.1, "train.new": 3}, tags={}
    )
    assert again == rid
    run = tracker.client.get_run(rid)
    assert run.info.status == "RUNNING"
    assert run.data.params["train.lr"] == "0.002"  # immutable; conflict recorded
    assert run.data.params["train.new"] == "3"
    assert run.data.tags["fs.param_conflicts"] == "train.lr"
    assert len(tracker.child_runs()) == 1


def test_failed_end_leaves_failed(uri: str) -> None:
    tracker = _tracker(uri, "failed")
    rid = tracker.start_trial_run(trial_number=0, run_name="t000", params={"train.lr": 1.0}, tags={})
    tracker.end_trial_run(
        rid,
        status="FAILED",
        tags={"fs.optuna_state": "FAIL", "fs.failure_reason": "TrainingDiverged at step 30: nan loss"},
    )
    run = tracker.client.get_run(rid)
    assert run.info.status == "FAILED"
    assert run.info.end_time is not None
    assert run.data.tags["fs.failure_reason"].startswith("TrainingDiverged")
    with pytest.raises(ValueError, match="status"):
        tracker.end_trial_run(rid, status="RUNNING")


def test_close_stale_runs(uri: str) -> None:
    tracker = _tracker(uri, "stale")
    dead = tracker.start_trial_run(trial_number=0, run_name="t000", params={}, tags={})
    alive = tracker.start_trial_run(trial_number=1, run_name="t001", params={}, tags={})
    done = tracker.start_trial_run(trial_number=2, run_name="t002", params={}, tags={})
    tracker.end_trial_run(done, status="FINISHED")
    states = {0: "FAIL", 1: "RUNNING", 2: "COMPLETE"}
    closed = tracker.close_stale_runs(None, states)
    assert closed == {dead: "FAILED"}
    get = tracker.client.get_run
    assert get(dead).info.status == "FAILED" and get(dead).data.tags["fs.closed_stale"] == "true"
    assert get(alive).info.status == "RUNNING"
    assert get(done).info.status == "FINISHED"
    # with an explicit live set, a trial Optuna still calls RUNNING but whose worker is gone is closed
    assert tracker.close_stale_runs({5}, states) == {alive: "KILLED"}
    assert get(alive).info.status == "KILLED"
    assert tracker.close_stale_runs(set(), states) == {}


def test_update_pareto_tags(uri: str) -> None:
    tracker = _tracker(uri, "pareto")
    ids = {n: tracker.start_trial_run(trial_number=n, run_name=f"t{n}", params={}, tags={}) for n in range(3)}
    tracker.update_pareto_tags({0, 2}, ids)
    assert [tracker.client.get_run(ids[n]).data.tags["fs.pareto"] for n in range(3)] == [
        "true",
        "false",
        "true",
    ]
    tracker.update_pareto_tags({1})  # run ids looked up from the child runs
    assert [tracker.client.get_run(ids[n]).data.tags["fs.pareto"] for n in range(3)] == [
        "false",
        "true",
        "false",
    ]


def test_password_never_logged(uri: str, tmp_path: Path) -> None:
    storage = f"postgresql://optuna:{SECRET}@db.example.com:5432/studies"
    tracker = StudyTracker(tracking_uri=uri, study_name="secret")
    assert SECRET not in repr(StudyTracker(tracking_uri=f"http://u:{SECRET}@h", study_name="x"))
    spec_file = tmp_path / "study.toml"
    spec_file.write_text(f'[study]\nstorage = "{storage}"\n')
    parent = tracker.parent_run_id(
        spec={"study": {"storage": storage}},
        params={"storage": storage, "alt": f"mysql://h/db?password={SECRET}"},
        tags={"fs.storage": storage, "fs.note": f"connect {storage} now"},
        spec_path=spec_file,
    )
    rid = tracker.start_trial_run(
        trial_number=0,
        run_name="t000",
        params={"data.uri": f"https://u:{SECRET}@host/data.npz"},
        tags={"fs.storage": storage},
    )
    tracker.end_trial_run(rid, status="FAILED", tags={"fs.failure_reason": f"could not connect to {storage}"})
    runs = tracker._search("")
    assert {r.info.run_id for r in runs} == {parent, rid}
    for run in runs:
        for value in [*run.data.params.values(), *run.data.tags.values(), run.info.run_name]:
            assert SECRET not in value
    assert tracker.client.get_run(parent).data.params["storage"] == (
        "postgresql://optuna:***@db.example.com:5432/studies"
    )
    for name in ("spec.json", "spec.toml"):
        local = tracker.client.download_artifacts(parent, name, str(tmp_path / "dl"))
        text = Path(local).read_text()
        assert SECRET not in text and "***" in text
    json.loads((tmp_path / "dl" / "spec.json").read_text())


def test_log_artifact(uri: str, tmp_path: Path) -> None:
    tracker = _tracker(uri, "artifacts")
    rid = tracker.start_trial_run(trial_number=0, run_name="t000", params={}, tags={})
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.txt").write_text("a")
    (tmp_path / "b.txt").write_text("b")
    tracker.log_artifact(rid, tmp_path / "b.txt")
    tracker.log_artifact(rid, tmp_path / "d", "plots")
    paths = {a.path for a in tracker.client.list_artifacts(rid)} | {
        a.path for a in tracker.client.list_artifacts(rid, "plots")
    }
    assert {"b.txt", "plots/a.txt"} <= paths


def test_start_requires_parent(uri: str) -> None:
    tracker = StudyTracker(tracking_uri=uri, study_name=f"no-parent-{time.time_ns()}")
    with pytest.raises(RuntimeError, match="parent_run_id"):
        tracker.start_trial_run(trial_number=0, run_name="x", params={}, tags={})


# ---- tracking errors: what is retried, what waits, what is given up ---------------------------------

_REFUSED = (
    "API request to http://127.0.0.1:5000/api/2.0/mlflow/runs/create failed with exception "
    "HTTPConnectionPool(host='127.0.0.1', port=5000): Max retries exceeded with url: /api/2.0/mlflow/runs/create "
    "(Caused by NewConnectionError(\"HTTPConnection(host='127.0.0.1', port=5000): Failed to establish a new "
    'connection: [Errno 111] Connection refused"))'
)
_SERVER_ERROR = (
    "API request to http://127.0.0.1:5030/api/2.0/mlflow/runs/log-batch failed with exception "
    "HTTPConnectionPool(host='127.0.0.1', port=5030): Max retries exceeded with url: "
    "/api/2.0/mlflow/runs/log-batch (Caused by ResponseError('too many 500 error responses'))"
)
_DUPLICATE = (
    '(psycopg2.errors.UniqueViolation) duplicate key value violates unique constraint "param_pk" '
    "(Background on this error at: https://sqlalche.me/e/20/gkpj)"
)
# What an MLflow server on SQLite answered when 8 workers logged the parent's params at once (bench_race).
_DUPLICATE_SQLITE = (
    "BAD_REQUEST: (sqlite3.IntegrityError) UNIQUE constraint failed: params.key, params.run_uuid\n"
    '[SQL: INSERT INTO params ("key", value, run_uuid) VALUES (?, ?, ?)]\n'
    "(Background on this error at: https://sqlalche.me/e/21/gkpj)"
)


def test_tracking_errors_are_classified() -> None:
    """A refused connection waits for the server; a server error or a duplicate row is retried in place;
    a bad value (or a port number that looks like a status code) is not retried."""
    from mlflow.exceptions import MlflowException

    from search.tracking.store import error_reason, is_retryable, is_unreachable

    refused, server, duplicate, duplicate_sqlite = (
        MlflowException(m) for m in (_REFUSED, _SERVER_ERROR, _DUPLICATE, _DUPLICATE_SQLITE)
    )
    bad = MlflowException("Changing param values is not allowed. Param with key='lr' was already logged")
    missing = MlflowException("Run with id=503 not found at http://127.0.0.1:5030 (code 504 in the docs)")
    assert is_unreachable(refused) and is_retryable(refused)
    assert not is_unreachable(server) and is_retryable(server)
    assert not is_unreachable(duplicate) and is_retryable(duplicate) and is_retryable(duplicate_sqlite)
    assert not is_retryable(bad) and not is_retryable(missing)
    assert error_reason(refused) == "MlflowException: connection refused"
    assert SECRET not in error_reason(ValueError(f"postgresql://u:{SECRET}@h/db unusable"))


def test_retry_rereads_after_an_integrity_error_and_gives_up_on_a_bad_value() -> None:
    from mlflow.exceptions import MlflowException

    from search.tracking.store import retry

    calls: list[int] = []

    def write() -> str:
        calls.append(1)
        if len(calls) == 1:  # another worker inserted the same row first
            raise MlflowException(_DUPLICATE)
        return "logged"

    assert retry(write, what="log params") == "logged" and len(calls) == 2
    calls.clear()

    def bad() -> None:
        calls.append(1)
        raise MlflowException("Changing param values is not allowed")

    with pytest.raises(MlflowException):
        retry(bad, what="log params")
    assert len(calls) == 1
