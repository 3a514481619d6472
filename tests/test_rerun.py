"""Re-running a finished study returns without torch, data or MLflow; the report refresh runs beside training."""

from __future__ import annotations

import threading
from pathlib import Path

import optuna
import pytest

from search.report.finished import finished_study, read_raw_spec
from search.report.publish import REPORTED_ATTR
from search.report.refresh import BackgroundRefresh
from search.report.seed_check import SEED_CHECKED_ATTR
from search.spec.parse import parse_spec
from search.study.setup import open_study
from tests.harness_utils import ROOT, cli, quick_spec, toml_dumps

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _finished(tmp_path: Path, n_trials: int = 3, **study_keys: object) -> tuple[dict, str, optuna.Study]:
    """A quick-spec study in a journal whose budget is used (the baseline plus sampled trials)."""
    raw = quick_spec(study={"n_trials": n_trials, **study_keys})
    (tmp_path / "spec.toml").write_text(toml_dumps(raw))
    raw = read_raw_spec(tmp_path / "spec.toml")
    spec = parse_spec(raw, source="spec.toml")
    url = f"journal:{tmp_path / 'optuna.journal'}"
    study = open_study(spec, url, create=True, data_hash="h")
    for _ in range(n_trials):
        t = study.ask()
        study.tell(t, [0.5, 1000.0, 1.0])
    study.set_user_attr(REPORTED_ATTR, n_trials)
    return raw, url, study


def test_finished_study_is_recognised(tmp_path: Path) -> None:
    raw, url, study = _finished(tmp_path)
    found = finished_study(raw, storage_url=url, n_trials=3, tracking=True)
    assert found is not None and found.study_name == study.study_name
    # A larger budget, an edited spec, an unknown study or an ablation: the full path.
    assert finished_study(raw, storage_url=url, n_trials=4, tracking=True) is None
    edited = {**raw, "train": {**raw["train"], "lr": 1e-3}}
    assert finished_study(edited, storage_url=url, n_trials=3, tracking=True) is None
    other = {**raw, "study": {**raw["study"], "name": "nope"}}
    assert finished_study(other, storage_url=url, n_trials=3, tracking=True) is None
    assert finished_study({**raw, "ablation": {}}, storage_url=url, n_trials=3, tracking=True) is None
    assert finished_study(raw, storage_url=url, n_trials=None, tracking=True) is None


def test_seed_check_must_be_marked_complete_for_the_budget_used(tmp_path: Path) -> None:
    raw, url, study = _finished(tmp_path, verify_seeds=2)
    assert finished_study(raw, storage_url=url, n_trials=3, tracking=True) is None  # never marked
    study.set_user_attr(SEED_CHECKED_ATTR, 2)  # marked before the last search trial: the front may differ
    assert finished_study(raw, storage_url=url, n_trials=3, tracking=True) is None
    study.set_user_attr(SEED_CHECKED_ATTR, 3)
    assert finished_study(raw, storage_url=url, n_trials=3, tracking=True) is not None
    # A seed-check trial that diverged is not a fixed trial to retry (its seed is simply missing).
    t = study.ask()
    t.set_user_attr("role", "verify")
    study.tell(t, state=optuna.trial.TrialState.FAIL)
    study.set_user_attr(REPORTED_ATTR, 4)
    assert finished_study(raw, storage_url=url, n_trials=3, tracking=True) is not None


def test_unfinished_work_or_stale_report_takes_the_full_path(tmp_path: Path) -> None:
    raw, url, study = _finished(tmp_path)
    study.set_user_attr(REPORTED_ATTR, 2)  # the last run stopped before its final report
    assert finished_study(raw, storage_url=url, n_trials=3, tracking=True) is None
    assert finished_study(raw, storage_url=url, n_trials=3, tracking=False) is not None
    study.set_user_attr(REPORTED_ATTR, 3)
    running = study.ask()  # another worker is still training
    assert finished_study(raw, storage_url=url, n_trials=3, tracking=True) is None
    study.tell(running, state=optuna.trial.TrialState.FAIL)
    study.set_user_attr(REPORTED_ATTR, 4)
    study.enqueue_trial({})  # a queued retry
    assert finished_study(raw, storage_url=url, n_trials=3, tracking=True) is None


def test_cli_rerun_of_a_finished_study_touches_nothing(tmp_path: Path) -> None:
    _, url, _ = _finished(tmp_path)
    r = cli(["run", "spec.toml", "--storage", url, "--no-progress"], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "already finished (3 trials, 3 complete; budget 3); nothing to run" in r.stdout
    assert not (tmp_path / "mlruns").exists()  # no MLflow store opened, no dataset, no report
    r = cli(["run", "spec.toml", "--storage", url, "--jobs", "0"], cwd=tmp_path)
    assert r.returncode == 2 and "--jobs" in r.stderr


def test_background_refresh_does_not_block_and_never_overlaps() -> None:
    release, started = threading.Event(), threading.Event()
    calls: list[int] = []

    def slow() -> None:
        calls.append(1)
        started.set()
        release.wait(timeout=30)

    r = BackgroundRefresh(slow, every_s=0.0)
    assert r.maybe()  # returns at once although the refresh is still drawing
    assert started.wait(timeout=30)
    assert not r.maybe()  # one at a time: skipped while the previous one runs
    release.set()
    r.join()
    assert r.maybe()
    r.join()
    assert len(calls) == 2 and r.started == 2
    assert not BackgroundRefresh(slow, every_s=3600.0).maybe()  # the interval counts from the start


def test_background_refresh_failure_is_a_warning(capsys: pytest.CaptureFixture[str]) -> None:
    def broken() -> None:
        raise RuntimeError("store gone")

    r = BackgroundRefresh(broken, every_s=0.0)
    assert r.maybe()
    r.join()
    assert "could not refresh the MLflow parent report: store gone" in capsys.readouterr().err


def test_rerun_module_imports_neither_torch_nor_mlflow() -> None:
    import subprocess
    import sys

    code = "import sys, search.report.finished, search.cli; print(sorted(m for m in ('torch', 'mlflow') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
