"""End to end: `python -m search run/report/reproduce/list` on studies/quick.toml in a temp dir.

These train real (tiny) models; they are the slowest tests of the suite (~1 minute each on 2 cores).
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
from harness_utils import ROOT, cli, load_study, mlflow_runs, quick_spec, write_spec

from search.report.budget import MAX_SKIPPED_PER_TRIAL

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def cache_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """One dataset cache for every e2e test: the data is generated once."""
    return {"FOCALNET_SEARCH_CACHE": str(tmp_path_factory.mktemp("cache"))}


def _spec(tmp: Path, name: str, **tables) -> Path:
    spec = quick_spec(**tables)
    spec["study"]["name"] = name
    spec["study"].pop(
        "timeout_min", None
    )  # trial budget only: a slow CI machine must not cut the study short
    return write_spec(tmp / f"{name}.toml", spec)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory, cache_env: dict[str, str]) -> tuple[Path, str]:
    tmp = tmp_path_factory.mktemp("quick")
    shutil.copytree(ROOT / "studies", tmp / "studies")
    # quick.toml itself, unchanged except the wall-clock budget (see _spec)
    spec = _spec(tmp, "focalnet-quick")
    r = cli(["run", str(spec), "--no-progress"], tmp, env=cache_env)
    assert r.returncode == 0, r.stderr[-3000:]
    return tmp, r.stdout


def test_trials_in_storage(quick_run: tuple[Path, str]) -> None:
    tmp, out = quick_run
    study = load_study(tmp, "focalnet-quick")
    trials = study.get_trials()
    assert len(trials) == 4
    assert sorted(t.number for t in trials) == [0, 1, 2, 3]
    assert {t.state.name for t in trials} <= {"COMPLETE", "PRUNED"}
    base = trials[0]
    assert base.user_attrs["role"] == "baseline" and base.state.name == "COMPLETE"
    assert base.user_attrs["latency_ratio"] == pytest.approx(1.0)
    # One latency scale: the baseline's latency timed before the first trial; every trial's latency is
    # its ratio to the baseline (timed in turns with it) times that, so the baseline reads it exactly.
    reference = study.user_attrs["reference_latency_ms"]
    assert base.user_attrs["latency_ms"] == reference
    for t in trials:
        attrs = t.user_attrs
        assert attrs["baseline_latency_ms"] == reference
        assert attrs["latency_ms"] == pytest.approx(attrs["latency_ratio"] * reference)
    for t in trials:
        cfg = t.user_attrs["config"]
        assert set(cfg) == {"model", "train", "data"}
        assert cfg["data"]["hash"] == study.user_attrs["data_hash"]
        assert t.user_attrs["params"] > 0 and t.user_attrs["latency_ms"] > 0
    for t in trials:
        if t.state.name == "PRUNED":
            assert t.user_attrs["stop_rung"] in (10, 20)
            assert f"rung_{t.user_attrs['stop_rung']}" in t.user_attrs
    assert "trial 0 COMPLETE" in out and "baseline" in out


def test_mlflow_parent_and_children(quick_run: tuple[Path, str]) -> None:
    from mlflow import MlflowClient

    tmp, _ = quick_run
    runs = mlflow_runs(tmp, "focalnet-quick")
    parents = [r for r in runs if r.data.tags.get("fs.role") == "parent"]
    children = [r for r in runs if r.data.tags.get("fs.role") == "trial"]
    assert len(parents) == 1
    parent = parents[0]
    assert parent.data.params["data.hash"]
    assert parent.data.tags["fs.code_version"]
    assert sorted(int(c.data.tags["fs.trial_number"]) for c in children) == [0, 1, 2, 3]
    assert all(c.data.tags["mlflow.parentRunId"] == parent.info.run_id for c in children)
    assert all(c.info.status != "RUNNING" for c in runs)  # the parent too: the study has ended
    assert parent.info.status == "FINISHED" and parent.info.end_time
    client = MlflowClient(f"sqlite:///{tmp / 'mlruns' / 'mlflow.db'}")
    for c in children:
        tags, params, metrics = c.data.tags, c.data.params, c.data.metrics
        assert tags["fs.optuna_state"] in ("COMPLETE", "PRUNED")
        assert "fs.pareto" in tags
        assert params["arch.backbone"] in ("focalnet", "baseline")
        assert "train.lr" in params and metrics["train.lr"] == pytest.approx(float(params["train.lr"]))
        assert metrics["params"] > 0 and metrics["latency_ms"] > 0
        curve = client.get_metric_history(c.info.run_id, "val_pck_0.1")
        assert [m.step for m in curve][:1] == [10]
        if tags["fs.optuna_state"] == "COMPLETE":
            assert "test_pck_0.1" in metrics and "final_val_pck_0.1" in metrics
    baseline = [c for c in children if c.data.tags.get("fs.trial_role") == "baseline"]
    assert len(baseline) == 1
    arts = {a.path for a in client.list_artifacts(parent.info.run_id, "report")}
    for name in (
        "pareto_accuracy_vs_params.png",
        "pareto_accuracy_vs_latency.png",
        "pareto.csv",
        "hypervolume.png",
    ):
        assert f"report/{name}" in arts


def test_report_lists_front_and_baseline(quick_run: tuple[Path, str], cache_env: dict[str, str]) -> None:
    tmp, _ = quick_run
    r = cli(["report", "focalnet-quick", "--csv", "table.csv"], tmp, env=cache_env)
    assert r.returncode == 0, r.stderr
    assert "BASELINE" in r.stdout
    assert "baseline (trial 0)" in r.stdout
    study = load_study(tmp, "focalnet-quick")
    complete = [t for t in study.get_trials() if t.state.name == "COMPLETE"]
    assert len((tmp / "table.csv").read_text().strip().splitlines()) == len(complete) + 1


def test_reproduce_matches(quick_run: tuple[Path, str], cache_env: dict[str, str]) -> None:
    tmp, _ = quick_run
    study = load_study(tmp, "focalnet-quick")
    t = next(t for t in study.get_trials() if t.state.name == "COMPLETE" and t.user_attrs["role"] == "search")
    r = cli(["reproduce", "focalnet-quick", "--trial", str(t.number), "--no-progress"], tmp, env=cache_env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "within tolerance" in r.stdout
    out = tmp / "exports" / "focalnet-quick" / f"trial-{t.number}"
    for f in ("model.pt", "config.json", "model.pt2", "model.onnx", "gallery.png"):
        assert (out / f).stat().st_size > 0
    import torch

    from focalnet import build_model
    from focalnet.export import load_program

    model = build_model(json.loads((out / "config.json").read_text())["model"]).eval()
    model.load_state_dict(torch.load(out / "model.pt", weights_only=True))
    x = torch.rand(3, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(load_program(out / "model.pt2")(x), model(x), atol=1e-5)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["reproduced"]["val"]["pck_0.1"] == t.user_attrs["val"]["pck_0.1"]
    runs = mlflow_runs(tmp, "focalnet-quick")
    rep = [r for r in runs if r.data.tags.get("fs.reproduces") == str(t.number)]
    assert len(rep) == 1 and rep[0].info.status == "FINISHED"


def test_reproduce_refuses_pruned_trial(quick_run: tuple[Path, str], cache_env: dict[str, str]) -> None:
    tmp, _ = quick_run
    r = cli(["reproduce", "focalnet-quick", "--trial", "99"], tmp, env=cache_env)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "--trial" in r.stderr


def test_resume_continues_without_duplicates(quick_run: tuple[Path, str], cache_env: dict[str, str]) -> None:
    tmp, _ = quick_run
    before = {t.number: t.values for t in load_study(tmp, "focalnet-quick").get_trials()}
    spec = tmp / "focalnet-quick.toml"
    r = cli(["run", str(spec), "--n-trials", "6", "--no-progress"], tmp, env=cache_env)
    assert r.returncode == 0, r.stderr[-2000:]
    trials = load_study(tmp, "focalnet-quick").get_trials()
    assert sorted(t.number for t in trials) == list(range(6))
    assert all(before[t.number] == t.values for t in trials if t.number in before)
    assert sum(t.user_attrs.get("role") == "baseline" for t in trials) == 1
    runs = mlflow_runs(tmp, "focalnet-quick")
    parents = [r for r in runs if r.data.tags.get("fs.role") == "parent"]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"  # re-opened, then closed again


def test_changed_spec_is_refused(quick_run: tuple[Path, str], cache_env: dict[str, str]) -> None:
    tmp, _ = quick_run
    spec = quick_spec(train={"steps": 40})
    spec["study"]["name"] = "focalnet-quick"
    path = write_spec(tmp / "changed.toml", spec)
    r = cli(["run", str(path)], tmp, env=cache_env)
    assert r.returncode == 2 and "different spec" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_two_jobs_complete_all_trials(tmp_path: Path, cache_env: dict[str, str]) -> None:
    spec = _spec(tmp_path, "jobs2", study={"n_trials": 4}, early_stopping={"enabled": False})
    r = cli(["run", str(spec), "--jobs", "2", "--no-progress"], tmp_path, env=cache_env)
    assert r.returncode == 0, r.stderr[-2000:]
    trials = load_study(tmp_path, "jobs2").get_trials()
    assert len(trials) == 4 and all(t.state.name == "COMPLETE" for t in trials)
    workers = {t.user_attrs["worker"] for t in trials}
    assert len(workers) == 2, workers  # both processes took trials
    parent = next(r for r in mlflow_runs(tmp_path, "jobs2") if r.data.tags.get("fs.role") == "parent")
    assert parent.info.status == "FINISHED"  # `run` and both workers are gone: the last one closed it


def test_diverged_trial_fails_and_study_continues(tmp_path: Path, cache_env: dict[str, str]) -> None:
    # Search trials get an absurd gradient-norm limit → TrainingDiverged at step 1; the baseline is unaffected.
    spec = _spec(tmp_path, "nan", study={"n_trials": 3}, space={"train.max_grad_norm": {"choices": [1e-12]}})
    r = cli(["run", str(spec), "--no-progress"], tmp_path, env=cache_env)
    assert r.returncode == 0, r.stderr[-2000:]
    trials = load_study(tmp_path, "nan").get_trials()
    assert [t.state.name for t in trials] == ["COMPLETE", "FAIL", "FAIL"]
    assert all("diverged at step 1" in t.user_attrs["fail_reason"] for t in trials[1:])
    runs = {
        r.data.tags["fs.trial_number"]: r
        for r in mlflow_runs(tmp_path, "nan")
        if "fs.trial_number" in r.data.tags
    }
    assert runs["1"].info.status == "FAILED" and "diverged" in runs["1"].data.tags["fs.failure_reason"]


def test_over_budget_trials_skip_training(tmp_path: Path, cache_env: dict[str, str]) -> None:
    # n_trials 2: the baseline uses one, and no draw ever fits, so drawing stops at the skip limit
    spec = _spec(tmp_path, "budget", study={"n_trials": 2}, constraints={"max_params": 100})
    r = cli(["run", str(spec), "--no-progress"], tmp_path, env=cache_env)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "stopped drawing" in r.stderr
    trials = load_study(tmp_path, "budget").get_trials()
    assert len(trials) == 1 + MAX_SKIPPED_PER_TRIAL * 2
    assert trials[0].user_attrs["role"] == "baseline" and "val" in trials[0].user_attrs  # never skipped
    for t in trials[1:]:
        assert t.state.name == "COMPLETE"
        assert t.user_attrs["skipped"].startswith("over budget")
        assert "timing" not in t.user_attrs and "val" not in t.user_attrs  # no training happened
        constraints = {k: v for k, v in t.system_attrs.items() if k.startswith("constraints")}
        assert constraints and max(constraints.values()) > 0, t.system_attrs  # recorded infeasible in Optuna


BAD_SPECS = {
    "unknown key": ({"study": {"n_trail": 3}}, "n_trial"),
    "bad sampler": ({"study": {"sampler": "bayes"}}, "sampler"),
    "impossible space": (
        {"space": {"arch.patch_size": {"choices": [16]}, "arch.num_stages": {"low": 4, "high": 4}}},
        "num_stages",
    ),
    "even window": ({"model": {"focal_windows": 4}}, "focal_windows"),
    "bad dataset": ({"data": {"dataset": "npz:does/not/exist.npz"}}, "exist.npz"),
}


@pytest.mark.parametrize("case", sorted(BAD_SPECS))
def test_bad_spec_exits_2_and_writes_nothing(case: str, tmp_path: Path, cache_env: dict[str, str]) -> None:
    tables, needle = BAD_SPECS[case]
    spec = _spec(tmp_path, "bad", **tables)
    r = cli(["run", str(spec)], tmp_path, env=cache_env)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], lines
    assert not (tmp_path / "mlruns").exists()


def test_bad_cli_arguments_exit_2(tmp_path: Path) -> None:
    for args in (
        ["run"],
        ["run", "nope.toml"],
        ["reproduce", "x", "--pick", "best"],
        ["run", str(ROOT / "studies/quick.toml"), "--jobs", "0"],
    ):
        r = cli(args, tmp_path)
        assert r.returncode == 2, (args, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1, (args, r.stderr)
    assert not (tmp_path / "mlruns").exists()


@pytest.mark.timeout(1800)  # three studies' worth of process starts: slow on a loaded 2-core machine
def test_seed_check_with_two_jobs_resume_and_more_seeds(tmp_path: Path, cache_env: dict[str, str]) -> None:
    """Baseline lr sweep + search, then the seed check in 2 workers; a re-run adds nothing, a 2nd seed adds one each."""
    from search.report.records import study_records
    from search.spec.parse import parse_spec

    study_table = {"n_trials": 3, "baseline_lrs": [1e-3, 4e-3], "verify_seeds": 1}
    spec = _spec(tmp_path, "seeds", study=study_table, early_stopping={"enabled": False})
    r = cli(["run", str(spec), "--jobs", "2", "--no-progress"], tmp_path, env=cache_env)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "seed check:" in r.stdout
    everything = load_study(tmp_path, "seeds").get_trials()
    # two workers racing for the last queued trial leave "surplus" trials that never ran
    trials = [t for t in everything if "surplus" not in t.user_attrs.get("fail_reason", "")]
    assert all(t.state.name == "FAIL" and "role" not in t.user_attrs for t in everything if t not in trials)
    search = [t for t in trials if t.user_attrs["role"] != "verify"]
    verify = [t for t in trials if t.user_attrs["role"] == "verify"]
    assert [t.user_attrs["role"] for t in search] == ["baseline", "baseline", "search"]
    assert all(t.state.name == "COMPLETE" for t in trials)
    assert all(t.number > max(s.number for s in search) for t in verify)  # after the search
    study = load_study(tmp_path, "seeds")
    records = study_records(study, parse_spec(study.user_attrs["spec_raw"], source="seeds"))
    members = {r["number"] for r in records if (r["pareto"] and r["role"] != "baseline") or r["reference"]}
    pairs = sorted((t.user_attrs["verifies"], t.user_attrs["seed"]) for t in verify)
    assert pairs == sorted((m, 1) for m in members)  # each once, a fresh seed
    assert all(t.user_attrs["config"]["train"]["seed"] == t.user_attrs["seed"] for t in verify)
    assert all("left_plateau_step" in t.user_attrs for t in trials)
    assert not any(r["pareto"] for r in records if r["role"] == "verify")
    runs = mlflow_runs(tmp_path, "seeds")
    vruns = [r for r in runs if r.data.tags.get("fs.trial_role") == "verify"]
    assert len(vruns) == len(verify)
    assert all(
        r.data.tags["fs.plateau"] == "never" or r.data.tags["fs.plateau"].startswith("left@") for r in vruns
    )
    assert {r.info.run_name.rsplit("-s", 1)[-1] for r in vruns} == {"1"}  # the seed is in the name
    parent = next(r for r in runs if r.data.tags.get("fs.role") == "parent")
    constant = study.user_attrs["constant_predictor"]
    assert parent.data.metrics["constant_val_pck_0.1"] == pytest.approx(constant["val"]["pck_0.1"])
    rep = cli(["report", "seeds"], tmp_path, env=cache_env)
    assert rep.returncode == 0 and "Seed check" in rep.stdout and "reference baseline" in rep.stdout
    assert "constant predictor" in rep.stdout and "failed: trial" not in rep.stdout

    r = cli(
        ["run", str(spec), "--jobs", "2", "--no-progress"], tmp_path, env=cache_env
    )  # resume: nothing to do
    assert r.returncode == 0, r.stderr[-2000:]
    assert "seed check:" not in r.stdout
    assert "already finished" in r.stdout  # the fast path: the seed check is marked complete for this budget
    assert len(load_study(tmp_path, "seeds").get_trials()) == len(everything)

    study_table["verify_seeds"] = 2
    spec = _spec(tmp_path, "seeds", study=study_table, early_stopping={"enabled": False})
    r = cli(
        ["run", str(spec), "--allow-changed-spec", "--jobs", "2", "--no-progress"], tmp_path, env=cache_env
    )
    assert r.returncode == 0, r.stderr[-2000:]
    added = load_study(tmp_path, "seeds").get_trials()[len(everything) :]
    added = [t for t in added if "surplus" not in t.user_attrs.get("fail_reason", "")]
    assert sorted((t.user_attrs["verifies"], t.user_attrs["seed"]) for t in added) == [
        (m, 2) for m in sorted(members)
    ]
    assert all(t.state.name == "COMPLETE" for t in added)
    # `report --out` writes the parent run's files; verify.csv keeps the per-seed figures its interval uses
    rep = cli(["report", "seeds", "--out", "files"], tmp_path, env=cache_env)
    assert rep.returncode == 0, rep.stderr[-2000:]
    for name in (
        "report.txt",
        "pareto.csv",
        "verify.csv",
        "pareto_accuracy_vs_params.png",
        "hypervolume.png",
    ):
        assert (tmp_path / "files" / name).stat().st_size > 0, name
    with (tmp_path / "files" / "verify.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert {int(r["number"]) for r in rows} == members
    for r in rows:
        tests = [float(v) for v in r["test_values"].split()]
        assert [int(s) for s in r["seeds"].split()] == [1, 2] and len(tests) == 2
        assert float(r["test_mean"]) == pytest.approx(sum(tests) / 2)
