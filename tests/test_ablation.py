"""Ablation layer: spec parsing, grid expansion, resume, statistics and the report's numbers."""

from __future__ import annotations

import copy
import csv
import math
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest

from search.report.ablation import ablation_artifacts, ablation_report, bootstrap_interval, paired_t_interval
from search.spec.grid import ablation_trials, missing_trials, parse_ablation, validate_ablation
from search.spec.parse import SpecError, parse_spec
from search.spec.space import resolve_config

STUDIES = Path(__file__).resolve().parents[1] / "studies"

BASE = {
    "study": {"name": "abl-test", "n_trials": 12, "sampler": "random", "baseline": False},
    "data": {"dataset": "synthetic:medium", "n_train": 128, "n_val": 64, "n_test": 64},
    "train": {"steps": 10, "batch_size": 16, "warmup_steps": 2, "eval_every": 10},
    "model": {"embed_dim": 16, "depths": [1, 1], "patch_size": 4},
    "early_stopping": {"enabled": False},
    "ablation": {
        "seeds": 3,
        "factors": {"contexts": ["sequential", "independent"], "focal_levels": [2, 3]},
    },
}


def make_spec(**ablation) -> object:
    raw = copy.deepcopy(BASE)
    raw["ablation"].update(ablation)
    return parse_spec(raw, source="t.toml")


def spec_error(**ablation) -> SpecError:
    with pytest.raises(SpecError) as e:
        validate_ablation(make_spec(**ablation))
    assert "\n" not in str(e.value)
    return e.value


# ----------------------------------------------------------------------------------------------------------
# parsing and the grid


def test_parse_defaults_and_grid():
    ab = parse_ablation(make_spec())
    assert ab.factors == {"contexts": ("sequential", "independent"), "focal_levels": (2, 3)}
    assert ab.seeds == (0, 1, 2)
    assert ab.reference == {"contexts": "sequential", "focal_levels": 2}
    assert len(ab.cells()) == 4


def test_trials_are_grid_times_seeds_seed_major_and_paired():
    spec = make_spec(seeds=[5, 7], reference={"focal_levels": 3})
    trials = ablation_trials(spec)
    assert len(trials) == 4 * 2
    assert [t["seed"] for t in trials] == [5] * 4 + [7] * 4  # seed-major: interrupted runs stay balanced
    assert len({t["name"] for t in trials}) == 8
    t = trials[1]
    assert t["role"] == "cell" and t["name"] == "contexts=sequential,focal_levels=3,seed=5"
    assert t["cell"] == {"contexts": "sequential", "focal_levels": 3}
    assert t["overrides"] == {
        "model": {"focalnet": {"contexts": "sequential", "focal_levels": 3}},
        "train": {"seed": 5},
    }
    # Paired: every cell sees the same seeds and the same data/budget; only the factor fields differ.
    configs = [resolve_config(spec, {}, overrides=t["overrides"]) for t in trials]
    assert all(c["data"] == configs[0]["data"] for c in configs)
    assert {c["train"]["steps"] for c in configs} == {10}
    assert configs[1]["model"]["focalnet"]["focal_levels"] == 3
    assert configs[0]["model"]["focalnet"]["embed_dim"] == 16


def test_named_configs_and_train_factor():
    spec = make_spec(
        factors={"config": ["small", "deep", "baseline"], "train.lr": [1e-3, 2e-3]},
        configs={"small": {"embed_dim": 16}, "deep": {"embed_dim": 8, "depths": [2, 2]}},
        seeds=1,
    )
    trials = ablation_trials(spec)
    assert len(trials) == 6
    by = {t["name"]: t for t in trials}
    deep = resolve_config(spec, {}, overrides=by["config=deep,train.lr=0.002,seed=0"]["overrides"])
    assert deep["model"]["focalnet"]["depths"] == [2, 2] and deep["train"]["lr"] == 0.002
    base = resolve_config(spec, {}, overrides=by["config=baseline,train.lr=0.001,seed=0"]["overrides"])
    assert base["model"]["backbone"] == "baseline"


@pytest.mark.parametrize(
    ("ablation", "key", "words"),
    [
        ({"factors": {"contxts": ["sequential"]}}, "ablation.factors.contxts", "did you mean 'contexts'?"),
        ({"factors": {"focal_windows": [3, 4]}}, "ablation.factors.focal_windows", "level '4'"),
        ({"factors": {"patch_size": [4, 5]}}, "ablation.factors.patch_size", "must divide"),
        ({"seeds": 0}, "ablation.seeds", "at least one seed"),
        ({"seeds": []}, "ablation.seeds", "at least one seed"),
        ({"reference": {"contexts": "parallel"}}, "ablation.reference.contexts", "not a level"),
        ({"reference": {"embed_dim": 8}}, "ablation.reference.embed_dim", "not a factor"),
        ({"factors": {"focal_levels": []}}, "ablation.factors.focal_levels", "non-empty"),
        ({"factors": {"config": ["tiny"]}}, "ablation.factors.config", "unknown named config 'tiny'"),
        (
            {"factors": {"config": ["x"]}, "configs": {"x": {"embed_dimm": 8}}},
            "ablation.configs.x",
            "embed_dim",
        ),
        ({"factor": {}}, "ablation.factor", "did you mean 'ablation.factors'"),
        ({"factors": {"train.seed": [0, 1]}}, "ablation.factors.train.seed", "every cell runs every seed"),
    ],
)
def test_bad_specs_name_the_key(ablation, key, words):
    err = spec_error(**ablation)
    assert err.key == key
    assert str(err).startswith(f"t.toml: {key}") or f"'{key}'" in str(err)
    assert words in str(err)


def test_invalid_combination_is_reported_as_a_cell():
    # Each level is fine with the other at its reference (patch 4 + 4 stages; patch 32 + 1 stage), not combined.
    err = spec_error(factors={"patch_size": [4, 32], "num_stages": [1, 4]})
    assert err.key in ("ablation.factors", "ablation.factors.num_stages")


def test_search_spec_has_no_ablation():
    raw = copy.deepcopy(BASE)
    del raw["ablation"]
    assert validate_ablation(parse_spec(raw, source="t.toml")) is None


@pytest.mark.parametrize("path", sorted(STUDIES.glob("ablation_*.toml")), ids=lambda p: p.name)
def test_bundled_ablations_parse(path):
    from search.spec.parse import load_spec

    spec = load_spec(path)
    ab = parse_ablation(spec)
    n = len(ab.cells()) * len(ab.seeds)
    assert len(ablation_trials(spec)) == n
    assert spec.n_trials in (None, n)


# ----------------------------------------------------------------------------------------------------------
# statistics


def test_paired_t_interval_textbook():
    # Student (1908), "The probable error of a mean", Biometrika 6:1-25: extra hours of sleep, drug 2 minus
    # drug 1, ten patients (R's datasets::sleep). R: t.test(extra ~ group, data = sleep, paired = TRUE) prints
    # mean difference -1.58, 95 percent CI -2.4598858 -0.7001142 (group 1 - group 2; here the sign is flipped).
    d = [1.2, 2.4, 1.3, 1.3, 0.0, 1.0, 1.8, 0.8, 4.6, 1.4]
    mean, half, lo, hi = paired_t_interval(d)
    assert mean == pytest.approx(1.58)
    assert lo == pytest.approx(0.7001142, abs=1e-6) and hi == pytest.approx(2.4598858, abs=1e-6)
    assert half == pytest.approx((hi - lo) / 2)


def test_intervals_edge_cases():
    assert math.isnan(paired_t_interval([0.3])[1]) and paired_t_interval([0.3])[0] == 0.3
    assert all(math.isnan(v) for v in paired_t_interval([]))
    assert paired_t_interval([1.0, 1.0, 1.0])[1:] == (0.0, 1.0, 1.0)
    lo, hi = bootstrap_interval([1.0, 2.0, 3.0, 4.0], seed=0)
    assert (lo, hi) == bootstrap_interval([1.0, 2.0, 3.0, 4.0], seed=0)  # fixed RNG seed
    assert 1.0 <= lo < 2.5 < hi <= 4.0
    assert all(math.isnan(v) for v in bootstrap_interval([1.0]))


# ----------------------------------------------------------------------------------------------------------
# report and resume, from hand-made trials


def _value(cell: dict, seed: int) -> float:
    """A made-up test PCK@0.05: independent +0.02, 3 levels +0.01, plus seed noise."""
    noise = [0.0, 0.013, -0.007][seed]
    return (
        0.5
        + 0.02 * (cell["contexts"] == "independent")
        + 0.01 * (cell["focal_levels"] == 3)
        + noise
        + 0.001 * seed * (cell["contexts"] == "independent")
    )


def _study_with(spec, trials, *, states=None) -> optuna.Study:
    study = optuna.create_study(direction="maximize")
    for i, t in enumerate(trials):
        state = (states or {}).get(i, optuna.trial.TrialState.COMPLETE)
        v = _value(t["cell"], t["seed"])
        metrics = {"pck_0.05": v, "pck_0.1": v + 0.2, "pck_0.2": v + 0.3, "mpe_px": 10 * (1 - v), "nme": 0.1}
        attrs = {"role": "cell", "name": t["name"], "cell": t["cell"], "seed": t["seed"], "val": metrics,
                 "test": metrics, "params": 1000 + 10 * t["cell"]["focal_levels"], "flops": 2e6, "latency_ms": 1.5}  # fmt: skip
        if state != optuna.trial.TrialState.COMPLETE:
            attrs = {k: attrs[k] for k in ("role", "name")}
        study.add_trial(optuna.trial.create_trial(state=state, values=[v] if state.is_finished() and state == optuna.trial.TrialState.COMPLETE else None, user_attrs=attrs))  # fmt: skip
    return study


def test_report_numbers_match_direct_recomputation(tmp_path):
    spec = make_spec()
    trials = ablation_trials(spec)
    study = _study_with(spec, trials)
    text, rows = ablation_report(study, spec, csv_path=tmp_path / "a.csv")

    # Per cell: mean and sample std over the 3 seeds.
    cell = {"contexts": "independent", "focal_levels": 3}
    vals = [_value(cell, s) for s in range(3)]
    row = next(
        r
        for r in rows
        if r["section"] == "cell"
        and r["cell"] == "contexts=independent,focal_levels=3"
        and r["metric"] == "test.pck_0.05"
    )
    assert row["n"] == 3
    assert row["mean"] == pytest.approx(np.mean(vals)) and row["std"] == pytest.approx(np.std(vals, ddof=1))

    # Paired differences: per seed, averaged over the other factor's levels.
    diffs = [
        np.mean([_value({"contexts": "independent", "focal_levels": fl}, s) - _value({"contexts": "sequential", "focal_levels": fl}, s) for fl in (2, 3)])
        for s in range(3)
    ]  # fmt: skip
    row = next(
        r
        for r in rows
        if r["section"] == "diff" and r["factor"] == "contexts" and r["metric"] == "test.pck_0.05"
    )
    mean, half, lo, hi = paired_t_interval(diffs)
    assert row["level"] == "independent" and row["reference"] == "sequential" and row["n"] == 3
    assert (row["diff"], row["half_width"], row["ci_lo"], row["ci_hi"]) == pytest.approx((mean, half, lo, hi))
    assert (row["boot_lo"], row["boot_hi"]) == pytest.approx(bootstrap_interval(diffs))
    assert row["diff"] == pytest.approx(0.021)
    assert row["significant"] and "significant at 3 seeds" in row["verdict"]
    params = next(
        r
        for r in rows
        if r["section"] == "diff" and r["factor"] == "focal_levels" and r["metric"] == "params"
    )
    assert params["diff"] == pytest.approx(10.0) and params["half_width"] == 0.0

    assert "contexts=independent vs sequential: +2.1 ±" in text and "pp test PCK@0.05" in text
    assert "paired t-interval" in text and "bootstrap" in text
    with open(tmp_path / "a.csv") as f:
        csv_rows = list(csv.DictReader(f))
    assert len(csv_rows) == len(rows)
    assert float(csv_rows[0]["mean"]) == pytest.approx(rows[0]["mean"])


def test_report_one_seed_and_partial():
    spec = make_spec()
    trials = ablation_trials(spec)[:4]  # seed 0 only
    text, rows = ablation_report(_study_with(spec, trials), spec)
    assert "no interval with 1 seed" in text
    assert "4/12 trials complete" in text


def test_missing_trials_after_partial_run():
    spec = make_spec()
    trials = ablation_trials(spec)
    states = {
        1: optuna.trial.TrialState.FAIL,
        2: optuna.trial.TrialState.WAITING,
        3: optuna.trial.TrialState.PRUNED,
    }
    study = _study_with(spec, trials[:6], states=states)  # 6 of 12 in storage: 0,4,5 done, 2 queued
    missing = missing_trials(study, spec)
    assert [t["name"] for t in missing] == [trials[i]["name"] for i in (1, 3, *range(6, 12))]
    assert missing_trials(_study_with(spec, trials), spec) == []


def test_artifacts(tmp_path):
    spec = make_spec()
    study = _study_with(spec, ablation_trials(spec))
    paths = ablation_artifacts(study, spec, tmp_path)
    assert [p.name for p in paths] == ["ablation.csv", "ablation_report.txt", "ablation.png"]
    assert all(p.stat().st_size > 0 for p in paths)
    assert paths[2].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ----------------------------------------------------------------------------------------------------------
# end to end: the real objective trains the tiny grid (2 levels × 2 seeds), then the report reads it


def test_end_to_end_tiny_grid(tmp_path):
    from search.study.objective import Objective
    from search.task.data import load_dataset

    raw = copy.deepcopy(BASE)
    raw["data"] = {"dataset": "synthetic:medium", "n_train": 128, "n_val": 32, "n_test": 32}
    raw["latency"] = {"warmup": 1, "repeats": 3}
    raw["ablation"] = {"seeds": 2, "factors": {"contexts": ["sequential", "independent"]}}
    spec = parse_spec(raw, source="t.toml")
    d = spec.data
    data = load_dataset(
        d.dataset, n_train=d.n_train, n_val=d.n_val, n_test=d.n_test, seed=d.seed, cache_dir=tmp_path
    )
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(directions=spec.objectives.directions)
    trials = ablation_trials(spec)
    for t in trials:  # what open_study does for fixed trials, plus the cell/seed attrs
        study.enqueue_trial({}, user_attrs={"role": t["role"], "name": t["name"], "fixed_overrides": t["overrides"],
                                            "cell": t["cell"], "seed": t["seed"]})  # fmt: skip
    study.optimize(
        Objective(spec=spec, data=data, tracker=None, threads=1, progress=False), n_trials=len(trials)
    )
    assert missing_trials(study, spec) == []
    seeds = [t.user_attrs["config"]["train"]["seed"] for t in study.trials]
    assert seeds == [0, 0, 1, 1]
    text, rows = ablation_report(study, spec)
    assert "4/4 trials complete" in text and "contexts=independent vs sequential" in text
    assert next(r for r in rows if r["section"] == "diff" and r["metric"] == "test.pck_0.05")["n"] == 2


def test_head_factors_and_the_builtin_baseline():
    raw = copy.deepcopy(BASE)
    raw["model"]["head"] = {"kind": "simcc", "stage": 0}
    raw["ablation"] = {"seeds": 1, "factors": {"config": ["small", "baseline"], "head": {"kind": ["pool", "heatmap"]}},
                       "configs": {"small": {"embed_dim": 8, "head": {"hidden": [8]}}}}  # fmt: skip
    spec = parse_spec(raw, source="t.toml")
    trials = ablation_trials(spec)
    got = {}
    for t in trials:
        m = resolve_config(spec, {}, overrides=t["overrides"])["model"]
        got[t["name"]] = (m["backbone"], m["head"]["kind"], m["head"]["stage"], m["head"]["hidden"])
    assert got == {
        "config=small,head.kind=pool,seed=0": ("focalnet", "pool", 0, [8]),
        "config=small,head.kind=heatmap,seed=0": ("focalnet", "heatmap", 0, [8]),
        # the built-in baseline keeps the team's stage (last block); the factor sets its kind
        "config=baseline,head.kind=pool,seed=0": ("baseline", "pool", -1, [256]),
        "config=baseline,head.kind=heatmap,seed=0": ("baseline", "heatmap", -1, [256]),
    }
    assert parse_ablation(spec).configs["small"] == {
        "embed_dim": 8,
        "head": {"hidden": [8]},
    }  # not written into


def test_unknown_head_factor_is_refused():
    e = spec_error(factors={"head": {"knd": ["pool"]}})
    assert "unknown factor 'head.knd'" in str(e) and "head.kind" in str(e)


def _cell_models(spec_file: str) -> dict[str, Any]:
    """Each ``config`` cell of a bundled ablation spec as its resolved ``ModelConfig`` (one seed's trials)."""
    from focalnet import ModelConfig
    from search.spec.parse import load_spec
    from search.spec.space import resolve_config

    spec = load_spec(STUDIES / spec_file)
    trials = ablation_trials(spec)
    return {
        t["cell"]["config"]: ModelConfig.from_dict(
            resolve_config(spec, {}, overrides=t["overrides"])["model"]
        )
        for t in trials
        if t["seed"] == trials[0]["seed"]
    }


def test_depth_ablation_cells_are_matched_in_params_with_their_head():
    """ablation_depth.toml compares depth at equal size: with the spec's own head the two cells' whole
    keypoint models differ by < 1% in parameters (a head change must come with a re-matched width)."""
    from focalnet import build_model, count_params

    counts = {cell: count_params(build_model(m)) for cell, m in _cell_models("ablation_depth.toml").items()}
    assert set(counts) == {"tiny", "deep-thin"}
    assert abs(counts["deep-thin"] / counts["tiny"] - 1) < 0.01, counts


def test_backbone_ablation_cells_share_one_head_on_maps_of_one_size():
    """ablation_backbone.toml compares backbones, not heads: both cells are read by the same head kind
    from a map of the same side, so a head change in one cell alone cannot pass unnoticed."""
    read = {
        cell: (m.backbone, m.head.kind, m.stage_shapes[m.head.stage][-1])
        for cell, m in _cell_models("ablation_backbone.toml").items()
    }
    assert set(read) == {"baseline", "focalnet-small"}
    assert read["baseline"][0] == "baseline" and read["focalnet-small"][0] == "focalnet"
    assert read["baseline"][1:] == read["focalnet-small"][1:] == ("simcc", 8), read


def test_matched_embed_ablation_cells_are_matched_in_params_and_flops():
    """ablation_embed_matched.toml compares plain and overlapped embedding at equal cost: with the spec's
    head the two cells' whole models differ by < 1% in parameters and in FLOPs."""
    from focalnet import build_model, count_flops, count_params

    costs = {
        cell: (count_params(model), count_flops(model, 64))
        for cell, model in (
            (c, build_model(m)) for c, m in _cell_models("ablation_embed_matched.toml").items()
        )
    }
    assert set(costs) == {"plain", "overlapped-d30"}
    (p0, f0), (p1, f1) = costs["plain"], costs["overlapped-d30"]
    assert abs(p1 / p0 - 1) < 0.01 and abs(f1 / f0 - 1) < 0.01, costs
