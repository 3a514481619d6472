"""`python -m search ui`: the lightest MLflow server that shows the studies, stopped with its whole tree.

MLflow 3.17's default server starts uvicorn with 4 workers plus a job runner with its huey consumers (~15
processes; 23–38 s to a healthy /health on 2 loaded cores). The runs table, metrics, plots and artifacts
need none of that: `mlflow server --workers 1` with `MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false` is two
processes and answered /health in 6–12 s on the same machine (README, "search ui").

The server runs in its own session, its output goes to `<store dir>/ui.log`; Ctrl-C or SIGTERM stops the
whole process group quietly (SIGTERM, then SIGKILL after 10 s), so nothing is left re-parented to init.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from mlflow import MlflowClient

from search.tracking.store import EXPERIMENT_PREFIX, _sqlite_path, ensure_local_store, experiment_name

__all__ = ["runs_table_url", "serve_ui"]

_STOP_GRACE_S = 10.0


def runs_table_url(base: str, experiment_id: str) -> str:
    """The study's runs table (MLflow 3 opens an experiment on its GenAI overview, where no runs show)."""
    return f"{base}/#/experiments/{experiment_id}/runs?workflowType=machine_learning"


def _experiments(uri: str, name: str | None) -> list[tuple[str, str]]:
    """(experiment name, id) of the study (or of every focalnet-search study) in the store."""
    client = MlflowClient(tracking_uri=uri)
    if name is not None:
        exp = client.get_experiment_by_name(experiment_name(name))
        return [(exp.name, exp.experiment_id)] if exp is not None else []
    exps = client.search_experiments(filter_string=f"name LIKE '{EXPERIMENT_PREFIX}%'", max_results=1000)
    return sorted((e.name, e.experiment_id) for e in exps)


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def _stop_group(proc: subprocess.Popen[Any]) -> None:
    """SIGTERM the server's process group, SIGKILL what is left after a grace period, reap."""
    for sig, wait_s in ((signal.SIGTERM, _STOP_GRACE_S), (signal.SIGKILL, _STOP_GRACE_S)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
            continue
        try:  # the leader is gone; anything else left in its group gets the same signal
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            break


def serve_ui(*, uri: str, name: str | None, host: str, port: int) -> int:
    """Serve the MLflow UI for a local store until Ctrl-C or SIGTERM; returns the exit code.

    Args:
        uri: the tracking URI (``sqlite:///…``).
        name: a study name, for its direct link; None lists every study's.
        host: address to bind (default 127.0.0.1: the server has no authentication).
        port: TCP port.
    """
    ensure_local_store(uri)
    db = _sqlite_path(uri)
    folder = db.expanduser().resolve().parent if db is not None else Path("mlruns").resolve()
    cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", uri,
           "--default-artifact-root", str(folder / "artifacts"), "--host", host, "--port", str(port),
           "--workers", "1"]  # fmt: skip
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    base = f"http://{host}:{port}"

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_term)
    log_path = folder / "ui.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        links = [(n, runs_table_url(base, i)) for n, i in _experiments(uri, name)]
        print(f"MLflow UI starting on {base} (store {uri}, log {log_path}); Ctrl-C to stop", flush=True)
        while not _healthy(base):
            if proc.poll() is not None:
                tail = log_path.read_text(errors="replace").strip().splitlines()[-1:] or ["no output"]
                print(
                    f"error: the MLflow server exited with code {proc.returncode}: {tail[0]}", file=sys.stderr
                )
                return 1
            time.sleep(0.3)
        print(f"ready: {base}", flush=True)
        for exp_name, link in links:
            print(f"  {exp_name}: {link}", flush=True)
        if name is not None and not links:
            print(f"  no experiment for study {name!r} in this store yet", flush=True)
        proc.wait()
        return 0
    except KeyboardInterrupt:
        return 0
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not leave the server behind
        _stop_group(proc)
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, signal.default_int_handler)
