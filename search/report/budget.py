"""Budget accounting: which trials count against a study's ``n_trials``, and how many are queued.

Every worker decides from the shared storage alone, so these rules are the same for all of them.
"""

from __future__ import annotations

from typing import Any

import optuna
from optuna.trial import TrialState

from search.report.seed_check import VERIFY_ROLE

#: States of a trial that has finished (a report of this many finished trials is complete).
FINISHED_STATES = ("COMPLETE", "PRUNED", "FAIL")
#: Marks the fail reason of a trial started after other workers used the budget (it never ran).
SURPLUS = "surplus"
#: A study stops drawing after this many over-budget draws per trial of its budget (a space whose
#: constraints leave almost nothing trainable would otherwise draw for ever; `search plan` warns first).
MAX_SKIPPED_PER_TRIAL = 20

__all__ = [
    "FINISHED_STATES",
    "MAX_SKIPPED_PER_TRIAL",
    "SURPLUS",
    "budget_used",
    "counts_against_budget",
    "skipped_draws",
]


def counts_against_budget(trial: optuna.trial.FrozenTrial) -> bool:
    """COMPLETE, PRUNED, RUNNING, or FAIL from the objective itself (a NaN run) count against `n_trials`.

    Not counted: an over-budget draw (``skipped``: never trained, so the budget buys trained trials), a
    FAIL from a dead worker (its retry is queued and runs regardless), a surplus trial, a
    trial interrupted by Ctrl-C (the budget is for trials that ran), queued (WAITING) trials, and the
    seed check's trials (role ``verify``: they re-measure the search's results, not part of its budget).
    """
    if trial.user_attrs.get("role") == VERIFY_ROLE or trial.user_attrs.get("skipped"):
        return False
    if trial.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING):
        return True
    reason = str(trial.user_attrs.get("fail_reason", "stale"))
    return trial.state == TrialState.FAIL and not any(w in reason for w in ("stale", "interrupted", SURPLUS))


def budget_used(study: Any) -> tuple[int, int]:
    """(trials that count against the budget, trials waiting in the queue); see `counts_against_budget`."""
    trials = study.get_trials(deepcopy=False)
    used = sum(counts_against_budget(t) for t in trials)
    return used, sum(t.state == TrialState.WAITING for t in trials)


def skipped_draws(study: Any) -> int:
    """Draws skipped before training because their costs broke a constraint (user attr ``skipped``)."""
    return sum(bool(t.user_attrs.get("skipped")) for t in study.get_trials(deepcopy=False))
