"""Scale-out figures: trials/hour with 1, 2 and 4 local workers, and recovery time after a SIGKILL.

    .venv/bin/python bench/bench_workers.py [--trials 8] [--steps 100] [--no-recovery]

Throughput: `python -m search run SPEC --jobs J` (journal storage, `--tracking-uri none`, threads per
worker = cores // J) on a tiny studies/quick.toml variant with early stopping off. Two numbers per J:
end-to-end (the whole command, including process start-up and data loading) and steady state (first trial
start to last trial end, from the trial timestamps in storage).

Recovery: a throw-away PostgreSQL cluster (deploy/start_postgres.sh), two deploy/worker.sh workers with
FOCALNET_SEARCH_HEARTBEAT_S=1 / FOCALNET_SEARCH_GRACE_S=3, one SIGKILLed mid-trial. Reported: kill → the
stale trial is FAIL, and kill → its retry starts (both from storage timestamps).

The machine's cores are shared with whatever else runs: read the figures as relative.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from harness_utils import write_spec  # noqa: E402


def spec_dict(name: str, n_trials: int, steps: int) -> dict:
    spec = tomllib.loads((ROOT / "studies" / "quick.toml").read_text())
    spec["study"].update(name=name, n_trials=n_trials)
    spec["study"].pop("timeout_min", None)
    spec["train"].update(steps=steps, eval_every=steps)
    spec["early_stopping"]["enabled"] = False
    return spec


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def poll(cond, timeout: float, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(interval)
    raise TimeoutError("bench: condition not met in time")


def throughput(tmp: Path, jobs: int, n_trials: int, steps: int, env: dict) -> dict:
    import optuna

    from search.storage.connect import make_storage

    work = tmp / f"jobs{jobs}"
    work.mkdir()
    spec = write_spec(work / "bench.toml", spec_dict(f"bench-j{jobs}", n_trials, steps))
    t0 = time.time()
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "search",
            "run",
            str(spec),
            "--jobs",
            str(jobs),
            "--no-progress",
            "--tracking-uri",
            "none",
        ],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    wall = time.time() - t0
    if r.returncode:
        raise RuntimeError(r.stderr[-2000:])
    study = optuna.load_study(
        study_name=f"bench-j{jobs}", storage=make_storage(f"journal:{work / 'mlruns' / 'optuna.journal'}")
    )
    done = [t for t in study.get_trials() if t.state.name == "COMPLETE"]
    span = (
        max(t.datetime_complete for t in done).timestamp() - min(t.datetime_start for t in done).timestamp()
    )
    per_trial = sum(t.duration.total_seconds() for t in done) / len(done)
    return {
        "jobs": jobs,
        "trials": len(done),
        "wall_s": round(wall, 1),
        "trials_per_hour_end_to_end": round(3600 * len(done) / wall),
        "steady_span_s": round(span, 1),
        "trials_per_hour_steady": round(3600 * len(done) / span),
        "mean_trial_s": round(per_trial, 2),
    }


def recovery(tmp: Path, steps: int, env: dict) -> dict:
    import optuna

    from search.storage.connect import make_storage

    pg = Path(tempfile.mkdtemp(prefix="fs-bench-pg-"))
    password = secrets.token_hex(8)
    port = free_port()
    pg_env = {**os.environ, "PGDATA": str(pg / "data"), "PGPORT": str(port), "FS_DB_PASSWORD": password}
    procs: list[subprocess.Popen] = []
    try:
        subprocess.run(
            [str(ROOT / "deploy" / "start_postgres.sh")],
            env=pg_env,
            check=True,
            capture_output=True,
            timeout=180,
        )
        url = f"postgresql://focalnet:{password}@127.0.0.1:{port}/focalnet_search"
        spec = write_spec(tmp / "recovery.toml", spec_dict("bench-recovery", 6, steps))
        wenv = {
            **env,
            "STUDY": str(spec),
            "FS_STORAGE": url,
            "FS_TRACKING_URI": "none",
            "FS_THREADS": "1",
            "FOCALNET_SEARCH_HEARTBEAT_S": "1",
            "FOCALNET_SEARCH_GRACE_S": "3",
            "FS_PYTHON": sys.executable,
        }
        for _ in range(2):
            procs.append(
                subprocess.Popen(
                    [str(ROOT / "deploy" / "worker.sh")],
                    cwd=tmp,
                    env=wenv,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    start_new_session=True,
                )
            )
        victim = procs[0]
        storage = make_storage(url, heartbeat=False)
        owner = f"{socket.gethostname()}:{victim.pid}"

        def running_of_victim():
            try:
                study = optuna.load_study(study_name="bench-recovery", storage=storage)
            except KeyError:
                return None
            return next(
                (
                    t
                    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
                    if t.user_attrs.get("worker") == owner
                ),
                None,
            )

        trial = poll(running_of_victim, 300)
        os.kill(victim.pid, signal.SIGKILL)
        t_kill = time.time()
        victim.wait()
        study = optuna.load_study(study_name="bench-recovery", storage=storage)

        def retry_started():
            ts = study.get_trials(deepcopy=False)
            return next(
                (t for t in ts if t.system_attrs.get("failed_trial") == trial.number and t.datetime_start),
                None,
            )

        retry = poll(retry_started, 300)
        dead = study.trials[trial.number]
        procs[1].wait(timeout=300)
        return {
            "heartbeat_s": 1,
            "grace_s": 3,
            "killed_trial": trial.number,
            "dead_state": dead.state.name,
            "kill_to_fail_s": round(dead.datetime_complete.timestamp() - t_kill, 2),
            "kill_to_retry_start_s": round(retry.datetime_start.timestamp() - t_kill, 2),
            "retry_state": study.trials[retry.number].state.name,
            "survivor_rc": procs[1].returncode,
        }
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        if (pg / "data" / "postmaster.pid").exists():
            subprocess.run(
                [str(ROOT / "deploy" / "stop_postgres.sh")],
                env={**pg_env, "PG_STOP_MODE": "immediate"},
                capture_output=True,
            )
        shutil.rmtree(pg, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=8)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--jobs", type=int, nargs="*", default=[1, 2, 4])
    ap.add_argument("--no-recovery", action="store_true")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="fs-bench-workers-"))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "FOCALNET_SEARCH_CACHE": str(tmp / "cache")}
    cores = len(os.sched_getaffinity(0))
    print(
        f"cores={cores} load_avg_1m={os.getloadavg()[0]:.1f} trials={args.trials} steps={args.steps}",
        flush=True,
    )
    results: dict = {"cores": cores, "load_avg_at_start": round(os.getloadavg()[0], 1), "throughput": []}
    try:
        # warm the dataset cache so the first configuration does not pay for generating data
        subprocess.run(
            [
                sys.executable,
                "-c",
                "from search.task.data import load_dataset as l; import tomllib,sys; "
                "d=tomllib.load(open(sys.argv[1],'rb'))['data']; l(d['dataset'], n_train=d['n_train'], n_val=d['n_val'], n_test=d['n_test'], seed=d['seed'])",
                str(ROOT / "studies" / "quick.toml"),
            ],
            env=env,
            check=True,
            timeout=300,
        )
        for jobs in args.jobs:
            res = throughput(tmp, jobs, args.trials, args.steps, env)
            print(json.dumps(res), flush=True)
            results["throughput"].append(res)
        if not args.no_recovery:
            res = recovery(tmp, max(args.steps, 300), env)
            print(json.dumps(res), flush=True)
            results["recovery"] = res
        results["load_avg_at_end"] = round(os.getloadavg()[0], 1)
        print(json.dumps(results, indent=1))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
