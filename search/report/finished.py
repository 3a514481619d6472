"""Re-running a finished study: answer in a second instead of loading torch, the dataset and MLflow.

`python -m search run SPEC` on a study that has nothing left to run used to spend its time importing
torch (to validate the spec), loading the dataset, opening the MLflow store and redrawing the report.
`finished_study` decides from the TOML text and the Optuna storage alone (this module imports neither
torch nor MLflow), so the CLI can return before any of that. The stored ``spec_raw`` (the TOML as
parsed, saved when the study was created) must equal the file's: an edited spec takes the full path,
which accepts or refuses the change with its usual message.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from search.report.budget import FINISHED_STATES, budget_used
from search.report.publish import REPORTED_ATTR
from search.report.seed_check import SEED_CHECKED_ATTR, VERIFY_ROLE
from search.storage.connect import StorageError, make_storage

__all__ = ["finished_study", "finished_line", "read_raw_spec"]


def read_raw_spec(path: str | Path) -> dict[str, Any] | None:
    """The TOML of a spec file as a dict, or None if it cannot be read (the full path says why)."""
    try:
        return tomllib.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return None


def _plain(d: Any) -> Any:
    """As stored in Optuna user attrs (JSON): so a fresh parse compares equal to the stored copy."""
    return json.loads(json.dumps(d, default=str))


def finished_study(
    raw: dict[str, Any] | None, *, storage_url: str, n_trials: int | None, tracking: bool
) -> optuna.Study | None:
    """The stored study if re-running it would do nothing, else None (the caller takes the full path).

    Nothing to do: the study exists with this exact spec, its budget of ``n_trials`` is used with
    nothing queued or running, its seed check (``verify_seeds``) was completed for this budget, and (when
    ``tracking``) its complete report shows every finished trial. Studies limited by time only, and
    ablations (resumed by missing cells), take the full path.

    Args:
        raw: the spec file's TOML as a dict (`read_raw_spec`).
        storage_url: Optuna storage URL ("" = the default journal).
        n_trials: the trial budget (the CLI's ``--n-trials`` or the spec's ``study.n_trials``).
        tracking: the study logs to MLflow (its report must be complete).
    """
    if not raw or n_trials is None or "ablation" in raw:
        return None  # ablations resume by missing cells: the full path
    name = (raw.get("study") or {}).get("name")
    if not isinstance(name, str):
        return None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.load_study(
            study_name=name, storage=make_storage(storage_url, heartbeat=False, read_only=True)
        )
    except (KeyError, StorageError):  # NoStorage included: a re-run check never creates storage
        return None  # not there (or not reachable): the full path creates it or says why
    if study.user_attrs.get("spec_raw") != _plain(raw):
        return None
    used, waiting = budget_used(study)
    trials = study.get_trials(deepcopy=False)
    if waiting or used < n_trials or any(t.state == TrialState.RUNNING for t in trials):
        return None
    if (raw.get("study") or {}).get("verify_seeds") and study.user_attrs.get(SEED_CHECKED_ATTR) != used:
        return None  # the seed check is missing seeds, or the front may have changed since: the full path
    if _fixed_trial_to_retry(trials):
        return None  # a baseline or variant whose last attempt failed runs again (the full path requeues it)
    finished = sum(t.state.name in FINISHED_STATES for t in trials)
    if tracking and study.user_attrs.get(REPORTED_ATTR) != finished:
        return None  # the last run ended before its final report: the full path redraws it
    return study


def _fixed_trial_to_retry(trials: list[optuna.trial.FrozenTrial]) -> bool:
    """A fixed trial (role other than ``search``) none of whose attempts completed or was stopped."""
    outcome: dict[tuple[Any, Any], bool] = {}
    for t in trials:
        role = t.user_attrs.get("role")
        if role in (None, "search", VERIFY_ROLE):  # the seed check has its own marker (SEED_CHECKED_ATTR)
            continue
        key = (role, t.user_attrs.get("name"))
        outcome[key] = outcome.get(key, False) or t.state in (TrialState.COMPLETE, TrialState.PRUNED)
    return not all(outcome.values())


def finished_line(study: optuna.Study, n_trials: int | None) -> str:
    """What a re-run of a finished study prints."""
    trials = study.get_trials(deepcopy=False)
    done = sum(t.state == TrialState.COMPLETE for t in trials)
    return (
        f"study {study.study_name}: already finished ({len(trials)} trials, {done} complete; budget "
        f"{n_trials}); nothing to run. `python -m search report {study.study_name}` for the Pareto table"
    )
