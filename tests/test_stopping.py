"""Tests for search.efficiency.stopping: promotion decisions on synthetic records and through real storage."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from search.efficiency.stopping import (
    ParetoASHA,
    RungRecord,
    behind_baseline_continue,
    cost_peer_continue,
    hv_contribution_continue,
    prune,
    rank_pool,
    should_continue,
    stop_at_rung,
)

optuna.logging.set_verbosity(optuna.logging.WARNING)

DIRS3 = ("maximize", "minimize", "minimize")  # (rung accuracy, params, latency_ms)
DIRS2 = ("maximize", "minimize")


def rec(number: int, *values: float) -> RungRecord:
    return RungRecord(number, tuple(values))


# --- pure decision rule --------------------------------------------------------------------------


def test_first_arrival_continues() -> None:
    assert should_continue(rec(5, 0.1, 1e6), [], eta=3, directions=DIRS2)


def test_dominated_trial_stopped_when_pool_reaches_eta() -> None:
    comps = [rec(0, 0.9, 100.0), rec(1, 0.8, 50.0)]
    # Pool of 3 with eta=3 -> k=1; the candidate is dominated by both.
    assert not should_continue(rec(2, 0.5, 200.0), comps, eta=3, directions=DIRS2)
    # A candidate that dominates everyone is rank 0 alone -> first -> continues.
    assert should_continue(rec(2, 0.95, 40.0), comps, eta=3, directions=DIRS2)


def test_early_arrivals_face_k_equal_one() -> None:
    # eta=3, second arrival: pool 2 -> k=1 -> the cut is the first front. A non-dominated newcomer
    # continues (the first arrival cannot block it), a dominated one stops.
    first = rec(0, 0.9, 100.0)
    assert should_continue(rec(1, 0.5, 10.0), [first], eta=3, directions=DIRS2)
    assert not should_continue(rec(1, 0.5, 200.0), [first], eta=3, directions=DIRS2)
    assert should_continue(rec(1, 0.95, 10.0), [first], eta=3, directions=DIRS2)


def test_ties_at_the_cut_are_promoted() -> None:
    comps = [rec(3, 0.7, 10.0), rec(9, 0.7, 10.0)]
    # Identical values: all rank 0; pool 3, eta 3 -> k=1 -> cut at rank 0 -> all continue.
    assert should_continue(rec(1, 0.7, 10.0), comps, eta=3, directions=DIRS2)
    assert should_continue(rec(4, 0.7, 10.0), comps, eta=3, directions=DIRS2)
    assert not should_continue(rec(4, 0.69, 10.0), comps, eta=3, directions=DIRS2)  # dominated
    # A stale record of the candidate itself in the competitors is ignored (no self-competition).
    assert should_continue(rec(3, 0.7, 10.0), [rec(3, 0.1, 99.0)], eta=3, directions=DIRS2)


def test_three_objectives_fronts_decide() -> None:
    a = rec(0, 0.9, 300.0, 3.0)  # front
    b = rec(1, 0.5, 100.0, 1.0)  # front
    c = rec(2, 0.7, 200.0, 2.0)  # front (interior)
    d = rec(3, 0.4, 400.0, 4.0)  # dominated by all
    e = rec(4, 0.6, 250.0, 2.5)  # dominated by c only -> rank 1
    g = rec(5, 0.3, 500.0, 5.0)  # dominated by all
    pool = [a, b, c, d, e, g]
    assert [r.number for r in rank_pool(pool, directions=DIRS3)][:3] == [0, 1, 2]

    def others(x: RungRecord) -> list[RungRecord]:
        return [r for r in pool if r is not x]

    # Pool 6, eta 3 -> k=2: the 2nd best is on the first front -> the whole front continues.
    for x in (a, b, c):
        assert should_continue(x, others(x), eta=3, directions=DIRS3)
    for x in (d, e, g):
        assert not should_continue(x, others(x), eta=3, directions=DIRS3)
    # eta 2 -> k=3: still the first front only (3 members), the dominated ones stop.
    assert not should_continue(e, others(e), eta=2, directions=DIRS3)
    # A bigger pool with k reaching into the second front promotes e (rank 1) too.
    more = [rec(10 + i, 0.1, 900.0 + i, 9.0) for i in range(3)]
    assert should_continue(e, others(e) + more, eta=2, directions=DIRS3)
    assert not should_continue(g, others(g) + more, eta=2, directions=DIRS3)


def test_nan_rung_value_is_worst() -> None:
    comps = [rec(0, 0.2, 1000.0)]
    assert not should_continue(rec(1, float("nan"), 1000.0), comps, eta=2, directions=DIRS2)


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError, match="^eta"):
        should_continue(rec(0, 1.0, 1.0), [], eta=1, directions=DIRS2)
    with pytest.raises(ValueError, match="^directions"):
        should_continue(rec(0, 1.0), [rec(1, 1.0)], eta=2, directions=DIRS2)
    with pytest.raises(ValueError, match="^eta"):
        ParetoASHA(rungs=[10], eta=1, directions=DIRS2)
    with pytest.raises(ValueError, match="^directions"):
        ParetoASHA(rungs=[10], eta=2, directions=("up", "minimize"))


# --- through optuna storage -----------------------------------------------------------------------


def _study(storage: optuna.storages.BaseStorage | None = None, name: str | None = None) -> optuna.Study:
    return optuna.create_study(storage=storage, study_name=name, directions=list(DIRS3))


def test_check_reads_other_trials_through_storage() -> None:
    study = _study()
    asha = ParetoASHA(rungs=[100, 200], eta=2, directions=DIRS3)
    t0 = study.ask()
    assert asha.check(study, t0, 100, (0.9, 1e5, 1.0))
    assert study.trials[0].user_attrs["rung_100"] == [0.9, 1e5, 1.0]
    study.tell(t0, [0.95, 1e5, 1.0])  # COMPLETE trials still count as competitors

    t1 = study.ask()
    # Non-rung steps always continue and record nothing.
    assert asha.check(study, t1, 50, (0.0, 1e9, 9.0))
    assert "rung_50" not in study.trials[1].user_attrs
    # Dominated by trial 0's record, which is only reachable through the storage -> stop.
    assert not asha.check(study, t1, 100, (0.5, 2e5, 2.0))
    with pytest.raises(optuna.TrialPruned):
        prune(t1, 100)
    study.tell(t1, state=TrialState.PRUNED)
    frozen = study.trials[1]
    assert frozen.state == TrialState.PRUNED
    assert frozen.user_attrs["stop_rung"] == 100
    assert frozen.user_attrs["rung_100"] == [0.5, 2e5, 2.0]

    # Pool now {t0, t1 (PRUNED), t2}: k = 3 // 2 = 1, and t2 dominates both -> continue.
    t2 = study.ask()
    assert asha.check(study, t2, 100, (0.99, 5e4, 0.5))


def test_baseline_never_stopped_and_never_counted() -> None:
    study = _study()
    asha = ParetoASHA(rungs=[100], eta=2, directions=DIRS3)
    study.enqueue_trial({}, user_attrs={"role": "baseline"})
    base = study.ask()
    assert base.user_attrs["role"] == "baseline"
    assert asha.check(study, base, 100, (0.99, 10.0, 0.1))  # excellent baseline, first arrival

    t1 = study.ask()
    # Dominated by the baseline, but the baseline is not a competitor -> first arrival -> continue.
    assert asha.check(study, t1, 100, (0.5, 1e5, 2.0))
    t2 = study.ask()
    assert not asha.check(study, t2, 100, (0.4, 2e5, 3.0))  # dominated by t1 -> stopped

    # A dominated baseline still continues.
    study.enqueue_trial({}, user_attrs={"role": "baseline"})
    base2 = study.ask()
    assert asha.check(study, base2, 100, (0.0, 1e9, 99.0))


def test_disabled_records_but_never_stops() -> None:
    study = _study()
    asha = ParetoASHA(rungs=[100], eta=2, directions=DIRS3, enabled=False)
    t0 = study.ask()
    assert asha.check(study, t0, 100, (0.9, 1.0, 1.0))
    t1 = study.ask()
    assert asha.check(study, t1, 100, (0.1, 9.0, 9.0))
    assert study.trials[1].user_attrs["rung_100"] == [0.1, 9.0, 9.0]


def test_nonfinite_values_roundtrip_as_worst(tmp_path: Path) -> None:
    storage = JournalStorage(JournalFileBackend(str(tmp_path / "nan.log")))
    study = _study(storage, "nan")
    asha = ParetoASHA(rungs=[10], eta=2, directions=DIRS3)
    t0 = study.ask()
    assert asha.check(study, t0, 10, (float("nan"), 1.0, 1.0))
    assert study.trials[0].user_attrs["rung_10"] == [None, 1.0, 1.0]
    t1 = study.ask()
    assert asha.check(study, t1, 10, (0.1, 1.0, 1.0))  # beats the diverged trial


def test_journal_file_shared_between_handles(tmp_path: Path) -> None:
    path = str(tmp_path / "journal.log")
    _study(JournalStorage(JournalFileBackend(path)), "shared")
    # Two independent storages/handles on the same file, as two worker processes would have.
    h1 = optuna.load_study(study_name="shared", storage=JournalStorage(JournalFileBackend(path)))
    h2 = optuna.load_study(study_name="shared", storage=JournalStorage(JournalFileBackend(path)))
    asha = ParetoASHA(rungs=[100], eta=2, directions=DIRS3)

    a = h1.ask()
    assert asha.check(h1, a, 100, (0.9, 1e5, 1.0))
    b = h2.ask()
    # h2 sees a's record written by h1 -> b is dominated -> stopped.
    assert not asha.check(h2, b, 100, (0.5, 2e5, 2.0))
    assert h2.trials[a.number].user_attrs["rung_100"] == [0.9, 1e5, 1.0]
    # And h1 sees b's record: pool {a, b, c} -> k=1; c is dominated by a -> stopped.
    c = h1.ask()
    assert not asha.check(h1, c, 100, (0.8, 1.5e5, 1.5))
    assert h1.trials[b.number].user_attrs["rung_100"] == [0.5, 2e5, 2.0]


# --- cost-asha: accuracy ranked among cost-dominating peers --------------------------------------


def cost(x: RungRecord, comps: list[RungRecord], eta: int = 3) -> bool:
    return cost_peer_continue(x, comps, eta=eta, directions=DIRS3)


def test_cost_asha_trial_without_cheaper_peer_continues() -> None:
    # Everyone else costs more in some cost: nothing can ever dominate it, whatever its accuracy.
    comps = [rec(0, 0.9, 200.0, 2.0), rec(1, 0.8, 300.0, 3.0), rec(2, 0.95, 50.0, 9.0)]
    assert cost(rec(5, 0.1, 100.0, 1.0), comps)


def test_cost_asha_peers_must_cost_no_more_in_every_cost() -> None:
    assert not cost(rec(5, 0.5, 200.0, 2.0), [rec(0, 0.6, 100.0, 1.0)])  # cheaper and better: stop
    assert cost(rec(5, 0.5, 200.0, 2.0), [rec(0, 0.9, 100.0, 3.0)])  # cheaper params, slower: no peer
    assert not cost(rec(5, 0.5, 200.0, 2.0), [rec(0, 0.6, 200.0, 2.0)])  # equal costs count as peers
    assert cost(rec(5, 0.6, 200.0, 2.0), [rec(0, 0.6, 200.0, 2.0)])  # equal accuracy: tie promoted


def test_cost_asha_top_fraction_of_the_cone() -> None:
    # Five cheaper peers; with the candidate n = 6, eta 3 -> k = 2: one better peer is allowed, two are not.
    peers = [rec(i, a, 10.0 * (i + 1), 0.1 * (i + 1)) for i, a in enumerate([0.9, 0.8, 0.3, 0.2, 0.1])]
    assert cost(rec(9, 0.85, 500.0, 5.0), peers)
    assert not cost(rec(9, 0.7, 500.0, 5.0), peers)
    assert cost(rec(9, 0.7, 500.0, 5.0), peers, eta=2)  # eta 2 -> k = 3
    # Non-peers (more expensive in some cost) neither help nor hurt.
    rich = [rec(20 + i, 0.99, 900.0, 0.01) for i in range(6)]
    assert cost(rec(9, 0.85, 500.0, 5.0), peers + rich)


def test_cost_asha_stops_what_mo_asha_keeps() -> None:
    # A chain: a dominates everyone, b dominates c, d, e. The candidate x is dominated by a and b only.
    a, b = rec(0, 0.95, 10.0, 0.1), rec(1, 0.5, 100.0, 1.0)
    chain = [a, b, rec(2, 0.4, 200.0, 2.0), rec(3, 0.3, 300.0, 3.0), rec(4, 0.2, 400.0, 4.0)]
    x = rec(9, 0.45, 150.0, 1.5)
    # MO-ASHA: pool 6, eta 2 -> k = 3, the 3rd best is on front 2 = x's front -> x continues.
    assert should_continue(x, chain, eta=2, directions=DIRS3)
    # cost-asha: x's cone is {a, b}; n = 3 -> k = 1 and two peers beat it -> stopped.
    assert not cost(x, chain, eta=2)


def test_cost_asha_nan_accuracy_is_worst() -> None:
    assert not cost(rec(5, float("nan"), 200.0, 2.0), [rec(0, 0.01, 100.0, 1.0)])
    assert cost(rec(5, 0.01, 200.0, 2.0), [rec(0, float("nan"), 100.0, 1.0)])


def test_cost_asha_through_storage_and_the_shared_rung_call() -> None:
    study = _study()
    asha = ParetoASHA(rungs=[100], eta=3, directions=DIRS3, rule="cost-asha")
    study.enqueue_trial({}, user_attrs={"role": "baseline"})
    base = study.ask()
    stop_at_rung(asha, study, base, 100, (0.99, 2e5, 3.0))  # never stopped; costs more than all below
    cheap = study.ask()
    stop_at_rung(asha, study, cheap, 100, (0.3, 1e4, 1.0))
    study.tell(cheap, [0.4, 1e4, 1.0])
    big = study.ask()
    with pytest.raises(optuna.TrialPruned):  # its only peer (cheap, COMPLETE) is more accurate
        stop_at_rung(asha, study, big, 100, (0.2, 1e5, 2.0))
    study.tell(big, state=TrialState.PRUNED)
    frozen = study.trials[big.number]
    assert frozen.user_attrs["stop_rung"] == 100 and frozen.user_attrs["rung_100"] == [0.2, 1e5, 2.0]
    rival = study.ask()  # costs less than big but more than cheap: cone {cheap} -> must beat 0.3
    stop_at_rung(asha, study, rival, 100, (0.35, 5e4, 1.5))
    assert "stop_rung" not in study.trials[rival.number].user_attrs
    # The baseline is an anchor: a trial costing more in every cost must beat it at the rung.
    dear = study.ask()
    with pytest.raises(optuna.TrialPruned):
        stop_at_rung(asha, study, dear, 100, (0.9, 3e5, 4.0))
    study.tell(dear, state=TrialState.PRUNED)
    better = study.ask()
    stop_at_rung(asha, study, better, 100, (0.995, 3e5, 4.0))
    assert "stop_rung" not in study.trials[better.number].user_attrs
    assert study.trials[base.number].user_attrs["rung_100"] == [0.99, 2e5, 3.0]
    with pytest.raises(ValueError, match="^rule"):
        ParetoASHA(rungs=[10], eta=2, directions=DIRS3, rule="median")


def test_cost_asha_anchor_is_a_peer_never_a_candidate() -> None:
    base = rec(0, 0.6, 100.0, 1.0)
    # Cheaper than the baseline in a cost: the anchor is no peer, nothing can dominate it -> continues.
    assert cost_peer_continue(rec(1, 0.1, 50.0, 2.0), [], eta=3, directions=DIRS3, anchors=[base])
    # Costlier in every cost and behind it at the rung: stopped; ahead of it: continues.
    assert not cost_peer_continue(rec(1, 0.5, 200.0, 2.0), [], eta=3, directions=DIRS3, anchors=[base])
    assert cost_peer_continue(rec(1, 0.7, 200.0, 2.0), [], eta=3, directions=DIRS3, anchors=[base])
    # Without the anchor the same trial is a first arrival and continues (the rule before anchors).
    assert cost_peer_continue(rec(1, 0.5, 200.0, 2.0), [], eta=3, directions=DIRS3)


def test_hv_asha_anchor_covers_volume_but_takes_no_slot() -> None:
    base = rec(0, 0.9, 5.0)
    # Inside the baseline's box: contributes nothing once the anchor is in the hypervolume.
    assert hv(rec(1, 0.5, 6.0), []) and not hv_contribution_continue(
        rec(1, 0.5, 6.0), [], eta=3, directions=DIRS2, reference=REF2, anchors=[base]
    )
    # Cheaper than the baseline: its own strip counts, and the anchor does not take the only slot.
    assert hv_contribution_continue(
        rec(1, 0.5, 2.0), [], eta=3, directions=DIRS2, reference=REF2, anchors=[base]
    )


# --- hv-asha: exclusive hypervolume contribution at the rung ---------------------------------------

REF2 = (0.0, 10.0)  # (accuracy, cost): accuracy above 0, cost below 10


def hv(x: RungRecord, comps: list[RungRecord], eta: int = 3) -> bool:
    return hv_contribution_continue(x, comps, eta=eta, directions=DIRS2, reference=REF2)


def test_hv_asha_stops_a_non_dominated_trial_that_adds_little() -> None:
    a = rec(0, 0.9, 5.0)  # box 5 x 0.9 = 4.5
    # b is cheaper than a (non-dominated) but adds only the strip [4, 5) x 0.1 = 0.1 against a's 4.0.
    assert not hv(rec(1, 0.1, 4.0), [a])
    assert should_continue(rec(1, 0.1, 4.0), [a], eta=3, directions=DIRS2)  # MO-ASHA keeps it
    # Equal exclusive contributions (2.0 each) are a tie at the cut: promoted.
    assert hv(rec(1, 0.5, 1.0), [a])
    assert hv(rec(1, 0.95, 5.0), [a])  # dominates a: all of the shared box is its own


def test_hv_asha_first_arrival_dominated_and_outside_reference() -> None:
    assert hv(rec(0, 0.0, 99.0), [])  # alone: continues whatever it is
    assert not hv(rec(1, 0.5, 6.0), [rec(0, 0.9, 5.0)])  # dominated: contributes nothing
    assert not hv(rec(1, 0.99, 11.0), [rec(0, 0.1, 5.0)])  # beyond the reference cost: nothing


def test_hv_asha_top_fraction_of_the_pool() -> None:
    from search.efficiency.pareto import hypervolume

    # An irregular staircase of six non-dominated points; eta 3 -> k = 2: the two points whose
    # exclusive contribution is largest continue, the other four stop.
    pool = [
        rec(i, a, c)
        for i, (a, c) in enumerate([(0.1, 1.0), (0.3, 2.0), (0.35, 3.0), (0.6, 5.0), (0.62, 6.0), (0.9, 9.0)])
    ]
    pts = [r.values for r in pool]
    total = hypervolume(pts, DIRS2, REF2)
    own = [total - hypervolume(pts[:i] + pts[i + 1 :], DIRS2, REF2) for i in range(6)]
    best_two = set(sorted(range(6), key=lambda i: -own[i])[:2])
    kept = {x.number for x in pool if hv(x, [r for r in pool if r is not x])}
    assert kept == best_two and len(set(own)) == 6


def test_hv_asha_through_the_spec_and_storage() -> None:
    from types import SimpleNamespace

    from search.efficiency.stopping import pruner_for
    from search.spec.schema import EarlyStoppingSpec, ObjectiveSpec

    spec = SimpleNamespace(
        early_stopping=EarlyStoppingSpec(rungs=(100,), eta=3, rule="hv-asha"),
        objectives=ObjectiveSpec(accuracy="pck_0.05", minimize=("params", "latency_ms")),
        hypervolume_reference={"accuracy": 0.0, "params": 1e6, "latency_ms": 10.0},
    )
    asha = pruner_for(spec)
    assert asha.rule == "hv-asha" and asha.reference == (0.0, 1e6, 10.0)
    study = _study()
    t0 = study.ask()
    stop_at_rung(asha, study, t0, 100, (0.8, 5e5, 5.0))
    t1 = study.ask()  # cheaper in both, much less accurate: a thin sliver of the volume
    with pytest.raises(optuna.TrialPruned):
        stop_at_rung(asha, study, t1, 100, (0.05, 4e5, 4.0))
    assert study.trials[1].user_attrs["stop_rung"] == 100
    assert pruner_for(spec, enabled=False).enabled is False
    assert pruner_for(spec, rule="mo-asha").rule == "mo-asha"


# --- behind-baseline -----------------------------------------------------------------------------


def test_behind_baseline_cuts_only_below_the_fraction_of_the_reference() -> None:
    ref = rec(0, 0.5, 1e5, 1.0)
    kw = {"fraction": 0.8, "directions": DIRS3}
    assert behind_baseline_continue(rec(1, 0.40, 9e9, 9.0), ref, **kw)  # exactly 0.8 x: continues
    assert not behind_baseline_continue(rec(1, 0.39, 1.0, 0.1), ref, **kw)  # cheap does not save it
    assert behind_baseline_continue(rec(1, 0.1, 1.0, 0.1), None, **kw)  # no reference yet: continues
    assert not behind_baseline_continue(rec(1, float("nan"), 1.0, 0.1), ref, **kw)  # diverged: stops
    # An error to minimise: at most 1/fraction x the reference's.
    assert behind_baseline_continue(rec(1, 2.5), rec(0, 2.0), fraction=0.8, directions=("minimize",))
    assert not behind_baseline_continue(rec(1, 2.6), rec(0, 2.0), fraction=0.8, directions=("minimize",))
    with pytest.raises(ValueError, match="^fraction"):
        ParetoASHA(rungs=[10], eta=2, directions=DIRS3, rule="behind-baseline", fraction=1.5)


def test_behind_baseline_reference_is_the_best_completed_baseline() -> None:
    """Through storage: the bar is the rung value of the baseline with the best *final* accuracy (not the
    best rung value), nothing is stopped before a baseline completes, and peers never matter."""
    study = _study()
    asha = ParetoASHA(rungs=[100], eta=3, directions=DIRS3, rule="behind-baseline", fraction=0.8)
    fast, slow = [], []  # slow: behind at the rung, best at the end (told below)
    for group, rung_acc in ((fast, 0.6), (slow, 0.3)):
        study.enqueue_trial({}, user_attrs={"role": "baseline"})
        t = study.ask()
        stop_at_rung(asha, study, t, 100, (rung_acc, 5e5, 2.0))
        group.append(t)
    early = study.ask()  # no baseline has completed: no reference yet
    stop_at_rung(asha, study, early, 100, (0.01, 1e4, 1.0))
    study.tell(early, [0.02, 1e4, 1.0])
    study.tell(fast[0], [0.70, 5e5, 2.0])
    study.tell(slow[0], [0.75, 5e5, 2.0])
    ok = study.ask()  # 0.25 >= 0.8 x 0.3 (the slow starter's rung value), though far below 0.8 x 0.6
    stop_at_rung(asha, study, ok, 100, (0.25, 1e4, 1.0))
    assert "stop_rung" not in study.trials[ok.number].user_attrs
    study.tell(ok, [0.5, 1e4, 1.0])
    behind = study.ask()  # every peer is behind it too; only the reference counts
    with pytest.raises(optuna.TrialPruned):
        stop_at_rung(asha, study, behind, 100, (0.23, 1e4, 1.0))
    assert study.trials[behind.number].user_attrs["stop_rung"] == 100


def test_behind_baseline_through_the_spec() -> None:
    from types import SimpleNamespace

    from search.efficiency.stopping import pruner_for
    from search.spec.schema import EarlyStoppingSpec, ObjectiveSpec

    es = EarlyStoppingSpec(rungs=(500,), rule="behind-baseline", fraction=0.7)
    spec = SimpleNamespace(
        early_stopping=es,
        objectives=ObjectiveSpec(accuracy="pck_0.05", minimize=("params", "latency_ms")),
        hypervolume_reference={"accuracy": 0.0, "params": 1e6, "latency_ms": 10.0},
    )
    asha = pruner_for(spec)
    assert (asha.rule, asha.fraction, asha.rungs) == ("behind-baseline", 0.7, (500,))
    # fraction enters the spec hash for this rule only: the other rules' specs keep the hash they had.
    assert es.to_dict()["fraction"] == 0.7
    assert "fraction" not in EarlyStoppingSpec(rungs=(500,), rule="cost-asha", fraction=0.7).to_dict()


def test_spec_and_stopping_name_the_same_rules() -> None:
    from search.efficiency.stopping import DEFAULT_FRACTION, RULES
    from search.spec.schema import DEFAULT_STOPPING_FRACTION, STOPPING_RULES

    assert RULES == STOPPING_RULES and DEFAULT_FRACTION == DEFAULT_STOPPING_FRACTION
