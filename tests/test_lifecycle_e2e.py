"""End to end: Ctrl-C during the baseline, then resume — one line, exit 130, the baseline comes back, the
parent run is KILLED then FINISHED with its report. Trains tiny models (a few minutes on 2 busy cores)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import wait_for
from harness_utils import ROOT, cli, load_study, mlflow_runs, quick_spec, write_spec

pytestmark = pytest.mark.slow


def _parent(tmp: Path, name: str):
    parents = [r for r in mlflow_runs(tmp, name) if r.data.tags.get("fs.role") == "parent"]
    assert len(parents) == 1
    return parents[0]


def _report_artifacts(tmp: Path, run_id: str) -> set[str]:
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp / 'mlruns' / 'mlflow.db'}")
    return {a.path for a in client.list_artifacts(run_id, "report")}


def _counters_consistent(stdout: str) -> None:
    for done, total in re.findall(r"^\[(\d+)/(\d+) ", stdout, flags=re.M):
        assert int(done) <= int(total), stdout


def test_ctrl_c_on_the_baseline_then_resume(tmp_path: Path) -> None:
    name = "interrupt"
    spec = quick_spec(early_stopping={"enabled": False}, train={"steps": 60, "eval_every": 30})
    spec["study"].update(name=name, n_trials=2)
    spec["study"].pop("timeout_min", None)
    path = write_spec(tmp_path / f"{name}.toml", spec)
    env = {"PYTHONPATH": str(ROOT), "FOCALNET_SEARCH_CACHE": str(tmp_path / "cache")}
    out, err = open(tmp_path / "out.log", "w"), open(tmp_path / "err.log", "w")  # noqa: SIM115
    run = subprocess.Popen(
        [sys.executable, "-m", "search", "run", str(path), "--no-progress"],
        cwd=tmp_path,
        env={**os.environ, **env},
        stdout=out,
        stderr=err,
    )
    try:

        def baseline_running():
            try:
                t = load_study(tmp_path, name).trials[0]
            except (KeyError, FileNotFoundError, IndexError):
                return None
            return t.state.name == "RUNNING" and "mlflow_run_id" in t.user_attrs

        wait_for(baseline_running, timeout=300, what="the baseline trial to run")
        before = (tmp_path / "err.log").stat().st_size
        run.send_signal(signal.SIGINT)
        rc = run.wait(timeout=120)
    finally:
        if run.poll() is None:
            run.kill()
        out.close()
        err.close()
    after = (tmp_path / "err.log").read_bytes()[before:].decode()
    assert rc == 130, after
    assert len(after.strip().splitlines()) == 1 and "interrupted" in after and "Traceback" not in after, after
    first_out = (tmp_path / "out.log").read_text()
    assert first_out.startswith("threads: "), first_out  # the thread choice, stated in one line at start
    _counters_consistent(first_out)

    study = load_study(tmp_path, name)
    t0 = study.trials[0]
    assert t0.state.name == "FAIL" and "interrupted" in t0.user_attrs["fail_reason"]
    parent = _parent(tmp_path, name)
    assert parent.info.status == "KILLED" and parent.info.end_time
    runs = {r.info.run_id: r for r in mlflow_runs(tmp_path, name)}
    assert runs[t0.user_attrs["mlflow_run_id"]].info.status == "KILLED"

    r = cli(["run", str(path), "--no-progress"], tmp_path, env=env)  # resume: the baseline comes back
    assert r.returncode == 0, r.stderr[-3000:]
    _counters_consistent(r.stdout)
    trials = load_study(tmp_path, name).get_trials()
    baselines = [t for t in trials if t.user_attrs.get("role") == "baseline"]
    assert [(t.state.name, t.user_attrs["attempt"]) for t in baselines] == [("FAIL", 0), ("COMPLETE", 1)]
    assert sum(t.state.name == "COMPLETE" for t in trials) == 2
    parent = _parent(tmp_path, name)
    assert parent.info.status == "FINISHED"
    assert {"report/pareto.csv", "report/pareto_accuracy_vs_params.png"} <= _report_artifacts(
        tmp_path, parent.info.run_id
    )
    report = cli(["report", name], tmp_path, env=env)
    assert report.returncode == 0 and "BASELINE" in report.stdout

    r = cli(["run", str(path), "--no-progress"], tmp_path, env=env)  # nothing left: re-opened, closed again
    assert r.returncode == 0, r.stderr[-3000:]
    assert len(load_study(tmp_path, name).get_trials()) == len(trials)
    assert _parent(tmp_path, name).info.status == "FINISHED"
