"""Search space: sampling, resolving and up-front checks (search.spec.space)."""

from __future__ import annotations

import dataclasses
import json
import tomllib
from pathlib import Path

import optuna
import pytest

from focalnet import FocalNetConfig, ModelConfig, build_model, max_stages
from focalnet.config import fold_legacy_head_keys
from search.spec.parse import SpecError, StudySpec, load_spec, parse_spec
from search.spec.space import (
    BASELINE_OVERRIDES,
    VARIANTS,
    check_space,
    fixed_trials,
    resolve_config,
    sample_params,
)
from search.task.train_config import TrainConfig

STUDIES = Path(__file__).resolve().parents[1] / "studies"
MINIMAL = '[study]\nname = "t"\nn_trials = 3\nseed = 7\n[train]\nsteps = 50\n'


def parse(text: str) -> StudySpec:
    return parse_spec(tomllib.loads(text), source="t.toml")


def _check_config(spec: StudySpec, params: dict, config: dict) -> FocalNetConfig:
    assert json.loads(json.dumps(config)) == config
    model = ModelConfig.from_dict(config["model"])
    TrainConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in config["train"].items()})
    fn = model.focalnet
    assert len(fn.depths) <= max_stages(fn.img_size, fn.patch_size)
    for name, value in params.items():
        prefix, _, leaf = name.partition(".")
        if prefix == "train":
            assert config["train"][leaf] == value
        elif prefix == "head":
            assert getattr(model.head, leaf) == value
        elif prefix == "model":
            assert getattr(model, leaf) == value
        elif leaf == "num_stages":
            assert fn.num_stages == value
        elif leaf == "depth":
            assert fn.depths[0] == value
        elif leaf == "mid_depth_ratio":
            assert fn.depths[2] == fn.depths[0] * value
        else:
            assert getattr(fn, leaf) == value
    return fn


@pytest.mark.parametrize("sampler", ["random", "tpe", "nsga2"])
@pytest.mark.parametrize("study_file", ["default.toml", "example.toml"])
def test_sampled_architectures_are_always_valid(sampler: str, study_file: str) -> None:
    spec = load_spec(STUDIES / study_file)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    samplers = {
        "random": optuna.samplers.RandomSampler(seed=0),
        "tpe": optuna.samplers.TPESampler(seed=0, n_startup_trials=10),
        # NSGA-II crosses parents over, so its children are new combinations of conditional parameters.
        "nsga2": optuna.samplers.NSGAIISampler(seed=0, population_size=8),
    }
    study = optuna.create_study(directions=spec.objectives.directions, sampler=samplers[sampler])
    stage_counts = set()
    for i in range(50):
        trial = study.ask()
        params = sample_params(trial, spec)
        assert params == trial.params
        fn = _check_config(spec, params, resolve_config(spec, params))
        stage_counts.add((fn.patch_size, fn.num_stages, fn.embed_dim))
        if fn.num_stages < 3:
            assert "arch.mid_depth_ratio" not in params
        study.tell(trial, [((i * 37) % 11) / 10, float(i % 7), float(i % 5)])
    assert len(stage_counts) > 3  # the space is actually explored (layouts x widths)


def test_num_stages_upper_bound_clipped_per_patch_size() -> None:
    spec = parse(
        MINIMAL
        + "[space]\n'arch.patch_size' = { choices = [8, 16] }\n'arch.num_stages' = { low = 1, high = 6 }\n"
    )
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    seen = {8: set(), 16: set()}
    for _ in range(60):
        trial = study.ask()
        params = sample_params(trial, spec)
        seen[params["arch.patch_size"]].add(params["arch.num_stages"])
        study.tell(trial, 0.0)
    assert max(seen[16]) == max_stages(64, 16) == 3
    assert max(seen[8]) == max_stages(64, 8) == 4


def test_resolve_config_is_complete_and_reproducible() -> None:
    spec = load_spec(STUDIES / "default.toml")
    params = {
        "arch.num_stages": 4,
        "arch.depth": 2,
        "arch.mid_depth_ratio": 3,
        "arch.embed_dim": 32,
        "arch.focal_levels": 3,
        "arch.focal_windows": 5,
        "arch.overlapped_embed": True,
        "arch.contexts": "independent",
        "model.coord_channels": True,
        "train.lr": 3e-3,
    }
    config = resolve_config(spec, params)
    assert set(config) == {"model", "train", "data"}
    assert config["model"]["focalnet"]["depths"] == [2, 2, 6, 2]
    assert set(config["model"]["focalnet"]) == {f.name for f in dataclasses.fields(FocalNetConfig)}
    assert set(config["train"]) == {f.name for f in dataclasses.fields(TrainConfig)}
    assert config["train"]["lr"] == 3e-3 and config["train"]["steps"] == 1000 and config["train"]["seed"] == 0
    assert config["model"]["focalnet"]["patch_size"] == 4 and config["model"]["head"]["kind"] == "simcc"
    assert config["train"]["eval_steps"] == [500]  # the stopping rung is evaluated (and recorded)
    assert config["data"] == {
        "dataset": "synthetic:medium",
        "n_train": 8000,
        "n_val": 1000,
        "n_test": 1000,
        "seed": 0,
    }
    again = json.loads(json.dumps(config))
    assert ModelConfig.from_dict(again["model"]).to_dict() == config["model"]
    assert resolve_config(spec, params) == config


def test_resolve_builds_a_model() -> None:
    spec = load_spec(STUDIES / "quick.toml")
    config = resolve_config(spec, {"arch.num_stages": 2, "arch.embed_dim": 8})
    assert config["model"]["focalnet"]["depths"] == [1, 1]
    model = build_model(config["model"])
    assert sum(p.numel() for p in model.parameters()) > 0


def test_searched_layout_wins_over_model_depths_and_seed_rules() -> None:
    spec = parse(
        MINIMAL + "[model]\ndepths = [2, 2, 6, 2]\n[space]\n'arch.num_stages' = { low = 1, high = 4 }\n"
    )
    assert resolve_config(spec, {})["model"]["focalnet"]["depths"] == [2, 2, 6, 2]
    assert resolve_config(spec, {"arch.num_stages": 3})["model"]["focalnet"]["depths"] == [2, 2, 6]
    assert resolve_config(spec, {"arch.num_stages": 2})["model"]["focalnet"]["depths"] == [2, 2]
    assert resolve_config(spec, {})["train"]["seed"] == 7  # study.seed
    assert resolve_config(spec, {}, overrides={"train": {"seed": 3}})["train"]["seed"] == 3
    with pytest.raises(SpecError, match="resolved config"):
        resolve_config(spec, {"arch.focal_windows": 4})
    with pytest.raises(SpecError, match="unknown parameter"):
        resolve_config(spec, {"model.x": 1})


def test_fixed_trials_and_overrides() -> None:
    spec = load_spec(STUDIES / "variants.toml")
    trials = fixed_trials(spec)
    assert [(t["role"], t["name"]) for t in trials] == [
        ("baseline", "baseline"),
        ("variant", "T-SRF"),
        ("variant", "T-LRF"),
        ("variant", "deep-thin"),
    ]
    assert trials[0]["overrides"] == {"model": BASELINE_OVERRIDES}
    for t in trials:
        config = resolve_config(spec, {}, overrides=t["overrides"])
        assert json.loads(json.dumps(config)) == config
        model = ModelConfig.from_dict(config["model"])
        if t["role"] == "variant":
            fn = model.focalnet
            want = VARIANTS[t["name"]]
            assert fn.embed_dim == want["embed_dim"] and list(fn.depths) == want["depths"]
            assert fn.focal_levels == want["focal_levels"] and fn.focal_windows == want["focal_windows"]
        else:
            assert model.backbone == "baseline"
    assert VARIANTS["T-SRF"]["depths"] == [2, 2, 6, 2] and VARIANTS["deep-thin"]["depths"] == [3, 3, 16, 3]
    assert fixed_trials(parse(MINIMAL + "")) == [
        {"role": "baseline", "name": "baseline", "overrides": {"model": BASELINE_OVERRIDES}}
    ]


def test_overrides_accept_derived_names() -> None:
    spec = parse(MINIMAL)
    cfg = resolve_config(
        spec, {}, overrides={"model": {"focalnet": {"num_stages": 3, "depth": 1, "mid_depth_ratio": 2}}}
    )
    assert cfg["model"]["focalnet"]["depths"] == [1, 1, 2]
    with pytest.raises(SpecError, match="overrides.nope"):
        resolve_config(spec, {}, overrides={"nope": {}})


def test_check_space_can_be_called_directly() -> None:
    spec = parse_spec(
        tomllib.loads(
            MINIMAL
            + "[space]\n'arch.patch_size' = { choices = [32] }\n'arch.num_stages' = { low = 3, high = 4 }\n"
        ),
        source="t.toml",
        check=False,
    )
    with pytest.raises(
        SpecError,
        match=r"space\.arch\.num_stages: low=3 impossible with arch\.patch_size=32 on 64 px \(max 2",
    ):
        check_space(spec)


HEAD_SPACE = (
    MINIMAL
    + "[model]\nhead_hidden = [32]\n[space]\n'arch.num_stages' = { low = 1, high = 4 }\n"
    + "'head.kind' = { choices = ['pool', 'flatten', 'heatmap', 'simcc'] }\n"
    + "'head.stage' = { low = -3, high = -1 }\n'head.beta' = { low = 0.5, high = 4.0, log = true }\n"
    + "'model.coord_channels' = { choices = [false, true] }\n"
)


def test_head_dimensions_sample_clip_and_resolve() -> None:
    spec = parse(HEAD_SPACE)
    assert list(spec.space)[:2] == ["arch.num_stages", "head.beta"]  # stages sampled before head.stage
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3))
    seen = set()
    for _ in range(60):
        trial = study.ask()
        params = sample_params(trial, spec)
        n = params["arch.num_stages"]
        assert -n <= params["head.stage"] <= -1  # the range is clipped to the sampled stages
        config = resolve_config(spec, params)
        _check_config(spec, params, config)
        head = config["model"]["head"]
        assert head["kind"] == params["head.kind"] and head["hidden"] == [32]  # [model] head_hidden kept
        assert config["model"]["coord_channels"] == params["model.coord_channels"]
        seen.add((params["head.kind"], n + params["head.stage"]))
        study.tell(trial, 0.0)
    assert {k for k, _ in seen} == {"pool", "flatten", "heatmap", "simcc"} and len(seen) > 8


def test_legacy_head_keys_mean_the_same_through_every_path() -> None:
    """``head_hidden`` / ``head_dropout`` (before the head had its own config) read as ``head.hidden`` /
    ``head.dropout`` in a spec, in its fixed trials and in a stored ModelConfig dict, all through
    `focalnet.config.fold_legacy_head_keys`."""
    old = parse(MINIMAL + "[model]\nhead_hidden = [32]\nhead_dropout = 0.1\n")
    new = parse(MINIMAL + "[model]\nhead = { hidden = [32], dropout = 0.1 }\n")
    assert resolve_config(old, {}) == resolve_config(new, {})
    (baseline,) = fixed_trials(old)
    assert resolve_config(old, {}, overrides=baseline["overrides"]) == resolve_config(
        new, {}, overrides=baseline["overrides"]
    )
    stored = {"backbone": "focalnet", "head_hidden": [32], "head_dropout": 0.1}
    resolved = ModelConfig.from_dict(resolve_config(old, {})["model"])
    assert (
        ModelConfig.from_dict(stored).head
        == resolved.head
        == ModelConfig.from_dict({"head": {"hidden": [32], "dropout": 0.1}}).head
    )
    assert fold_legacy_head_keys(stored) == {"hidden": [32], "dropout": 0.1}
    with pytest.raises(ValueError, match=r"^head_dropout: conflicts with head\.dropout"):
        fold_legacy_head_keys({"head_dropout": 0.1, "head": {"dropout": 0.2}})


def test_model_head_table_and_baseline_keeps_its_head() -> None:
    spec = parse(
        MINIMAL + "[model]\nhead = { kind = 'heatmap', stage = 1, hidden = [16] }\ncoord_channels = true\n"
    )
    fn = resolve_config(spec, {})["model"]
    assert fn["head"]["kind"] == "heatmap" and fn["head"]["stage"] == 1 and fn["coord_channels"] is True
    (baseline,) = fixed_trials(spec)
    bl = resolve_config(spec, {}, overrides=baseline["overrides"])["model"]
    assert (bl["backbone"], bl["head"]["kind"], bl["head"]["stage"], bl["coord_channels"]) == (
        "baseline",
        "flatten",
        -1,
        False,
    )
    assert bl["head"]["hidden"] == [16]  # the head's width follows [model], as head_hidden always did
    # Without a head in [model], the resolved kinds are today's: pool for FocalNet, flatten for the baseline.
    plain = parse(MINIMAL)
    assert resolve_config(plain, {})["model"]["head"]["kind"] == "pool"
    assert (
        resolve_config(plain, {}, overrides=fixed_trials(plain)[0]["overrides"])["model"]["head"]["kind"]
        == "flatten"
    )


def test_head_stage_ranges_are_clamped_to_the_layout() -> None:
    spec = parse(
        MINIMAL + "[space]\n'arch.num_stages' = { low = 1, high = 4 }\n'head.stage' = { low = 1, high = 2 }\n"
    )
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(40):
        trial = study.ask()
        params = sample_params(trial, spec)
        resolve_config(spec, params)
        seen.add((params["arch.num_stages"], params["head.stage"]))
        study.tell(trial, 0.0)
    assert {s for n, s in seen if n == 1} == {0} and {s for n, s in seen if n == 2} == {1}
    assert {s for n, s in seen if n == 4} == {1, 2}


def test_head_stage_choices_beyond_a_layout_are_refused() -> None:
    text = (
        MINIMAL + "[space]\n'arch.num_stages' = { low = 2, high = 4 }\n'head.stage' = { choices = [1, 2] }\n"
    )
    with pytest.raises(SpecError, match="space.head.stage: the focalnet has 2 stage"):
        parse(text)
    check_space(parse_spec(tomllib.loads(text.replace("low = 2", "low = 3")), source="t.toml", check=False))
