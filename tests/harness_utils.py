"""Helpers for end-to-end tests: run the CLI in a temp dir, write small specs, read MLflow back."""

from __future__ import annotations

import os
import subprocess
import tomllib
from pathlib import Path
from typing import Any

from zygote import run_search

ROOT = Path(__file__).resolve().parents[1]


def cli(
    args: list[str], cwd: Path, *, env: dict[str, str] | None = None, timeout: float = 600
) -> subprocess.CompletedProcess:
    """Run `python -m search ARGS` in `cwd` (so mlruns/ lands there) and capture its output.

    The process is forked from a zygote that has imported torch and MLflow already (`tests/zygote.py`).
    """
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return run_search(args, cwd, full_env, timeout)


def toml_dumps(d: dict[str, Any]) -> str:
    """Minimal TOML writer for test specs: top-level dicts become [sections], deeper dicts inline tables."""

    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(value(x) for x in v) + "]"
        if isinstance(v, dict):
            return "{" + ", ".join(f"{_key(k)} = {value(x)}" for k, x in v.items()) + "}"
        return repr(v)

    out = "".join(f"{_key(k)} = {value(v)}\n" for k, v in d.items() if not isinstance(v, dict))
    for k, v in d.items():
        if isinstance(v, dict):
            out += f"\n[{_key(k)}]\n" + "".join(f"{_key(kk)} = {value(vv)}\n" for kk, vv in v.items())
    return out


def _key(k: str) -> str:
    return k if k.replace("_", "").replace("-", "").isalnum() else f'"{k}"'


def quick_spec(**overrides: dict[str, Any]) -> dict[str, Any]:
    """studies/quick.toml as a dict, with tables updated from `overrides` (table -> dict)."""
    spec = tomllib.loads((ROOT / "studies" / "quick.toml").read_text())
    for table, values in overrides.items():
        if values is None:
            spec.pop(table, None)
        else:
            spec.setdefault(table, {}).update(values)
    return spec


def write_spec(path: Path, spec: dict[str, Any]) -> Path:
    path.write_text(toml_dumps(spec))
    assert tomllib.loads(path.read_text()) == spec, "test TOML writer lost information"
    return path


def mlflow_runs(cwd: Path, study_name: str) -> list[Any]:
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{cwd / 'mlruns' / 'mlflow.db'}")
    exp = client.get_experiment_by_name(f"focalnet-search/{study_name}")
    assert exp is not None, f"no MLflow experiment for {study_name}"
    return client.search_runs([exp.experiment_id], max_results=1000)


def load_study(cwd: Path, study_name: str):
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

    path = str(cwd / "mlruns" / "optuna.journal")
    storage = JournalStorage(JournalFileBackend(path, lock_obj=JournalFileOpenLock(path)))
    return optuna.load_study(study_name=study_name, storage=storage)
