"""Shared fixtures: throw-away PostgreSQL cluster and MLflow tracking server (real servers, loopback only).

Both are started with the scripts in deploy/ (the same commands the README gives; helpers in
tests/servers.py, shared with bench/bench_race.py) and are stopped, with their temp dirs removed, in
teardown even when a test fails. Without PostgreSQL binaries the PostgreSQL
tests skip, except with CI=true where a missing server is an error.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from servers import (  # noqa: F401 (re-exported: tests import them from conftest)
    DEPLOY,
    ROOT,
    MlflowServer,
    Postgres,
    free_port,
    postgres_env,
    start_postgres,
    stop_postgres,
    wait_for,
)

# A session started with SIGINT ignored (nohup, or a background job of a non-interactive shell) would
# hand SIG_IGN to every child process: the Ctrl-C tests would see runs that cannot be interrupted. exec
# resets a handler to the default but keeps SIG_IGN, so a handler here gives children the default back.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

_IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
# One torch thread for every `python -m search` the tests start (as tests/test_scaleout.py's workers have):
# xdist already runs two tests on two cores, and a second thread on these tiny models mostly waits. The
# automatic choice is tested on its own (tests/test_faults.py, choose_threads).
os.environ.setdefault("FS_THREADS", "1")


def pytest_configure(config: pytest.Config) -> None:
    """One torch thread in the pytest processes too, for the tests that train and export in-process.

    With torch's default (a thread per core, OpenMP spinning while it waits) two xdist workers on two
    cores burn each other's time: measured on the in-process model, export and training tests, 1 thread
    took 91-97 CPU-s against 119-125 with the default (README, "Tests").
    The xdist controller runs no tests, so it does not import torch for this.
    """
    if config.getoption("numprocesses", None) and not hasattr(config, "workerinput"):
        return
    import torch

    torch.set_num_threads(1)


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
    pg = None
    try:
        try:
            pg = start_postgres(tmp)
        except RuntimeError as e:
            pytest.fail(str(e))
        yield pg
    finally:
        if pg is not None:
            stop_postgres(pg)
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="session")
def mlflow_server() -> Iterator[str]:
    """`mlflow server` on 127.0.0.1:<free port>, SQLite backend and artifact root in a temp dir; yields its URI."""
    tmp = Path(tempfile.mkdtemp(prefix="fs-mlflow-"))
    server = MlflowServer(tmp)
    try:
        server.start(timeout=180)
        yield server.uri
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
