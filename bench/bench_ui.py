"""`search ui` start-up: time to a 200 on /health and processes, `mlflow ui` vs the mode `search ui` runs.

    .venv/bin/python bench/bench_ui.py [--reps 3]

Modes, alternated on one migrated SQLite store: `mlflow ui` (MLflow's default server: uvicorn workers, a
job runner, huey consumers) and `mlflow server --workers 1` with `MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false`
(what `search ui` runs). Processes are counted in the server's process group 3 s after /health answers;
the 1-minute load average is printed beside every figure.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from search.tools.ui import _healthy  # noqa: E402  (the probe `search ui` itself waits on)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def group_size(pgid: int) -> int:
    n = 0
    for d in os.listdir("/proc"):
        if d.isdigit():
            with contextlib.suppress(OSError):  # the process ended meanwhile
                n += os.getpgid(int(d)) == pgid
    return n


def healthy(port: int) -> bool:
    return _healthy(f"http://127.0.0.1:{port}")


def start_to_health(mode: str, tmp: str) -> tuple[float, int]:
    port = free_port()
    common = ["--backend-store-uri", f"sqlite:///{tmp}/mlflow.db", "--default-artifact-root", f"{tmp}/art",
              "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip
    env = dict(os.environ)
    if mode == "mlflow ui":
        cmd = [sys.executable, "-m", "mlflow", "ui", *common]
    else:
        cmd = [sys.executable, "-m", "mlflow", "server", *common, "--workers", "1"]
        env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
    t0 = time.time()
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        while not healthy(port) and time.time() - t0 < 300:
            time.sleep(0.2)
        dt = time.time() - t0
        time.sleep(3)  # let every child the server starts appear before counting
        return dt, group_size(proc.pid)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reps", type=int, default=3)
    args = p.parse_args()
    tmp = tempfile.mkdtemp(prefix="bench-ui-")
    migrate = (
        f"from mlflow import MlflowClient; MlflowClient('sqlite:///{tmp}/mlflow.db').search_experiments()"
    )
    subprocess.run([sys.executable, "-c", migrate], check=True, capture_output=True)
    for rep in range(args.reps):
        for mode in ("mlflow ui", "server --workers 1, no job runner"):
            dt, n = start_to_health(mode, tmp)
            print(
                f"rep {rep} {mode:<34} /health after {dt:5.1f} s, {n} processes (load1 {os.getloadavg()[0]:.2f})"
            )


if __name__ == "__main__":
    main()
