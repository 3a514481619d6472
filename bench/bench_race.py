"""Issue 22's load test, long version: workers started at the same moment, repeated; MLflow restarts mid-study.

    .venv/bin/python bench/bench_race.py start   --reps 20 --workers 8 --trials 16 --steps 30
    .venv/bin/python bench/bench_race.py restart --reps 10 --workers 4 --trials 10 --steps 90 --down-s 10

One throw-away PostgreSQL cluster (deploy/start_postgres.sh) and one `mlflow server`
(deploy/start_mlflow_server.sh; SQLite backend, or `--mlflow-backend postgresql`: a database in the same
cluster) serve every repetition; each repetition is a new study
whose workers are `deploy/worker.sh` processes started back to back (FS_THREADS=1, default heartbeat).

- `start`: N workers start at once on an empty study (they race to create it, its parent run and
  the experiment).
- `restart`: once a trial has completed and others run, the MLflow server is stopped (SIGTERM to its
  process group: connections are refused), kept down `--down-s` seconds, and started again on the same
  port and store; its start-up adds to the outage, which is measured.

After the workers exit, tests/race_check.py counts what went wrong (worker exits, parents != 1, a
candidate parent left, trials lost or failed, a trial without exactly one FINISHED run, runs left
RUNNING, writes dropped). The 1-minute load average (`os.getloadavg`, what `uptime` prints) is recorded
before and after each repetition; `--load K` adds K busy-loop processes on top of whatever else runs.
Raw results: bench/results/bench_race_<mode>.json (rewritten after every repetition); the worker logs
of a repetition with a problem are kept beside it (bench_race_<mode>_logs/).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from race_check import check_study, problems, race_spec, start_workers, wait_workers  # noqa: E402
from servers import MlflowServer, create_database, start_postgres, stop_postgres, wait_for  # noqa: E402


def _uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def _restart_mid_study(server: MlflowServer, storage: str, name: str, procs: list, down_s: float) -> dict:
    """Stop the server once a trial is COMPLETE and another RUNNING; start it again after `down_s`."""
    import optuna

    from search.storage.connect import make_storage

    rdb = make_storage(storage, heartbeat=False)

    def mid_study() -> bool:
        if all(p.poll() is not None for p in procs):
            return True  # nothing left to interrupt: recorded as restarted=False below
        try:
            trials = optuna.load_study(study_name=name, storage=rdb).get_trials(deepcopy=False)
        except KeyError:
            return False
        states = [t.state.name for t in trials]
        return "COMPLETE" in states and "RUNNING" in states

    wait_for(mid_study, timeout=1800, interval=0.5, what="a completed and a running trial")
    if all(p.poll() is not None for p in procs):
        return {"restarted": False}
    t0 = time.monotonic()
    server.stop()
    time.sleep(down_s)  # the outage itself: the port refuses connections meanwhile
    server.start(timeout=600)
    return {"restarted": True, "down_s": round(time.monotonic() - t0, 1)}


def one_rep(
    args: argparse.Namespace, i: int, work: Path, pg_url: str, server: MlflowServer, keep: Path
) -> dict:
    name = f"race-{args.mode}-{i}"
    spec = race_spec(work, name, n_trials=args.trials, steps=args.steps)
    env = {"FOCALNET_SEARCH_CACHE": str(work / "cache"), "FS_THREADS": "1"}
    load_before, up_before = os.getloadavg()[0], _uptime()
    t0 = time.monotonic()
    logs = work / name
    procs = start_workers(
        args.workers, spec, storage=pg_url, tracking=server.uri, env=env, logs=logs, checkout=args.checkout
    )
    restart: dict[str, Any] = {}
    if args.mode == "restart":
        restart = _restart_mid_study(server, pg_url, name, procs, args.down_s)
    rcs = wait_workers(procs, timeout=3600)
    wall = time.monotonic() - t0
    counts = check_study(
        storage=pg_url,
        tracking=server.uri,
        name=name,
        n_trials=args.trials,
        rcs=rcs,
        logs=sorted(logs.glob("w*.log")),
    )
    bad = problems(counts)
    if bad:  # keep the evidence next to the figures
        (keep / name).mkdir(parents=True, exist_ok=True)
        for log in sorted(logs.glob("w*.log")):
            shutil.copy(log, keep / name / log.name)
    return {
        "rep": i,
        "study": name,
        "wall_s": round(wall, 1),
        "load1_before": round(load_before, 2),
        "load1_after": round(os.getloadavg()[0], 2),
        "uptime_before": up_before,
        "uptime_after": _uptime(),
        **restart,
        "problems": bad,
        **counts,
    }


def summary(reps: list[dict]) -> dict:
    def total(key: str) -> int:
        return int(sum(r.get(key) or 0 for r in reps))

    loads = [r["load1_before"] for r in reps] + [r["load1_after"] for r in reps]
    walls = [r["wall_s"] for r in reps]
    downs = [r["down_s"] for r in reps if r.get("restarted")]
    return {
        "repetitions": len(reps),
        "repetitions_with_problems": sum(bool(r["problems"]) for r in reps),
        "duplicate_parents": int(sum(max(0, r["parents"] - 1) for r in reps)),
        "no_parent": sum(r["parents"] == 0 for r in reps),
        "parent_not_finished": sum(r["parents"] == 1 and r["parent_status"] != "FINISHED" for r in reps),
        "worker_exits": total("worker_exits"),
        "workers": total("workers"),
        "lost_trials": total("lost_trials"),
        "failed_trials": total("failed_trials"),
        "complete_trials": total("complete"),
        "duplicate_runs": total("duplicate_runs"),
        "missing_runs": total("missing_runs"),
        "runs_left_running": total("runs_left_running"),
        "candidates_left": total("candidates_left"),
        "candidates_deleted": total("candidates_deleted"),
        "dropped_writes": total("dropped_writes"),
        "tracebacks": total("tracebacks"),
        "heartbeat_retries": total("heartbeat_retries"),
        "outage_notices": total("outage_notices"),
        "restarts": len(downs),
        "down_s_median": statistics.median(downs) if downs else None,
        "down_s_range": [min(downs), max(downs)] if downs else None,
        "wall_s_median": statistics.median(walls) if walls else None,
        "wall_s_range": [min(walls), max(walls)] if walls else None,
        "load1_median": statistics.median(loads) if loads else None,
        "load1_range": [min(loads), max(loads)] if loads else None,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=["start", "restart"])
    p.add_argument("--reps", type=int, default=20)
    p.add_argument("--workers", type=int, default=8)
    p.add_argument("--trials", type=int, default=16)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--down-s", type=float, default=10.0, help="restart: seconds the server stays stopped")
    p.add_argument("--load", type=int, default=0, help="extra busy-loop processes while it runs")
    p.add_argument(
        "--mlflow-backend",
        choices=["sqlite", "postgresql"],
        default="sqlite",
        help="the tracking server's store: SQLite, or a database in the same PostgreSQL cluster",
    )
    p.add_argument(
        "--checkout",
        type=Path,
        default=ROOT,
        help="source tree the workers run (e.g. an export of an older commit, for a before/after figure)",
    )
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "bench_race_{mode}.json")
    args = p.parse_args()
    out = Path(str(args.out).format(mode=args.mode))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="fs-bench-race-"))
    pg_tmp = Path(tempfile.mkdtemp(prefix="fs-pg-"))  # its own folder: chowned to `postgres` when root
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.load)]
    pg = None
    server = None
    reps: list[dict] = []
    started = {"uptime": _uptime(), "time": time.strftime("%Y-%m-%d %H:%M:%S")}
    try:
        pg = start_postgres(pg_tmp)
        backend = create_database(pg, "mlflow") if args.mlflow_backend == "postgresql" else None
        server = MlflowServer(tmp / "mlflow", backend_uri=backend)
        server.start(timeout=600)
        for i in range(args.reps):
            rep = one_rep(args, i, tmp, pg.url, server, out.with_name(out.stem + "_logs"))
            reps.append(rep)
            print(
                f"[{i + 1}/{args.reps}] {rep['wall_s']:.0f}s load {rep['load1_before']:.1f}->{rep['load1_after']:.1f} "
                f"parents={rep['parents']} exits={rep['worker_exits']} complete={rep['complete']}/{args.trials} "
                f"{'restart down ' + str(rep.get('down_s')) + 's ' if rep.get('restarted') else ''}"
                f"problems={rep['problems'] or 'none'}",
                flush=True,
            )
            result = {
                "command": " ".join(["bench/bench_race.py", *sys.argv[1:]]),
                "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
                "started": started,
                "finished_uptime": _uptime(),
                "summary": summary(reps),
                "reps": reps,
            }
            out.write_text(json.dumps(result, indent=1) + "\n")
    finally:
        for h in hogs:
            h.kill()
            h.wait()
        if server is not None:
            server.stop()
        if pg is not None:
            stop_postgres(pg)
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(pg_tmp, ignore_errors=True)
    print(json.dumps(summary(reps), indent=1))
    print(f"raw results: {out}")


if __name__ == "__main__":
    main()
