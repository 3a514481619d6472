"""Throw-away PostgreSQL clusters and MLflow tracking servers, started with the deploy/ scripts.

Used by the fixtures in conftest.py and by bench/bench_race.py, so the tests and the benchmark run the
same commands the README gives. Loopback only; every wait polls a condition with a deadline.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"


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


def start_postgres(tmp: Path) -> Postgres:
    """initdb + start a cluster under `tmp` on a free loopback port (deploy/start_postgres.sh)."""
    password, port = "pw-" + secrets.token_hex(8) + "-S3cret", free_port()
    url = f"postgresql://fs_worker:{password}@127.0.0.1:{port}/fs_test"
    pg = Postgres(url=url, password=password, port=port, pgdata=tmp / "data")
    r = subprocess.run(
        [str(DEPLOY / "start_postgres.sh")], env=postgres_env(pg), capture_output=True, text=True, timeout=180
    )
    if r.returncode != 0:
        log = pg.pgdata / "server.log"
        detail = log.read_text()[-2000:] if log.exists() else ""
        raise RuntimeError(f"deploy/start_postgres.sh failed ({r.returncode}): {r.stderr[-2000:]}\n{detail}")
    assert password not in r.stdout + r.stderr
    return pg


def create_database(pg: Postgres, name: str) -> str:
    """Create database `name` owned by the cluster's role (e.g. an MLflow backend); returns its URL."""
    psql = shutil.which("psql") or "psql"
    cmd = [psql, "-h", str(pg.pgdata), "-p", str(pg.port), "-U", "postgres", "-d", "postgres", "-v",
           "ON_ERROR_STOP=1", "-qc", f'CREATE DATABASE "{name}" OWNER "fs_worker"']  # fmt: skip
    if os.getuid() == 0:  # the superuser is trusted on the socket only as the `postgres` OS user
        cmd = ["runuser", "-u", "postgres", "--", *cmd]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise RuntimeError(f"create database {name}: {r.stderr[-1000:]}")
    # SQLAlchemy 2.1 maps postgresql:// to psycopg 3; the project installs psycopg2
    return pg.url.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg2://", 1) + f"/{name}"


def stop_postgres(pg: Postgres, mode: str = "immediate") -> None:
    if (pg.pgdata / "postmaster.pid").exists():
        subprocess.run(
            [str(DEPLOY / "stop_postgres.sh")],
            env={**postgres_env(pg), "PG_STOP_MODE": mode},
            capture_output=True,
            timeout=60,
        )


class MlflowServer:
    """`mlflow server` (deploy/start_mlflow_server.sh) on 127.0.0.1, artifacts (and by default a SQLite backend) in `root`.

    It can be stopped and started again on the same port and store (a restart), or started late (a
    server that refuses connections first).

    Args:
        root: folder for the backend DB, artifacts and the server log.
        port: the port (default: a free one).
        workers: uvicorn workers.
        backend_uri: the backend store (default: SQLite in `root`), e.g. a PostgreSQL database URL.
    """

    def __init__(
        self, root: Path, *, port: int | None = None, workers: int = 2, backend_uri: str | None = None
    ) -> None:
        self.root = root
        self.backend_uri = backend_uri or f"sqlite:///{root / 'mlflow.db'}"
        self.port = port or free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.workers = workers
        self.proc: subprocess.Popen | None = None
        self.starts = 0
        root.mkdir(parents=True, exist_ok=True)

    def _env(self) -> dict[str, str]:
        return {
            **os.environ,
            "MLFLOW_BACKEND_URI": self.backend_uri,
            "MLFLOW_ARTIFACTS": str(self.root / "artifacts"),
            "MLFLOW_HOST": "127.0.0.1",
            "MLFLOW_PORT": str(self.port),
            "MLFLOW_WORKERS": str(self.workers),
            "MLFLOW_PYTHON": sys.executable,
        }

    def healthy(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"mlflow server exited {self.proc.returncode}: {self.log_tail()}")
        try:
            with urllib.request.urlopen(f"{self.uri}/health", timeout=2) as resp:
                return resp.status == 200
        except OSError:
            return False

    def log_tail(self) -> str:
        path = self.root / "server.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""

    def start(self, *, wait: bool = True, timeout: float = 300) -> None:
        """Start the server (appending to server.log); with `wait`, return once /health answers."""
        with open(self.root / "server.log", "ab") as log:
            self.proc = subprocess.Popen(
                [str(DEPLOY / "start_mlflow_server.sh")],
                env=self._env(),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.starts += 1
        if wait:
            wait_for(self.healthy, timeout=timeout, interval=0.5, what="mlflow server /health")

    def stop(self) -> None:
        """SIGTERM the server's process group (SIGKILL after 20 s); the port refuses connections after."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=20)
        # uvicorn's worker processes share the group; wait until the port is free again
        wait_for(lambda: not self._listening(), timeout=30, what="the mlflow port to close")

    def _listening(self) -> bool:
        with socket.socket() as s:
            s.settimeout(1)
            return s.connect_ex(("127.0.0.1", self.port)) == 0
