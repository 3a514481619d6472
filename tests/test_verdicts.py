"""Verdicts (issue 9): the constant-predictor plateau, the baseline's learning-rate sweep, the seed check."""

from __future__ import annotations

import copy
import dataclasses
import math
from types import SimpleNamespace

import numpy as np
import optuna
import pytest
from scipy import stats

from search.report.ablation import ablation_report
from search.report.budget import budget_used
from search.report.records import study_records
from search.report.seed_check import (
    missing_verify_trials,
    reference_baseline,
    verify_lines,
    verify_rows,
    verify_trials,
    welch_interval,
)
from search.report.text import report_text, trial_summary_line
from search.spec.grid import ablation_trials
from search.spec.parse import SpecError, parse_spec
from search.spec.space import fixed_trials, resolve_config
from search.task.plateau import (
    PLATEAU_MARGIN,
    constant_metrics,
    constant_positions,
    left_plateau_step,
    plateau_label,
)

State = optuna.trial.TrialState

RAW = {
    "study": {
        "name": "v",
        "n_trials": 6,
        "sampler": "random",
        "baseline_lrs": [1e-3, 4e-3],
        "verify_seeds": 3,
    },
    "data": {"dataset": "synthetic:easy", "n_train": 512, "n_val": 128, "n_test": 64},
    "train": {"steps": 200, "batch_size": 32, "warmup_steps": 20, "eval_every": 50},
    "model": {"embed_dim": 8, "depths": [1], "patch_size": 8},
    "latency": {"warmup": 1, "repeats": 3},
    "early_stopping": {"enabled": False},
}


def make_spec(**study) -> object:
    raw = copy.deepcopy(RAW)
    raw["study"].update(study)
    raw["study"] = {k: v for k, v in raw["study"].items() if v is not None}
    return parse_spec(raw, source="v.toml")


# ----------------------------------------------------------------------------------------------------------
# the constant predictor and the plateau rule


def _split(kp: list, vis: list, size: int = 8) -> SimpleNamespace:
    kp = np.asarray(kp, np.float32)
    return SimpleNamespace(
        images=np.zeros((len(kp), 3, size, size), np.uint8),
        keypoints=kp,
        visibility=np.asarray(vis, np.uint8),
    )


def test_constant_predictor_equals_hand_computation() -> None:
    # joint 0 labelled at (1, 1) and (3, 5), outside at (7, 7): mean (2, 3); joint 1 never labelled: the
    # centre of an 8 px patch, (3.5, 3.5).
    train = _split([[[1, 1], [0, 0]], [[3, 5], [6, 6]], [[7, 7], [1, 2]]], [[2, 0], [1, 0], [0, 0]])
    assert constant_positions(train).tolist() == [[2.0, 3.0], [3.5, 3.5]]
    # val: joint 0 exactly at the mean (error 0), joint 1 one pixel below the centre (error 1), a third
    # joint unlabelled. Thresholds at 8 px: 0.4, 0.8, 1.6 px.
    val = _split([[[2, 3], [3.5, 4.5]], [[0, 0], [0, 0]]], [[2, 1], [0, 0]])
    test = _split([[[4, 3], [3.5, 3.5]]], [[2, 2]])  # errors 2 and 0
    data = SimpleNamespace(train=train, val=val, test=test, img_size=8)
    c = constant_metrics(data)
    assert (c["val"]["pck_0.05"], c["val"]["pck_0.1"], c["val"]["pck_0.2"]) == (0.5, 0.5, 1.0)
    assert c["val"]["mpe_px"] == pytest.approx(0.5)
    assert (c["test"]["pck_0.05"], c["test"]["pck_0.2"]) == (0.5, 0.5)
    assert c["test"]["mpe_px"] == pytest.approx(1.0)
    assert c["margin"] == PLATEAU_MARGIN and c["positions"] == [[2.0, 3.0], [3.5, 3.5]]


def test_left_plateau_step() -> None:
    assert left_plateau_step([[300, 0.4], [100, 0.2], [200, 0.26]], 0.2) == 200  # order-free, >= counts
    assert left_plateau_step([[100, 0.24], [200, 0.249]], 0.2) is None
    assert left_plateau_step([[100, math.nan], [200, 0.3]], 0.2) == 200  # NaN never counts
    assert left_plateau_step([[100, 0.3]], 0.2, margin=0.2) is None
    assert plateau_label(None) == "never" and plateau_label(250) == "left@250"


def _objective_run(spec, data, tmp_path) -> optuna.Study:
    """One baseline trial through the real Objective, on an in-memory study."""
    from search.study.objective import Objective

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(directions=spec.objectives.directions)
    study.set_user_attr("constant_predictor", constant_metrics(data))
    ft = fixed_trials(spec)[1]  # the baseline at lr 4e-3
    study.enqueue_trial(
        {}, user_attrs={"role": ft["role"], "name": ft["name"], "fixed_overrides": ft["overrides"]}
    )
    study.optimize(Objective(spec=spec, data=data, tracker=None, threads=1, progress=False), n_trials=1)
    return study


@pytest.mark.slow  # trains two models
def test_plateau_flag_set_for_a_constant_run_and_unset_for_a_learning_one(tmp_path) -> None:
    from search.task.data import load_dataset

    spec = make_spec()
    d = spec.data
    data = load_dataset(d.dataset, n_train=d.n_train, n_val=d.n_val, n_test=d.n_test, cache_dir=tmp_path)
    # Blank images: the model cannot see anything, so the best it can do is a constant.
    blank = dataclasses.replace(
        data,
        **{s: dataclasses.replace(getattr(data, s), images=np.zeros_like(getattr(data, s).images)) for s in ("train", "val", "test")},
    )  # fmt: skip
    stuck = _objective_run(spec, blank, tmp_path)
    learns = _objective_run(spec, data, tmp_path)
    for study, expect in ((stuck, None), (learns, int)):
        t = study.trials[0]
        assert t.state == State.COMPLETE
        assert "left_plateau_step" in t.user_attrs
        step = t.user_attrs["left_plateau_step"]
        bar = study.user_attrs["constant_predictor"]["val"]["pck_0.05"] + PLATEAU_MARGIN
        if expect is None:
            assert step is None and max(a for _, a in t.user_attrs["curve"]) < bar
            assert study_records(study, spec)[0]["plateau"] == "never"
            assert "never left the plateau" in report_text(study, spec)
        else:
            assert isinstance(step, int) and step in (50, 100, 150, 200)
            assert dict(map(tuple, t.user_attrs["curve"]))[step] >= bar
            assert study_records(study, spec)[0]["plateau"] == f"left@{step}"
            assert "never left" not in report_text(study, spec)


# ----------------------------------------------------------------------------------------------------------
# spec options and the baseline sweep


def test_baseline_lrs_become_a_fixed_sweep() -> None:
    spec = make_spec()
    fixed = fixed_trials(spec)
    assert [(t["role"], t["name"]) for t in fixed] == [
        ("baseline", "baseline-lr0.001"),
        ("baseline", "baseline-lr0.004"),
    ]
    for t, lr in zip(fixed, (1e-3, 4e-3), strict=True):
        cfg = resolve_config(spec, {}, overrides=t["overrides"])
        assert cfg["model"]["backbone"] == "baseline" and cfg["train"]["lr"] == lr
    assert fixed_trials(make_spec(baseline_lrs=None))[0]["name"] == "baseline"


@pytest.mark.parametrize(
    ("study", "key"),
    [
        ({"baseline_lrs": []}, "study.baseline_lrs"),
        ({"baseline_lrs": [1e-3, 1e-3]}, "study.baseline_lrs"),
        ({"baseline_lrs": [1.5]}, "study.baseline_lrs[0]"),
        ({"baseline_lrs": ["x"]}, "study.baseline_lrs[0]"),
        ({"baseline": False}, "study.baseline_lrs"),
        ({"verify_seeds": -1}, "study.verify_seeds"),
        ({"verify_seeds": 1.5}, "study.verify_seeds"),
    ],
)
def test_bad_options_name_the_key(study: dict, key: str) -> None:
    with pytest.raises(SpecError) as e:
        make_spec(**study)
    assert e.value.key == key and "\n" not in str(e.value)


def test_options_refused_in_an_ablation_and_hash_unchanged_when_unused() -> None:
    raw = copy.deepcopy(RAW)
    raw["study"] = {"name": "a", "n_trials": 2, "baseline": False, "verify_seeds": 2}
    raw["ablation"] = {"seeds": 2, "factors": {"contexts": ["sequential", "independent"]}}
    with pytest.raises(SpecError, match="study.verify_seeds: not used by an ablation"):
        parse_spec(raw, source="a.toml")
    plain = make_spec(baseline_lrs=None, verify_seeds=None)
    assert make_spec(baseline_lrs=None, verify_seeds=0).spec_hash == plain.spec_hash
    assert make_spec(baseline_lrs=None).spec_hash != plain.spec_hash


# ----------------------------------------------------------------------------------------------------------
# the seed check, on hand-made studies


def _metrics(acc: float) -> dict[str, float]:
    return {"pck_0.05": acc, "pck_0.1": acc + 0.1, "pck_0.2": acc + 0.2, "mpe_px": 10 * (1 - acc), "nme": 0.1}


def _add(study, spec, number_role_name, *, acc=None, test=None, params=1000, lat=1.0, state=State.COMPLETE,
         overrides=None, plateau=100, **attrs) -> None:  # fmt: skip
    role, name = number_role_name
    cfg = resolve_config(spec, {}, overrides=overrides or {})
    ua = {
        "role": role,
        "name": name,
        "config": cfg,
        "params": params,
        "flops": 1e6,
        "latency_ms": lat,
        **attrs,
    }
    values = None
    if state == State.COMPLETE:
        ua |= {
            "val": _metrics(acc),
            "test": _metrics(acc if test is None else test),
            "left_plateau_step": plateau,
        }
        values = [acc, params, lat]
    if state == State.FAIL:
        ua.setdefault("fail_reason", "training diverged at step 3: loss is nan")
    study.add_trial(optuna.trial.create_trial(state=state, values=values, user_attrs=ua))


def _searched(spec) -> optuna.Study:
    """0, 1: baseline sweep (1 is better); 2: a small FocalNet on the front; 3: dominated; 4: stopped."""
    study = optuna.create_study(directions=spec.objectives.directions)
    base = {"model": {"backbone": "baseline"}}
    _add(study, spec, ("baseline", "baseline-lr0.001"), acc=0.60, params=500_000, lat=0.5, overrides=base)
    _add(study, spec, ("baseline", "baseline-lr0.004"), acc=0.65, params=500_000, lat=0.5,
         overrides={**base, "train": {"lr": 4e-3}})  # fmt: skip
    _add(study, spec, ("search", "t002"), acc=0.70, params=100_000, lat=2.0)
    _add(study, spec, ("search", "t003"), acc=0.50, params=900_000, lat=3.0)
    _add(study, spec, ("search", "t004"), state=State.PRUNED)
    return study


def test_reference_baseline_is_the_best_val_member_of_the_sweep() -> None:
    spec = make_spec()
    records = study_records(_searched(spec), spec)
    assert reference_baseline(records)["number"] == 1
    assert [r["number"] for r in records if r["reference"]] == [1]
    assert [r["number"] for r in records if r["pareto"]] == [1, 2]
    text = report_text(_searched(spec), spec)
    assert "baseline (best of 2 lrs: trial 1, lr 0.004)" in text
    assert "BASELINE (reference: best val of 2 lrs)" in text and "baseline, other lr" in text


def test_summary_line_of_a_skipped_trial_shows_no_accuracy() -> None:
    """An over-budget trial is recorded with a placeholder accuracy; the line must not print it as a result."""
    spec = make_spec()
    study = _searched(spec)
    _add(
        study, spec, ("search", "t005-big"), acc=0.0, params=4_000_000, lat=9.0, skipped="over budget: params"
    )
    skipped, trained = study.trials[-1], study.trials[2]
    line = trial_summary_line(study, spec, skipped, t_start=0.0, n_trials=10)
    assert "SKIPPED over budget: params (not trained)" in line and "pck_0.05=" not in line
    assert "val pck_0.05=0.700" in trial_summary_line(study, spec, trained, t_start=0.0, n_trials=10)


def test_verify_plan_is_front_plus_reference_times_fresh_seeds() -> None:
    spec = make_spec()
    records = study_records(_searched(spec), spec)
    plan = verify_trials(records, spec)
    assert [(t["verifies"], t["seed"]) for t in plan] == [(n, s) for n in (1, 2) for s in (1, 2, 3)]
    assert {t["role"] for t in plan} == {"verify"}
    assert plan[0]["name"] == "verify-t001-seed1"
    for t in plan:
        source = records[t["verifies"]]["config"]
        cfg = resolve_config(spec, {}, overrides=t["overrides"])
        assert cfg["train"]["seed"] == t["seed"] and cfg["train"]["lr"] == source["train"]["lr"]
        assert cfg["model"] == source["model"]
    assert verify_trials(records, make_spec(verify_seeds=1))[0]["seed"] == 1


def test_resume_queues_only_missing_seeds_and_verify_never_changes_the_front() -> None:
    spec = make_spec()
    study = _searched(spec)
    front = [r["number"] for r in study_records(study, spec) if r["pareto"]]
    used = budget_used(study)
    plan = {(t["verifies"], t["seed"]): t for t in verify_trials(study_records(study, spec), spec)}
    v = lambda n, s: {"verifies": n, "seed": s, "overrides": plan[(n, s)]["overrides"]}  # noqa: E731
    # a seed check run far better and cheaper than everything: it must not enter the front
    _add(study, spec, ("verify", "verify-t002-seed1"), acc=0.99, params=10, lat=0.1, **v(2, 1))
    _add(
        study,
        spec,
        ("verify", "verify-t002-seed2"),
        state=State.FAIL,
        fail_reason="interrupted (Ctrl-C)",
        **v(2, 2),
    )
    _add(study, spec, ("verify", "verify-t002-seed3"), state=State.FAIL, **v(2, 3))  # diverged: not rerun
    _add(study, spec, ("verify", "verify-t001-seed1"), state=State.WAITING, **v(1, 1))
    records = study_records(study, spec)
    assert [r["number"] for r in records if r["pareto"]] == front
    assert not any(r["dominates_baseline"] for r in records if r["role"] == "verify")
    assert budget_used(study) == (used[0], 1)  # seed checks never use the search's budget
    missing = missing_verify_trials(study, spec, records)
    assert [(t["verifies"], t["seed"]) for t in missing] == [(1, 2), (1, 3), (2, 2)]
    assert missing_verify_trials(study, make_spec(verify_seeds=0), records) == []


def test_verify_rows_welch_verdicts_and_report() -> None:
    spec = make_spec()
    study = _searched(spec)
    plan = {(t["verifies"], t["seed"]): t for t in verify_trials(study_records(study, spec), spec)}
    ref_test, fn_test = [0.60, 0.61, 0.62], [0.70, 0.72, 0.71]
    for s in (1, 2, 3):
        for n, tests in ((1, ref_test), (2, fn_test)):
            _add(study, spec, ("verify", f"verify-t{n:03d}-seed{s}"), acc=0.5, test=tests[s - 1],
                 verifies=n, seed=s, overrides=plan[(n, s)]["overrides"], plateau=None if n == 2 and s == 3 else 40)  # fmt: skip
    rows = {r["number"]: r for r in verify_rows(study_records(study, spec), spec)}
    assert rows[1]["reference"] and rows[1]["verdict"] == "reference baseline"
    r = rows[2]
    assert r["n"] == 3 and r["seeds"] == [1, 2, 3] and r["search_val"] == 0.70
    assert r["test_mean"] == pytest.approx(np.mean(fn_test)) and r["test_std"] == pytest.approx(
        np.std(fn_test, ddof=1)
    )
    assert (r["diff"], r["half_width"], r["ci_lo"], r["ci_hi"]) == pytest.approx(
        welch_interval(fn_test, ref_test)
    )
    assert r["verdict"] == "better than the baseline beyond seed noise; 1/3 seeds never left the plateau"
    text = "\n".join(verify_lines(study_records(study, spec), spec))
    assert "Welch t-interval" in text and "fresh seeds 1, 2, 3" in text and "+0.100 [" in text


def test_welch_interval_matches_scipy() -> None:
    a, b = [0.50, 0.55, 0.61, 0.58], [0.40, 0.41, 0.47]
    diff, half, lo, hi = welch_interval(a, b)
    ci = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert (lo, hi) == pytest.approx((ci.low, ci.high))
    assert diff == pytest.approx(np.mean(a) - np.mean(b)) and half == pytest.approx((hi - lo) / 2)
    assert math.isnan(welch_interval([0.5], b)[1]) and math.isnan(welch_interval([], b)[0])
    assert welch_interval([0.5, 0.5], [0.4, 0.4]) == pytest.approx((0.1, 0.0, 0.1, 0.1))


# ----------------------------------------------------------------------------------------------------------
# the ablation says when its cells sit on the plateau


def _ablation(left: dict[str, int | None]):
    raw = copy.deepcopy(RAW)
    raw["study"] = {"name": "a", "n_trials": 4, "baseline": False}
    raw["ablation"] = {"seeds": 2, "factors": {"contexts": ["sequential", "independent"]}}
    spec = parse_spec(raw, source="a.toml")
    study = optuna.create_study(direction="maximize")
    study.set_user_attr("constant_predictor", {"val": _metrics(0.19), "test": _metrics(0.19), "margin": 0.05})
    for t in ablation_trials(spec):
        acc = 0.5 if t["cell"]["contexts"] == "sequential" else 0.2 + 0.001 * t["seed"]
        ua = {"role": "cell", "name": t["name"], "cell": t["cell"], "seed": t["seed"], "val": _metrics(acc),
              "test": _metrics(acc), "params": 1000, "flops": 1e6, "latency_ms": 1.0,
              "left_plateau_step": left[t["cell"]["contexts"]]}  # fmt: skip
        study.add_trial(optuna.trial.create_trial(state=State.COMPLETE, values=[acc], user_attrs=ua))
    return study, spec


def test_ablation_verdict_names_cells_on_the_plateau() -> None:
    text, rows = ablation_report(*_ablation({"sequential": 100, "independent": None}))
    verdict = next(r["verdict"] for r in rows if r.get("verdict"))
    assert "significant at 2 seeds" in verdict  # the numbers stay; the reading changes
    assert "2/2 runs with contexts=independent and 0/2 with sequential never left" in verdict
    assert "measures escaping the plateau, not the architecture" in verdict
    assert (
        "contexts=independent  " in text
        and "2/2" in text
        and "constant predictor: val pck_0.05=0.190" in text
    )
    text, rows = ablation_report(*_ablation({"sequential": None, "independent": None}))
    assert "both sides sit on the plateau, no architecture effect can be read" in text
    text, rows = ablation_report(*_ablation({"sequential": 100, "independent": 200}))
    assert "plateau" not in next(r["verdict"] for r in rows if r.get("verdict"))


# ----------------------------------------------------------------------------------------------------------
# the Pareto plots mark the plateau


def test_pareto_axes_mark_plateau_constant_and_seed_check() -> None:
    from matplotlib.figure import Figure

    from search.report.plots import _pareto_axes

    def rec(n, role, acc, params, plateau, **kw):
        return {"number": n, "state": "COMPLETE", "role": role, "name": f"t{n}", "feasible": True, "pareto": False,
                "values": {"accuracy": acc, "params": params, "latency_ms": 1.0}, "plateau": plateau, **kw}  # fmt: skip

    records = [
        rec(0, "baseline", 0.6, 5e5, "left@40", reference=True),
        rec(1, "baseline", 0.5, 5e5, "left@80"),
        rec(2, "search", 0.7, 1e5, "left@40"),
        rec(3, "search", 0.2, 1e4, "never"),
        rec(4, "verify", 0.9, 1e5, "left@40", verifies=2),
        rec(5, "verify", 0.8, 1e5, "left@40", verifies=2),
    ]
    ax = Figure().add_subplot()
    _pareto_axes(ax, records, x_key="params", x_label="p", y_label="acc", constant=0.19)
    handles, labels = ax.get_legend_handles_labels()
    for want in ("trials", "trials (never left the plateau)", "constant predictor", "seed check (mean ± std)",
                 "baseline", "baseline, other lr"):  # fmt: skip
        assert want in labels
    hollow = handles[labels.index("trials (never left the plateau)")]
    assert hollow.get_facecolor().size == 0 or hollow.get_facecolor()[0][3] == 0  # no fill
    assert handles[labels.index("trials")].get_facecolor()[0][3] > 0
    line = handles[labels.index("constant predictor")]
    assert list(line.get_ydata()) == [0.19, 0.19]
    # seed-check runs are not drawn as trials: one filled and one hollow blue point (trials 2 and 3)
    assert len(handles[labels.index("trials")].get_offsets()) == 1
    assert len(hollow.get_offsets()) == 1
