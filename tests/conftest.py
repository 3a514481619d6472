"""Shared fixtures: throw-away PostgreSQL cluster and MLflow tracking server (real servers, loopback only).

Both are started with the scripts in deploy/ (the same commands the README gives) and are stopped, with
their temp dirs removed, in teardown even when a test fails. Without PostgreSQL binaries the PostgreSQL
tests skip, except with CI=true where a missing server is an error.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

# A session started with SIGINT ignored (nohup, or a background job of a non-interactive shell) would
# hand SIG_IGN to every child process: the Ctrl-C tests would see runs that cannot be interrupted. exec
# resets a handler to the default but keeps SIG_IGN, so a handler here gives children the default back.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
_IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
# One torch thread for every `python -m search` the tests start (as tests/test_scaleout.py's workers have):
# xdist already runs two tests on two cores, and a second thread on these tiny models mostly waits. The
# automatic choice is tested on its own (tests/test_faults.py, choose_threads).
os.environ.setdefault("FS_THREADS", "1")

# `make test` runs pytest-xdist workers with `--dist loadgroup`. Tests that share an expensive or stateful
# module/session fixture run on one worker, in file order, so it is built once and the tests that build on
# its state (the quick study grows from 4 to 6 trials, the shared MLflow store) see what a serial run sees.
_XDIST_GROUPS = {
    "quick_run": "quick-study",  # test_harness_e2e: one study, read and then extended
    "postgres": "servers",  # one PostgreSQL cluster and one MLflow server, not one per worker
    "mlflow_server": "servers",
}
_XDIST_MODULE_GROUPS = {"test_tracking.py": "tracking-store"}  # its `uri` fixture: one store, shared


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook, which reads the groups
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Group tests for xdist (above); in xdist workers, slow ones first so short ones fill the gaps at the end."""
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        group = next((g for f, g in _XDIST_GROUPS.items() if f in names), None)
        if group is None and "uri" in names:
            group = _XDIST_MODULE_GROUPS.get(item.path.name)
        if group is not None:
            item.add_marker(pytest.mark.xdist_group(group))
    if hasattr(config, "workerinput"):  # an xdist worker; a serial run keeps the file order
        # Stable: the order inside a module, and so inside a group, is kept.
        items.sort(key=lambda item: item.get_closest_marker("slow") is None)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(condition, *, timeout: float, interval: float = 0.2, what: str = "condition"):
    """Poll `condition()` until it returns something truthy (returned) or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


@dataclass(frozen=True)
class Postgres:
    url: str  # with the password: only ever passed to workers, never logged
    password: str
    port: int
    pgdata: Path


def postgres_env(pg: Postgres) -> dict[str, str]:
    """The environment deploy/start_postgres.sh and stop_postgres.sh need for this cluster."""
    return {
        **os.environ,
        "PGDATA": str(pg.pgdata),
        "PGPORT": str(pg.port),
        "FS_DB_PASSWORD": pg.password,
        "FS_DB_USER": "fs_worker",
        "FS_DB_NAME": "fs_test",
    }


def postgres_ctl(pg: Postgres, action: str) -> None:
    """Stop (`pg_ctl stop -m fast`) or start the cluster again with the deploy scripts (a real outage)."""
    script = {"stop": "stop_postgres.sh", "start": "start_postgres.sh"}[action]
    env = {**postgres_env(pg), "PG_STOP_MODE": "fast"}
    r = subprocess.run([str(DEPLOY / script)], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, f"{script}: {r.stderr[-2000:]}"


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """A fresh PostgreSQL cluster on a free loopback port, a role with a password and a database."""
    if shutil.which("initdb") is None or shutil.which("pg_ctl") is None:
        if _IN_CI:
            pytest.fail("CI=true but PostgreSQL (initdb, pg_ctl) is not on PATH")
        pytest.skip("PostgreSQL binaries (initdb, pg_ctl) not found")
    # mkdtemp in /tmp (not pytest's 0700 root dir): the server may run as the `postgres` user.
    tmp = Path(tempfile.mkdtemp(prefix="fs-pg-"))
    pgdata = tmp / "data"
    password = "pw-" + secrets.token_hex(8) + "-S3cret"
    port = free_port()
    env = {
        **os.environ,
        "PGDATA": str(pgdata),
        "PGPORT": str(port),
        "FS_DB_PASSWORD": password,
        "FS_DB_USER": "fs_worker",
        "FS_DB_NAME": "fs_test",
    }
    try:
        r = subprocess.run(
            [str(DEPLOY / "start_postgres.sh")], env=env, capture_output=True, text=True, timeout=180
        )
        if r.returncode != 0:
            log = pgdata / "server.log"
            detail = log.read_text()[-2000:] if log.exists() else ""
            pytest.fail(f"deploy/start_postgres.sh failed ({r.returncode}): {r.stderr[-2000:]}\n{detail}")
        assert password not in r.stdout + r.stderr
        yield Postgres(
            url=f"postgresql://fs_worker:{password}@127.0.0.1:{port}/fs_test",
            password=password,
            port=port,
            pgdata=pgdata,
        )
    finally:
        if (pgdata / "postmaster.pid").exists():
            subprocess.run(
                [str(DEPLOY / "stop_postgres.sh")],
                env={**env, "PG_STOP_MODE": "immediate"},
                capture_output=True,
                timeout=60,
            )
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="session")
def mlflow_server() -> Iterator[str]:
    """`mlflow server` on 127.0.0.1:<free port>, SQLite backend and artifact root in a temp dir; yields its URI."""
    tmp = Path(tempfile.mkdtemp(prefix="fs-mlflow-"))
    port = free_port()
    env = {
        **os.environ,
        "MLFLOW_BACKEND_URI": f"sqlite:///{tmp / 'mlflow.db'}",
        "MLFLOW_ARTIFACTS": str(tmp / "artifacts"),
        "MLFLOW_HOST": "127.0.0.1",
        "MLFLOW_PORT": str(port),
        "MLFLOW_WORKERS": "2",
        "MLFLOW_PYTHON": sys.executable,
    }
    log = open(tmp / "server.log", "wb")  # noqa: SIM115 (closed in teardown)
    proc = subprocess.Popen(
        [str(DEPLOY / "start_mlflow_server.sh")],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    uri = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(
                f"mlflow server exited {proc.returncode}: {(tmp / 'server.log').read_text()[-2000:]}"
            )
        try:
            with urllib.request.urlopen(f"{uri}/health", timeout=2) as resp:
                return resp.status == 200
        except OSError:
            return False

    try:
        wait_for(healthy, timeout=180, interval=0.5, what="mlflow server /health")
        yield uri
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=20)
        log.close()
        shutil.rmtree(tmp, ignore_errors=True)
