"""The load test of issue 22: N workers started at the same moment on one study, then every invariant checked.

Workers are `deploy/worker.sh` processes on PostgreSQL storage and an MLflow tracking server. After they
exit, :func:`check_study` counts what went wrong: a worker that did not exit 0, more (or fewer) than one
parent run, a candidate parent left behind, a trial without exactly one FINISHED run, a run left RUNNING,
a trial lost or failed (beyond a surplus start that never ran, or a heartbeat failure whose retry
completed), a write dropped. :func:`problems` lists the non-zero ones. The short version is
tests/test_race.py; the long one, repeated and with MLflow server restarts, is bench/bench_race.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

from harness_utils import write_spec
from servers import ROOT, wait_for

#: Counts that must be zero (`parents` must be one).
ZERO = (
    "worker_exits",
    "tracebacks",
    "candidates_left",
    "lost_trials",
    "failed_trials",
    "duplicate_runs",
    "missing_runs",
    "runs_left_running",
    "dropped_writes",
    "claim_mismatch",
)


def race_spec(folder: Path, name: str, *, n_trials: int, steps: int) -> Path:
    """studies/quick.toml with early stopping off (every trial runs to the end: counts are exact)."""
    spec = tomllib.loads((ROOT / "studies" / "quick.toml").read_text())
    spec["study"].update(name=name, n_trials=n_trials)
    spec["study"].pop("timeout_min", None)
    spec["train"].update(steps=steps, eval_every=max(1, steps // 2))
    spec["early_stopping"]["enabled"] = False
    return write_spec(folder / f"{name}.toml", spec)


def start_workers(
    n: int,
    spec: Path,
    *,
    storage: str,
    tracking: str,
    env: dict[str, str],
    logs: Path,
    checkout: Path = ROOT,
) -> list[subprocess.Popen]:
    """Start `n` deploy/worker.sh processes back to back (the same moment, as a job array does).

    Args:
        checkout: the source tree whose deploy/worker.sh (and code) the workers run.
    """
    logs.mkdir(parents=True, exist_ok=True)
    full = {
        **os.environ,
        **env,
        "STUDY": str(spec),
        "FS_STORAGE": storage,
        "FS_TRACKING_URI": tracking,
        "FS_PYTHON": sys.executable,
    }
    files = [open(logs / f"w{i}.log", "w") for i in range(n)]  # noqa: SIM115 (the children hold them)
    procs = [
        subprocess.Popen(
            [str(checkout / "deploy" / "worker.sh")],
            cwd=logs,
            env=full,
            stdout=f,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        for f in files
    ]
    for f in files:
        f.close()
    return procs


def wait_workers(procs: list[subprocess.Popen], timeout: float) -> list[int]:
    """Exit codes once every worker has ended (killing the rest after `timeout`)."""
    try:
        wait_for(lambda: all(p.poll() is not None for p in procs), timeout=timeout, what="the workers")
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=30)
    return [p.returncode for p in procs]


def _trial_counts(study: Any, n_trials: int) -> dict[str, Any]:
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    retried = {t.system_attrs.get("failed_trial") for t in complete}
    failed = [
        t
        for t in trials
        if t.state.name == "FAIL"
        and "surplus" not in str(t.user_attrs.get("fail_reason"))
        and t.number not in retried
    ]
    surplus_run = [
        t
        for t in trials
        if "surplus" in str(t.user_attrs.get("fail_reason")) and "mlflow_run_id" in t.user_attrs
    ]
    return {
        "trials": len(trials),
        "complete": len(complete),
        "lost_trials": max(0, n_trials - len(complete))
        + sum(t.state.name in ("RUNNING", "WAITING") for t in trials),
        "failed_trials": len(failed) + len(surplus_run),
        "heartbeat_retries": len(retried - {None}),
        "complete_numbers": sorted(t.number for t in complete),
    }


def _run_counts(tracking: str, name: str, complete: list[int], claimed: str | None) -> dict[str, Any]:
    from mlflow import MlflowClient
    from mlflow.entities import ViewType

    client = MlflowClient(tracking)
    exp = client.get_experiment_by_name(f"focalnet-search/{name}")
    runs = [] if exp is None else client.search_runs([exp.experiment_id], max_results=5000)
    every = (
        []
        if exp is None
        else client.search_runs([exp.experiment_id], run_view_type=ViewType.ALL, max_results=5000)
    )
    parents = [r for r in runs if r.data.tags.get("fs.role") == "parent"]
    children = [r for r in runs if r.data.tags.get("fs.role") == "trial"]
    by_number: dict[int, list[Any]] = {}
    for r in children:
        by_number.setdefault(int(r.data.tags["fs.trial_number"]), []).append(r)
    finished = {n for n, rs in by_number.items() if any(r.info.status == "FINISHED" for r in rs)}
    parent_id = parents[0].info.run_id if len(parents) == 1 else None
    return {
        "parents": len(parents),
        "parent_status": parents[0].info.status if len(parents) == 1 else None,
        "parents_running": sum(r.info.status == "RUNNING" for r in parents),
        "candidates_left": sum(r.data.tags.get("fs.role") == "parent-candidate" for r in runs),
        "candidates_deleted": sum(
            r.data.tags.get("fs.role") == "parent-candidate" and r.info.lifecycle_stage == "deleted"
            for r in every
        ),
        "child_runs": len(children),
        "duplicate_runs": sum(len(rs) - 1 for n, rs in by_number.items() if n in complete),
        "missing_runs": len(set(complete) - finished),
        "runs_left_running": sum(r.info.status == "RUNNING" for r in runs),
        "wrong_parent": sum(r.data.tags.get("mlflow.parentRunId") != parent_id for r in children),
        "claim_mismatch": int(claimed != parent_id),
    }


def check_study(
    *, storage: str, tracking: str, name: str, n_trials: int, rcs: list[int], logs: list[Path]
) -> dict[str, Any]:
    """Every count of one finished race (see the module docstring)."""
    import optuna

    from search.storage.connect import make_storage

    study = optuna.load_study(study_name=name, storage=make_storage(storage, heartbeat=False))
    trials = _trial_counts(study, n_trials)
    claimed = study._storage.get_study_system_attrs(study._study_id).get("fs:mlflow_parent")
    runs = _run_counts(tracking, name, trials["complete_numbers"], claimed)
    text = "\n".join(p.read_text(errors="replace") for p in logs if p.exists())
    return {
        "workers": len(rcs),
        "worker_exits": sum(rc != 0 for rc in rcs),
        "exit_codes": rcs,
        "tracebacks": text.count("Traceback"),
        "dropped_writes": text.count("never reached MLflow") + text.count("not logged ("),
        "outage_notices": text.count("MLflow cannot take writes now"),
        "caught_up_notices": text.count("MLflow caught up"),
        **{k: v for k, v in trials.items() if k != "complete_numbers"},
        **runs,
    }


def problems(counts: dict[str, Any]) -> list[str]:
    """What went wrong in one race: the counts that must be zero and are not, and the parent count."""
    out = [f"{k}={counts[k]}" for k in ZERO if counts.get(k)]
    if counts.get("parents") != 1:
        out.append(f"parents={counts.get('parents')}")
    elif counts.get("parent_status") != "FINISHED":
        out.append(f"parent_status={counts.get('parent_status')}")
    if counts.get("wrong_parent"):
        out.append(f"wrong_parent={counts['wrong_parent']}")
    return out
