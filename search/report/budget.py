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

__all__ = ["FINISHED_STATES", "SURPLUS", "budget_used", "counts_against_budget"]


def counts_against_budget(trial: optuna.trial.FrozenTrial) -> bool:
    """COMPLETE, PRUNED, RUNNING, or FAIL from the objective itself (a NaN run) count against `n_trials`.

    Not counted: a FAIL from a dead worker (its retry is queued and runs regardless), a surplus trial, a
    trial interrupted by Ctrl-C (the budget is for trials that ran), queued (WAITING) trials, and the
    seed check's trials (role ``verify``: they re-measure the search's results, not part of its budget).
    """
    if trial.user_attrs.get("role") == VERIFY_ROLE:
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
