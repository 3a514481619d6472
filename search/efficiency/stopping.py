"""Pareto-aware asynchronous successive halving (MO-ASHA) for multi-objective studies.

Optuna 5 cannot prune multi-objective studies (``Trial.report`` raises ``NotImplementedError``),
so the search decides itself, at fixed rungs (training steps), whether a trial keeps training.

Rule (``should_continue``): at rung ``s`` the pool is every other non-baseline trial that has
already recorded rung ``s`` plus the candidate. With ``k = max(1, len(pool) // eta)``, let ``r_k``
be the non-dominated rank (over the rung objective vector, e.g. rung accuracy, params, latency) of
the k-th best trial of the pool; the candidate continues iff its own rank is ``<= r_k``. Ties at the
cut are promoted, not broken: a front is kept or stopped as a whole. (``rank_pool`` gives the full
NSGA-II order — rank, then crowding distance, then trial number — for reports.)

Why this rule: it is Optuna's asynchronous ``SuccessiveHalvingPruner`` with "top 1/eta by value"
replaced by "top 1/eta by non-dominated sorting" (NSGA-II order). It is asynchronous: a trial is
compared with whoever reached the rung so far and never waits for stragglers, so parallel
workers never block; the first ``eta - 1`` arrivals face ``k = 1`` and continue only if they are on the first
front. Decisions are made once, at arrival, and never revisited. Rung records live in the study
storage (user attrs ``rung_<step>``), so every worker, local or remote, sees the same pool. The
baseline trial (user attr ``role == "baseline"``) records its rung values but is never stopped, and
MO-ASHA never counts it in a pool.

Rule ``"cost-asha"`` (``cost_peer_continue``) uses what MO-ASHA ignores: a trial's costs (params,
latency: every rung value but the first) are known before training and never change at a rung; only
its accuracy (the first rung value) does. So a trial can only ever be dominated by a trial that costs
no more in every cost, and the question at a rung is whether it beats those. The candidate's *peers* are
the other trials at the rung whose every cost is <= its own; it continues iff it is among the best
``max(1, n // eta)`` of its ``n`` = peers + itself by rung accuracy (ties promoted), i.e. iff fewer than
that many peers have a strictly higher rung accuracy. Plain ASHA within a cost cone: a trial with no
cheaper peer always continues (nothing can dominate it), an expensive trial must be in the top 1/eta of
everything cheaper, and the bar rises with cost, where stopping saves the most. Rule ``"hv-asha"``
(``hv_contribution_continue``) ranks the pool by each trial's exclusive hypervolume contribution at
the rung (against the spec's reference point) and promotes the best ``max(1, n // eta)``.

Both cost rules take the baseline's rung records as *anchors*: the baseline is in every final front
the study reports, so a trial that costs more than the baseline in every cost can only matter by
beating it. For ``cost-asha`` an anchor is one more peer (when it costs no more); for ``hv-asha`` its
point is in the hypervolume, so what it already covers is nobody's contribution. Anchors are never
stopped and never take a promotion slot. (Measured: ``bench/tables/default.jsonl.gz`` replayed by
``python -m search simulate``; README, "Early stopping and simulated studies".)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna
from optuna.trial import TrialState

from search.efficiency.pareto import crowding_distance, hypervolume, non_dominated_ranks, to_minimization
from search.spec.schema import DEFAULT_STOPPING_FRACTION

__all__ = [
    "RULES",
    "RungRecord",
    "should_continue",
    "cost_peer_continue",
    "hv_contribution_continue",
    "behind_baseline_continue",
    "rank_pool",
    "ParetoASHA",
    "prune",
    "stop_at_rung",
    "pruner_for",
    "rung_attr",
]

#: Promotion rules, selectable in a spec as ``[early_stopping] rule``.
RULES = ("mo-asha", "cost-asha", "hv-asha", "behind-baseline")
#: The default of ``[early_stopping] fraction`` (rule ``"behind-baseline"``; README, "Early stopping").
DEFAULT_FRACTION = DEFAULT_STOPPING_FRACTION

# Trials whose rung records count as competitors. FAIL is left out on purpose: a crashed or
# diverged trial's rung value says nothing about how hard the rung is.
_COMPETITOR_STATES = (TrialState.RUNNING, TrialState.COMPLETE, TrialState.PRUNED)


def _final_accuracy(trial: optuna.trial.FrozenTrial, direction: str) -> float | None:
    """A completed trial's final accuracy (the first objective), signed so that larger is better."""
    if trial.state != TrialState.COMPLETE or not trial.values or not math.isfinite(trial.values[0]):
        return None
    return float(trial.values[0]) if direction == "maximize" else -float(trial.values[0])


def rung_attr(step: int) -> str:
    """Name of the user attr holding a trial's objective vector at rung ``step``."""
    return f"rung_{step}"


@dataclass(frozen=True)
class RungRecord:
    """One trial's objective vector at one rung.

    Args:
        number: Optuna trial number (the final tie-break).
        values: objective values at the rung, aligned with the pruner's directions.
    """

    number: int
    values: tuple[float, ...]


def rank_pool(pool: Sequence[RungRecord], *, directions: Sequence[str]) -> list[RungRecord]:
    """Order ``pool`` best first by (non-dominated rank, -crowding distance, trial number).

    Args:
        pool: rung records, all with ``len(directions)`` values.
        directions: ``"maximize"`` / ``"minimize"`` per value.
    """
    if not pool:
        return []
    points = np.array([[float(v) for v in r.values] for r in pool], dtype=float)
    if points.shape[1] != len(directions):
        raise ValueError(
            f"values: expected {len(directions)} values per record (one per direction), got {points.shape[1]}"
        )
    ranks = non_dominated_ranks(points, directions)
    crowd = crowding_distance(points, directions)

    def key(i: int) -> tuple[int, float, int]:
        # -inf sorts first; equal infinities compare equal, so the trial number decides.
        return (int(ranks[i]), -float(crowd[i]), pool[i].number)

    return [pool[i] for i in sorted(range(len(pool)), key=key)]


def should_continue(
    candidate: RungRecord,
    competitors: Sequence[RungRecord],
    *,
    eta: int,
    directions: Sequence[str],
) -> bool:
    """Decide whether ``candidate`` survives its rung (see the module docstring for the rule).

    Args:
        candidate: the trial that just reached the rung.
        competitors: other trials' records at the same rung (baseline already excluded); a
            record with the candidate's own number is ignored.
        eta: reduction factor (>= 2); roughly the best 1/eta of the pool continues.
        directions: ``"maximize"`` / ``"minimize"`` per value.

    Returns:
        True when the candidate keeps training.
    """
    _check_eta(eta)
    pool = [r for r in competitors if r.number != candidate.number]
    pool.append(candidate)
    k = max(1, len(pool) // eta)
    points = np.array([[float(v) for v in r.values] for r in pool], dtype=float)
    ranks = non_dominated_ranks(points, directions)
    # The cut is by non-dominated rank: every trial whose front is needed to fill the best k continues.
    # Breaking ties inside a front (by crowding or arrival) would let the first arrival on a front block
    # every later non-dominated trial until the pool holds 2*eta trials.
    cut = int(np.sort(ranks)[k - 1])
    return int(ranks[-1]) <= cut


def _check_eta(eta: int) -> None:
    if eta < 2:
        raise ValueError(f"eta: must be >= 2, got {eta}")


def cost_peer_continue(
    candidate: RungRecord,
    competitors: Sequence[RungRecord],
    *,
    eta: int,
    directions: Sequence[str],
    anchors: Sequence[RungRecord] = (),
) -> bool:
    """Rule ``"cost-asha"``: top ``max(1, n // eta)`` by rung accuracy among cost-dominating peers.

    Args:
        candidate: the trial that just reached the rung; ``values[0]`` is its rung accuracy, the
            rest its costs (fixed before training).
        competitors: other trials' records at the same rung; a record with the candidate's own
            number is ignored.
        eta: reduction factor (>= 2).
        directions: ``"maximize"`` / ``"minimize"`` per value.
        anchors: the baseline's records at the rung: peers like any other when they cost no more.

    Returns:
        True when the candidate keeps training.
    """
    _check_eta(eta)
    pool = [r for r in [*competitors, *anchors] if r.number != candidate.number]
    loss = to_minimization([candidate.values, *(r.values for r in pool)], directions)
    if loss.shape[1] != len(directions):
        raise ValueError(f"values: expected {len(directions)} values per record (one per direction)")
    mine, others = loss[0], loss[1:]
    # Peers cost no more in every cost; NaN costs are +inf, so a diverged record is nobody's peer.
    peers = others[np.all(others[:, 1:] <= mine[1:], axis=1)] if len(others) else others
    k = max(1, (len(peers) + 1) // eta)
    better = int(np.sum(peers[:, 0] < mine[0])) if len(peers) else 0
    return better < k


def hv_contribution_continue(
    candidate: RungRecord,
    competitors: Sequence[RungRecord],
    *,
    eta: int,
    directions: Sequence[str],
    reference: Sequence[float],
    anchors: Sequence[RungRecord] = (),
) -> bool:
    """Rule ``"hv-asha"``: top ``max(1, n // eta)`` of the pool by exclusive hypervolume contribution.

    Args:
        candidate: the trial that just reached the rung.
        competitors: other trials' records at the same rung (own number ignored).
        eta: reduction factor (>= 2).
        directions: ``"maximize"`` / ``"minimize"`` per value.
        reference: hypervolume reference point in the same units and order as the values.
        anchors: the baseline's records at the rung: in the hypervolume, never in the ranking.

    Returns:
        True when the candidate keeps training (ties at the cut are promoted).
    """
    _check_eta(eta)
    pool = [r for r in competitors if r.number != candidate.number]
    pool.append(candidate)
    points = np.array([[float(v) for v in r.values] for r in [*pool, *anchors]], dtype=float)
    total = hypervolume(points, directions, reference)
    contrib = np.array(
        [total - hypervolume(np.delete(points, i, axis=0), directions, reference) for i in range(len(pool))]
    )
    k = max(1, len(pool) // eta)
    cut = float(np.sort(contrib)[::-1][k - 1])
    # Zero contributions tie at a zero cut and are promoted (a lone first arrival always continues),
    # unless the baseline covers the candidate: then it can only add by overtaking the baseline.
    return bool(contrib[-1] >= cut) and (contrib[-1] > 0 or (cut <= 0 and not anchors))


def behind_baseline_continue(
    candidate: RungRecord, reference: RungRecord | None, *, fraction: float, directions: Sequence[str]
) -> bool:
    """Rule ``"behind-baseline"``: continue unless the rung accuracy is below ``fraction`` x the reference's.

    Args:
        candidate: the trial that just reached the rung; ``values[0]`` is its rung accuracy.
        reference: the reference baseline's record at the same rung, or None (then every trial continues).
        fraction: share of the reference's rung accuracy a trial must reach, in (0, 1].
        directions: ``"maximize"`` / ``"minimize"`` per value (only the accuracy's is read).

    Returns:
        True when the candidate keeps training (a NaN rung accuracy, a diverged run, stops).
    """
    if reference is None or not math.isfinite(reference.values[0]):
        return True
    mine, ref = float(candidate.values[0]), float(reference.values[0])
    if directions[0] == "maximize":
        return mine >= fraction * ref
    return mine <= ref / fraction  # an error to minimise: at most 1/fraction x the reference's


def prune(trial: optuna.trial.Trial, step: int) -> None:
    """Record ``stop_rung`` on the trial and raise :class:`optuna.TrialPruned`.

    Args:
        trial: the live trial being stopped.
        step: the rung at which it was stopped.
    """
    trial.set_user_attr("stop_rung", int(step))
    raise optuna.TrialPruned(f"stopped at rung {step}")


def stop_at_rung(
    pruner: ParetoASHA, study: optuna.Study, trial: optuna.trial.Trial, step: int, values: Sequence[float]
) -> None:
    """What a trial does at an evaluation: record its rung values, and stop if the rule says so.

    The live objective calls this from its ``on_eval`` callback and the simulator calls it at each
    simulated rung, so both record the same ``rung_<step>``, ``stop_rung`` and PRUNED state.

    Args:
        pruner: the study's stopping rule.
        study: the study whose storage holds the other trials' rung records.
        trial: the live trial.
        step: the training step just evaluated.
        values: rung objective vector (rung accuracy, then the costs), aligned with the directions.

    Raises:
        optuna.TrialPruned: the trial stops here (``stop_rung`` is recorded first).
    """
    if not pruner.check(study, trial, step, values):
        prune(trial, step)


def pruner_for(spec: Any, *, enabled: bool | None = None, rule: str | None = None) -> ParetoASHA:
    """The stopping rule a study spec asks for (``[early_stopping]``, objectives, hypervolume reference).

    Args:
        spec: a ``StudySpec`` (read by attribute only).
        enabled: override ``early_stopping.enabled`` (the simulator's no-stopping arm).
        rule: override ``early_stopping.rule``.
    """
    es = spec.early_stopping
    names = ["accuracy", *spec.objectives.minimize]
    return ParetoASHA(
        rungs=es.rungs,
        eta=es.eta,
        directions=spec.objectives.directions,
        enabled=es.enabled if enabled is None else enabled,
        rule=rule or getattr(es, "rule", "mo-asha"),
        reference=[spec.hypervolume_reference[n] for n in names],
        fraction=getattr(es, "fraction", DEFAULT_FRACTION),
    )


class ParetoASHA:
    """Multi-objective asynchronous successive halving whose decisions read the study storage.

    Args:
        rungs: training steps at which decisions are made.
        eta: reduction factor (>= 2).
        directions: ``"maximize"`` / ``"minimize"`` per rung value, e.g.
            ``("maximize", "minimize", "minimize")`` for (rung accuracy, params, latency).
        enabled: when False, rung values are still recorded but every trial continues.
        rule: one of :data:`RULES` (see the module docstring).
        reference: hypervolume reference point, needed by ``"hv-asha"`` only.
        fraction: share of the reference baseline's rung accuracy, for ``"behind-baseline"`` only.
    """

    def __init__(
        self,
        *,
        rungs: Sequence[int],
        eta: int,
        directions: Sequence[str],
        enabled: bool = True,
        rule: str = "mo-asha",
        reference: Sequence[float] | None = None,
        fraction: float = DEFAULT_FRACTION,
    ) -> None:
        if eta < 2:
            raise ValueError(f"eta: must be >= 2, got {eta}")
        if any(int(r) <= 0 for r in rungs):
            raise ValueError(f"rungs: must be positive steps, got {list(rungs)}")
        for d in directions:
            if d not in ("maximize", "minimize"):
                raise ValueError(f"directions: entries must be 'maximize' or 'minimize', got {d!r}")
        if rule not in RULES:
            raise ValueError(f"rule: must be one of {', '.join(RULES)}, got {rule!r}")
        if rule == "hv-asha" and (reference is None or len(reference) != len(directions)):
            raise ValueError(f"reference: rule 'hv-asha' needs {len(directions)} reference values")
        if not 0 < fraction <= 1:
            raise ValueError(f"fraction: must be in (0, 1], got {fraction}")
        self.rungs: tuple[int, ...] = tuple(sorted({int(r) for r in rungs}))
        self.eta = int(eta)
        self.directions: tuple[str, ...] = tuple(directions)
        self.enabled = bool(enabled)
        self.rule = rule
        self.reference = None if reference is None else tuple(float(v) for v in reference)
        self.fraction = float(fraction)

    def __repr__(self) -> str:
        return (
            f"ParetoASHA(rule={self.rule!r}, rungs={list(self.rungs)}, eta={self.eta}, "
            f"directions={list(self.directions)}, enabled={self.enabled})"
        )

    def decide(
        self,
        candidate: RungRecord,
        competitors: Sequence[RungRecord],
        anchors: Sequence[RungRecord] = (),
        reference: RungRecord | None = None,
    ) -> bool:
        """Apply this pruner's rule to one candidate, its competitors and the baseline's records at a rung
        (``reference``: the reference baseline's, one of ``anchors``, read by ``"behind-baseline"``)."""
        if self.rule == "behind-baseline":
            return behind_baseline_continue(
                candidate, reference, fraction=self.fraction, directions=self.directions
            )
        kw = {"eta": self.eta, "directions": self.directions}
        if self.rule == "cost-asha":
            return cost_peer_continue(candidate, competitors, anchors=anchors, **kw)
        if self.rule == "hv-asha":
            return hv_contribution_continue(
                candidate, competitors, reference=self.reference, anchors=anchors, **kw
            )
        return should_continue(candidate, competitors, **kw)

    def check(
        self,
        study: optuna.Study,
        trial: optuna.trial.Trial,
        step: int,
        rung_values: Sequence[float],
    ) -> bool:
        """Record the trial's rung values and decide whether it continues.

        Args:
            study: the study (its storage is read, so other workers' records count).
            trial: the live trial that reached ``step``.
            step: the current training step; steps that are not rungs always continue.
            rung_values: objective vector at this step, aligned with ``directions``.

        Returns:
            True to keep training; on False the caller stops the trial (see :func:`prune`).
        """
        step = int(step)
        if step not in self.rungs:
            return True
        # Non-finite values (diverged runs) become NaN, which the Pareto sort treats as worst;
        # the same conversion happens on the storage round trip below, so both sides agree.
        values = tuple(float(v) if math.isfinite(float(v)) else float("nan") for v in rung_values)
        if len(values) != len(self.directions):
            raise ValueError(
                f"rung_values: expected {len(self.directions)} values (one per direction), got {len(values)}"
            )
        key = rung_attr(step)
        # JSON has no NaN/inf across storages (RDB, journal); store None and read it back as NaN.
        trial.set_user_attr(key, [v if math.isfinite(v) else None for v in values])
        if not self.enabled or trial.user_attrs.get("role") == "baseline":
            return True
        competitors: list[RungRecord] = []
        anchors: list[RungRecord] = []
        reference, best = None, None  # the completed baseline with the best final accuracy
        for other in study.get_trials(deepcopy=False, states=_COMPETITOR_STATES):
            rec = other.user_attrs.get(key)
            if other.number == trial.number or rec is None or len(rec) != len(values):
                continue
            record = RungRecord(other.number, tuple(float("nan") if v is None else float(v) for v in rec))
            if other.user_attrs.get("role") != "baseline":
                competitors.append(record)
                continue
            anchors.append(record)
            final = _final_accuracy(other, self.directions[0])
            if final is not None and (best is None or final > best):  # ties: the lower number, seen first
                reference, best = record, final
        return self.decide(RungRecord(trial.number, values), competitors, anchors, reference)
