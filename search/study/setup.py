"""Create or join a study in storage, and the facts every logged number is traced to (code, machine, data).

`open_study` is the one door into a stored study: the first worker creates it and enqueues the fixed
trials; every other worker loads it and is refused if its spec, objectives or library versions differ.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Any

import optuna

from search.spec.grid import ablation_trials
from search.spec.space import fixed_trials
from search.storage.connect import (
    StorageError,
    check_versions,
    library_versions,
    make_storage,
    recover_stale_trials,
)
from search.storage.faults import fail_stale_trials
from search.study.lifecycle import requeue_fixed_trials
from search.study.samplers import make_sampler
from search.study.warm_start import WARM_ATTR, enqueue_warm_start
from search.task.data import load_data_config
from search.tracking.params import redact_url

__all__ = ["code_version", "cpu_count", "fixed_attrs", "open_study", "spec_data"]


def spec_data(spec: Any) -> Any:
    """The study's dataset (generated once, then read from the cache by every worker)."""
    return load_data_config(spec.data.to_dict(), base_dir=spec.data.base_dir)


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def code_version() -> str:
    """Git commit of the working tree (+dirty), so every logged number traces to its code."""
    root = Path(__file__).resolve().parents[2]
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return library_versions()["focalnet-search"]
    return (sha[:12] + ("+dirty" if dirty else "")) if sha else library_versions()["focalnet-search"]


def open_study(
    spec: Any,
    storage_url: str,
    *,
    create: bool,
    allow_changed_spec: bool = False,
    data_hash: str | None = None,
) -> optuna.Study:
    """Create the study (first worker) or load it (everyone else), refusing incompatible ones.

    Args:
        spec: the parsed StudySpec.
        storage_url: Optuna storage URL (see `search.storage.connect.make_storage`).
        create: create the study if it does not exist, and enqueue every fixed trial (baseline, variants,
            ablation cells) that has no live attempt (`search.study.lifecycle.requeue_fixed_trials`).
        allow_changed_spec: continue a study whose stored spec hash differs (mixed spaces corrupt comparisons).
        data_hash: recorded on creation.
    """
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = make_storage(storage_url)
    sampler = make_sampler(spec)
    try:
        study = optuna.load_study(study_name=spec.name, storage=storage, sampler=sampler)
    except KeyError:
        if not create:
            raise StorageError(f"study: {spec.name!r} does not exist in {redact_url(storage_url)}") from None
        try:
            study = optuna.create_study(
                study_name=spec.name, storage=storage, sampler=sampler, directions=spec.objectives.directions
            )
        except optuna.exceptions.DuplicatedStudyError:  # another worker won the race
            study = optuna.load_study(study_name=spec.name, storage=storage, sampler=sampler)
        else:
            study.set_user_attr("spec_hash", spec.spec_hash)
            study.set_user_attr("spec", spec.to_dict())
            study.set_user_attr("spec_raw", spec.raw)
            study.set_user_attr("spec_source", str(spec.source))
            study.set_user_attr("versions", library_versions())
            study.set_user_attr("objective_names", list(spec.objectives.names))
            study.set_user_attr("data_hash", data_hash)
            study.set_user_attr("created_at", time.time())
    check_versions(study)
    stored = study.user_attrs.get("spec_hash")
    if stored and stored != spec.spec_hash and not allow_changed_spec:
        raise StorageError(
            f"spec: study {spec.name!r} exists with a different spec (hash {stored[:12]} vs {spec.spec_hash[:12]}); "
            "rename the study or pass --allow-changed-spec"
        )
    if [d.name.lower() for d in study.directions] != list(spec.objectives.directions):
        raise StorageError(
            f"objectives: study {spec.name!r} has directions {[d.name.lower() for d in study.directions]}"
        )
    if create:
        # Fail trials of dead workers first (their retries are queued), so a fixed trial whose last
        # attempt died with its worker counts as failed and is enqueued again.
        recover_stale_trials(study)
        fail_stale_trials(study)
        fixed = ablation_trials(spec) if spec.ablation is not None else fixed_trials(spec)
        requeue_fixed_trials(study, [fixed_attrs(f) for f in fixed])
        if spec.ablation is None and (rows := enqueue_warm_start(study, spec, data_hash=data_hash)):
            print(
                f"warm start: {len(rows)} trials from {spec.warm_start} (rows {', '.join(map(str, rows))}), "
                "queued after the fixed trials; their runs carry the tag fs.warm_start",
                flush=True,
            )
        elif skipped := (study.user_attrs.get(WARM_ATTR) or {}).get("skipped"):
            print(f"warm start: none: {skipped}; the sampler starts at once", flush=True)
    return study


def fixed_attrs(fixed: dict[str, Any]) -> dict[str, Any]:
    attrs = {"role": fixed["role"], "name": fixed["name"], "fixed_overrides": fixed["overrides"]}
    return attrs | {k: fixed[k] for k in ("cell", "seed", "verifies") if k in fixed}
