"""The region of interest: a trial that never left the plateau, or whose val is below the floor, is never a
Pareto member — in the records, the hypervolume, the plots, pareto.csv and the seed-check plan."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from matplotlib.figure import Figure

from search.report.plots import _pareto_axes, pareto_table
from search.report.records import study_records
from search.report.seed_check import verify_trials
from search.report.text import report_text
from search.spec.parse import SpecError, parse_spec
from tests.test_verdicts import RAW, _add, make_spec, optuna


def _study(spec) -> optuna.Study:
    """0: reference baseline (0.65); 1: cheapest and best (on the front); 2: cheaper still but never left
    the plateau; 3: the fewest params of all but below the floor (0.50 < 0.65 - 0.10)."""
    study = optuna.create_study(directions=spec.objectives.directions)
    _add(study, spec, ("baseline", "baseline"), acc=0.65, params=500_000, lat=0.5,
         overrides={"model": {"backbone": "baseline"}})  # fmt: skip
    _add(study, spec, ("search", "t001"), acc=0.70, params=100_000, lat=2.0)
    _add(study, spec, ("search", "t002-plateau"), acc=0.20, params=50_000, lat=0.4, plateau=None)
    _add(study, spec, ("search", "t003-low"), acc=0.50, params=10_000, lat=3.0)
    return study


def test_plateau_and_below_floor_trials_are_never_pareto_members(tmp_path: Path) -> None:
    spec = make_spec()
    records = study_records(_study(spec), spec)
    by = {r["name"]: r for r in records}
    assert by["t002-plateau"]["region"] == "plateau" and by["t003-low"]["region"] == "below floor"
    assert by["t001"]["region"] == "in" and by["baseline"]["region"] == "in"
    assert by["t001"]["floor"] == pytest.approx(0.55)
    # Without the region both would be members (fewest params, lowest latency); with it, neither is.
    assert sorted(r["name"] for r in records if r["pareto"]) == ["baseline", "t001"]
    # pareto.csv says so
    with open(pareto_table(records, tmp_path / "pareto.csv")) as f:
        rows = {r["name"]: r for r in csv.DictReader(f)}
    assert rows["t002-plateau"]["pareto"] == "false" and rows["t002-plateau"]["region"] == "plateau"
    assert rows["t003-low"]["pareto"] == "false" and rows["t003-low"]["region"] == "below floor"
    # the seed check retrains the front inside the region and the reference only
    assert {t["verifies"] for t in verify_trials(records, spec)} == {0, 1}
    text = report_text(_study(spec), spec)
    assert (
        "region of interest: off the plateau and val pck_0.05 >= 0.550" in text and "2 trials outside" in text
    )


def test_floor_is_a_spec_setting() -> None:
    raw = {**RAW, "objectives": {"floor": 0.45}}
    spec = parse_spec(raw, source="v.toml")
    records = study_records(_study(spec), spec)
    assert {r["name"]: r["region"] for r in records}["t003-low"] == "in"
    assert any(r["pareto"] and r["name"] == "t003-low" for r in records)
    raw = {**RAW, "objectives": {"floor_below_baseline": 0.0}}
    spec = parse_spec(raw, source="v.toml")
    assert study_records(_study(spec), spec)[1]["floor"] == pytest.approx(0.65)
    with pytest.raises(SpecError, match="objectives.floor: conflicts"):
        parse_spec({**RAW, "objectives": {"floor": 0.4, "floor_below_baseline": 0.1}}, source="v.toml")
    # unchanged defaults keep the spec hash a spec without the keys had
    assert (
        parse_spec({**RAW, "objectives": {"floor_below_baseline": 0.1}}, source="v").spec_hash
        == make_spec().spec_hash
    )


def test_hypervolume_counts_the_region_only() -> None:
    from search.efficiency.pareto import hypervolume
    from search.report.records import IN_REGION, objective_points, value_names

    spec = make_spec()
    records = study_records(_study(spec), spec)
    done = [r for r in records if r["values"] is not None and r["region"] == IN_REGION]
    ref = [spec.hypervolume_reference[n] for n in value_names(spec)]
    inside = hypervolume(objective_points(done, value_names(spec)), spec.objectives.directions, ref)
    everything = [r for r in records if r["values"] is not None]
    allhv = hypervolume(objective_points(everything, value_names(spec)), spec.objectives.directions, ref)
    assert 0 < inside < allhv  # the low and the plateau trial would have added volume


def test_each_plot_draws_its_pairs_front_and_says_why_a_member_is_off_it() -> None:
    spec = make_spec()
    records = study_records(_study(spec), spec)
    # latency: the baseline (0.5 ms) and t001 (2.0 ms, better) are both on this pair's front
    ax = Figure().add_subplot()
    _pareto_axes(ax, records, x_key="latency_ms", x_label="ms", y_label="acc")
    handles, labels = ax.get_legend_handles_labels()
    assert "outside the region of interest (plateau or below the floor)" in labels
    assert (
        len(
            handles[labels.index("outside the region of interest (plateau or below the floor)")].get_offsets()
        )
        == 2
    )
    assert len(handles[labels.index("Pareto member")].get_offsets()) == 2
    assert any(lab.startswith("accuracy floor 0.550") for lab in labels)


def test_a_member_dominated_in_a_pair_gets_a_labelled_ring() -> None:
    def rec(n, acc, params, lat):
        return {"number": n, "state": "COMPLETE", "role": "search", "name": f"t{n}", "feasible": True,
                "pareto": True, "region": "in", "values": {"accuracy": acc, "params": params, "latency_ms": lat}}  # fmt: skip

    # t2 is on the front by latency only: in the params pair t1 dominates it
    records = [rec(1, 0.7, 100_000, 2.0), rec(2, 0.6, 200_000, 0.5)]
    ax = Figure().add_subplot()
    _pareto_axes(ax, records, x_key="params", x_label="p", y_label="acc")
    handles, labels = ax.get_legend_handles_labels()
    assert len(handles[labels.index("Pareto member")].get_offsets()) == 1
    off = handles[labels.index("Pareto member by another cost (dominated in this pair)")]
    assert off.get_offsets().tolist() == [[200_000, 0.6]]
    ax = Figure().add_subplot()
    _pareto_axes(ax, records, x_key="latency_ms", x_label="ms", y_label="acc")
    handles, labels = ax.get_legend_handles_labels()
    assert len(handles[labels.index("Pareto member")].get_offsets()) == 2
    assert "Pareto member by another cost (dominated in this pair)" not in labels


def test_progress_eta_stops_at_the_timeout() -> None:
    """The search's ETA is the per-trial mean times the trials left, but no trial starts after the timeout."""
    from optuna.distributions import FloatDistribution
    from optuna.trial import TrialState, create_trial

    from search.report.text import _search_progress

    done = [
        create_trial(
            state=TrialState.COMPLETE,
            values=[0.5, 1.0, 1.0],
            params={"x": 0.5},
            distributions={"x": FloatDistribution(0, 1)},
            user_attrs={"role": "search"},
        )
        for _ in range(4)
    ]
    # 4 trials in 400 s: 26 left at 100 s each = 2600 s without a timeout
    assert " ETA 43m20s " in _search_progress(done, [], n_trials=30, elapsed=400.0)
    # a 30-minute timeout: 1400 s until it, plus the trial that is then still running
    assert " ETA 25m00s " in _search_progress(done, [], n_trials=30, elapsed=400.0, timeout_s=1800.0)


def test_seed_check_eta_is_shared_among_the_running_workers() -> None:
    import datetime as dt

    from optuna.trial import TrialState, create_trial

    from search.report.text import seed_check_progress

    t0 = dt.datetime(2026, 1, 1)
    done = [
        create_trial(
            state=TrialState.COMPLETE, values=[0.7, 1.0, 1.0], user_attrs={"role": "verify", "verifies": 0}
        )
        for _ in range(2)
    ]
    for t in done:  # each took its source trial's 100 s: pace 1
        t.datetime_start, t.datetime_complete = t0, t0 + dt.timedelta(seconds=100)
    running = create_trial(state=TrialState.RUNNING, user_attrs={"role": "verify", "verifies": 1})
    waiting = [
        create_trial(state=TrialState.WAITING, user_attrs={"role": "verify", "verifies": 1}) for _ in range(4)
    ]
    records = [{"number": 0, "wall_s": 100.0}, {"number": 1, "wall_s": 300.0}]
    # 5 trainings of 300 s left, 2 at once (the one running, and the worker that just finished): 750 s
    line = seed_check_progress([*done, running, *waiting], records, elapsed=200.0)
    assert line == "[seed check 2/7 3m20s ETA 12m30s]"
    # the last one, running alone: its own 300 s
    assert seed_check_progress([*done, running], records, elapsed=200.0).endswith("ETA 5m00s]")
