"""Ablation end to end through the CLI: grid × seeds, report = recomputation, resume adds only missing cells."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from harness_utils import ROOT, cli, load_study, mlflow_runs, quick_spec, write_spec

pytestmark = pytest.mark.slow


def _ablation_spec(tmp: Path, name: str, steps: int = 10) -> Path:
    spec = quick_spec(
        space=None,
        early_stopping={"enabled": False, "rungs": []},
        train={"steps": steps, "eval_every": steps, "warmup_steps": 2},
    )
    spec["study"].update({"name": name, "baseline": False, "sampler": "random", "n_trials": 4})
    spec["study"].pop("timeout_min", None)
    spec["model"].update({"embed_dim": 8})
    spec["ablation"] = {"seeds": 2, "factors": {"contexts": ["sequential", "independent"]}}
    return write_spec(tmp / f"{name}.toml", spec)


@pytest.fixture(scope="module")
def cache_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return {"FOCALNET_SEARCH_CACHE": str(tmp_path_factory.mktemp("cache"))}


def test_tiny_ablation_grid_report_and_artifacts(tmp_path: Path, cache_env: dict[str, str]) -> None:
    spec = _ablation_spec(tmp_path, "abl")
    r = cli(["run", str(spec), "--no-progress"], tmp_path, env=cache_env)
    assert r.returncode == 0, r.stderr[-2000:]
    trials = load_study(tmp_path, "abl").get_trials()
    cells = sorted((t.user_attrs["cell"]["contexts"], t.user_attrs["seed"]) for t in trials)
    assert cells == [("independent", 0), ("independent", 1), ("sequential", 0), ("sequential", 1)]
    assert all(t.state.name == "COMPLETE" for t in trials)

    r = cli(["report", "abl", "--csv", "abl.csv"], tmp_path, env=cache_env)
    assert r.returncode == 0, r.stderr
    assert "contexts=independent" in r.stdout and "2 seeds" in r.stdout
    # The paired difference printed equals a direct recomputation from the stored trials.
    by = {
        (t.user_attrs["cell"]["contexts"], t.user_attrs["seed"]): t.user_attrs["test"]["pck_0.1"]
        for t in trials
    }
    diffs = np.array([by[("independent", s)] - by[("sequential", s)] for s in (0, 1)])
    import csv

    rows = list(csv.DictReader((tmp_path / "abl.csv").open()))
    row = next(
        r
        for r in rows
        if r["section"] == "diff" and r["metric"] == "test.pck_0.1" and r["level"] == "independent"
    )
    assert float(row["diff"]) == pytest.approx(diffs.mean())
    runs = mlflow_runs(tmp_path, "abl")
    parent = next(r for r in runs if r.data.tags.get("fs.role") == "parent")
    from mlflow import MlflowClient

    arts = {
        a.path
        for a in MlflowClient(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}").list_artifacts(
            parent.info.run_id, "report"
        )
    }
    assert {"report/ablation.csv", "report/ablation.png", "report/ablation_report.txt"} <= arts


def test_resume_after_interrupt_adds_only_missing_cells(tmp_path: Path, cache_env: dict[str, str]) -> None:
    spec = _ablation_spec(tmp_path, "abl-resume", steps=40)
    env = {**os.environ, "PYTHONPATH": str(ROOT), **cache_env}
    proc = subprocess.Popen(
        [sys.executable, "-m", "search", "run", str(spec), "--no-progress"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 300
    journal = tmp_path / "mlruns" / "optuna.journal"
    try:
        while time.time() < deadline:  # interrupt once the first cell has finished
            if journal.exists():
                try:
                    done = [
                        t
                        for t in load_study(tmp_path, "abl-resume").get_trials()
                        if t.state.name == "COMPLETE"
                    ]
                except KeyError:
                    done = []
                if done:
                    break
            if proc.poll() is not None:
                break
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    first = {
        t.number: t.user_attrs["name"]
        for t in load_study(tmp_path, "abl-resume").get_trials()
        if t.state.name == "COMPLETE"
    }
    assert 1 <= len(first) < 4, "the interruption should land mid-grid"
    r = cli(["run", str(spec), "--no-progress"], tmp_path, env=cache_env)
    assert r.returncode == 0, r.stderr[-2000:]
    trials = load_study(tmp_path, "abl-resume").get_trials()
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    names = sorted(t.user_attrs["name"] for t in complete)
    assert len(names) == 4 and len(set(names)) == 4  # every (cell, seed) exactly once
    assert all(
        first[n] == next(t.user_attrs["name"] for t in complete if t.number == n) for n in first
    )  # nothing redone


BAD = {
    "unknown factor": ({"factors": {"contex": ["sequential"]}}, "contex"),
    "invalid level": ({"factors": {"focal_windows": [3, 4]}}, "focal_windows"),
    "zero seeds": ({"seeds": 0, "factors": {"contexts": ["sequential", "independent"]}}, "seeds"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_ablation_exits_2_and_writes_nothing(
    case: str, tmp_path: Path, cache_env: dict[str, str]
) -> None:
    table, needle = BAD[case]
    spec_path = _ablation_spec(tmp_path, "bad")
    import tomllib

    spec = tomllib.loads(spec_path.read_text())
    spec["ablation"] = {"seeds": 2, **table}
    write_spec(spec_path, spec)
    r = cli(["run", str(spec_path)], tmp_path, env=cache_env)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], lines
    assert not (tmp_path / "mlruns").exists()
