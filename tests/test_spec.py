"""Study spec parsing and validation (search.spec.parse)."""

from __future__ import annotations

import copy
import json
import tomllib
from pathlib import Path

import pytest

from search.spec.parse import Dimension, SpecError, StudySpec, load_spec, parse_spec

STUDIES = sorted((Path(__file__).resolve().parents[1] / "studies").glob("*.toml"))

MINIMAL = """
[study]
name = "t"
n_trials = 3

[train]
steps = 50
"""


def parse(text: str) -> StudySpec:
    return parse_spec(tomllib.loads(text), source="t.toml")


@pytest.mark.parametrize("path", STUDIES, ids=[p.name for p in STUDIES])
def test_bundled_studies_parse(path: Path) -> None:
    spec = load_spec(path)
    assert spec.name and len(spec.spec_hash) == 64
    assert spec.n_trials is not None or spec.timeout_s is not None
    json.dumps(spec.to_dict())


def test_bundled_study_names() -> None:
    assert {p.stem for p in STUDIES} >= {"example", "default", "quick", "variants"}


def test_default_study_contents() -> None:
    spec = load_spec(STUDIES[0].parent / "default.toml")
    assert spec.sampler == "random" and spec.n_trials == 30 and spec.timeout_s == 30 * 60 and spec.jobs == 2
    assert spec.data.dataset == "synthetic:medium" and spec.data.n_train == 8000
    assert spec.train == {"steps": 1000, "batch_size": 64, "warmup_steps": 100, "eval_every": 250}
    es = spec.early_stopping
    assert (es.enabled, es.rule, es.rungs, es.fraction) == (True, "behind-baseline", (500,), 0.8)
    assert spec.latency.clock == "thread"
    assert spec.constraints.max_params == 3_000_000 and isinstance(spec.constraints.max_params, int)
    # narrowed on the recorded table: patch 4 and a SimCC head on the 16x16 map are fixed, not searched
    assert (
        spec.model["patch_size"] == 4
        and spec.model["head"]["kind"] == "simcc"
        and spec.model["head"]["stage"] == 0
    )
    assert "arch.patch_size" not in spec.space and "head.kind" not in spec.space
    assert spec.space["arch.num_stages"] == Dimension(kind="int", low=2, high=4)
    assert spec.space["arch.embed_dim"] == Dimension(kind="categorical", choices=(32, 48))
    lr = spec.space["train.lr"]
    assert lr.kind == "float" and lr.log and (lr.low, lr.high) == (2e-3, 4e-3)
    assert spec.baseline_lrs == (2e-3, 4e-3, 6e-3, 8e-3) and spec.verify_seeds == 3
    assert spec.warm_start_path().endswith("bench/tables/default.jsonl.gz") and spec.warm_start_trials == 3
    assert spec.objectives.floor is None and spec.objectives.floor_below_baseline == 0.10
    # Sampling order: the stage layout first, then the rest by name.
    assert list(spec.space)[:3] == ["arch.num_stages", "arch.depth", "arch.mid_depth_ratio"]


def test_quick_and_variants_studies() -> None:
    quick = load_spec(STUDIES[0].parent / "quick.toml")
    assert quick.n_trials == 4 and quick.train["steps"] == 30 and quick.early_stopping.rungs == (10, 20)
    assert quick.latency.repeats == 5 and quick.latency.warmup == 2
    variants = load_spec(STUDIES[0].parent / "variants.toml")
    assert variants.variants == ("T-SRF", "T-LRF", "deep-thin") and variants.space == {}
    assert variants.baseline and variants.n_trials == 4


def test_defaults_and_objectives() -> None:
    spec = parse(MINIMAL)
    assert spec.sampler == "tpe" and spec.seed == 0 and spec.baseline is True and spec.variants == ()
    assert spec.timeout_s is None and spec.storage == "" and spec.tracking_uri == ""
    assert spec.resolved_tracking_uri == "sqlite:///mlruns/mlflow.db"
    assert spec.data.dataset == "synthetic:medium" and spec.data.n_val == 1000
    assert spec.objectives.names == ["val_pck_0.05", "params", "latency_ms"]
    assert spec.objectives.directions == ["maximize", "minimize", "minimize"]
    assert spec.hypervolume_reference == {"accuracy": 0.0, "params": 1e7, "latency_ms": 100.0, "flops": 1e10}
    assert spec.latency.repeats == 30 and spec.early_stopping.enabled and spec.ablation is None
    spec = parse(MINIMAL + '[objectives]\naccuracy = "pck_0.2"\nminimize = ["flops"]\n')
    assert spec.objectives.names == ["val_pck_0.2", "flops"]
    assert spec.objectives.directions == ["maximize", "minimize"]


def test_timeout_only_and_ablation_passthrough() -> None:
    text = '[study]\nname = "t"\ntimeout_min = 1.5\n[ablation]\nseeds = 2\nfactors = { contexts = ["sequential", "independent"] }\n'
    spec = parse(text)
    assert spec.n_trials is None and spec.timeout_s == 90.0
    assert spec.ablation == {
        "seeds": 2,
        "factors": {"contexts": ["sequential", "independent"]},
    }  # raw, validated by search.spec.grid
    with pytest.raises(SpecError, match="ablation"):
        parse('[study]\nname = "t"\ntimeout_min = 1.5\n[ablation]\nanything = { goes = [1, "x"] }\n')


def test_nested_and_quoted_space_keys_agree() -> None:
    quoted = parse(
        MINIMAL
        + '[space]\n"arch.embed_dim" = { choices = [8, 16] }\n"train.lr" = { low = 1e-3, high = 1e-2 }\n'
    )
    nested = parse(
        MINIMAL + "[space]\narch.embed_dim = { choices = [8, 16] }\ntrain.lr = { low = 1e-3, high = 1e-2 }\n"
    )
    assert quoted.space == nested.space and quoted.spec_hash == nested.spec_hash


BAD = [
    # (snippet appended to / replacing MINIMAL, expected substring)
    (
        "[study]\nname = 't'\nn_trail = 3\n",
        "t.toml: unknown key 'study.n_trail'; did you mean 'study.n_trials'?",
    ),
    ("[study]\nname = 't'\nn_trials = '30'\n", "study.n_trials: expected an integer"),
    ("[study]\nname = 't'\nn_trials = 0\n", "study.n_trials: must be >= 1"),
    (
        "[study]\nname = 't'\nn_trials = 3\nsampler = 'cmaes'\n",
        "study.sampler: unknown sampler 'cmaes'; allowed: tpe, nsga2",
    ),
    ("[study]\nname = 't'\n", "study.n_trials: no budget"),
    ("[study]\nn_trials = 3\n", "study.name: missing"),
    ("[study]\nname = 'a b'\nn_trials = 3\n", "study.name: invalid name"),
    (
        "[study]\nname = 't'\nn_trials = 3\nvariants = ['T-XL']\n",
        "study.variants: unknown variant 'T-XL'; allowed: T-SRF",
    ),
    ("[study]\nname = 't'\nn_trials = 3\nbaseline = 1\n", "study.baseline: expected true or false"),
    ("[studdy]\nname = 't'\n", "unknown key 'studdy'; did you mean 'study'?"),
    (MINIMAL + "[data]\ndataset = 'http://x'\n", "data.dataset: bad dataset URI"),
    (MINIMAL + "[data]\nn_train = -1\n", "data.n_train: must be >= 1"),
    (MINIMAL + "[data]\nsize = 3\n", "unknown key 'data.size'"),
    (MINIMAL + "[early_stopping]\nrungs = [20, 10]\n", "early_stopping.rungs: must be strictly increasing"),
    (
        MINIMAL + "[early_stopping]\nrungs = [10, 50]\n",
        "early_stopping.rungs: rung 50 is not below train.steps=50",
    ),
    (MINIMAL + "[early_stopping]\neta = 1\n", "early_stopping.eta: must be >= 2"),
    (
        MINIMAL + "[objectives]\naccuracy = 'mpe'\n",
        "objectives.accuracy: unknown metric 'mpe'; allowed: pck_0.05",
    ),
    (
        MINIMAL + "[objectives]\nminimize = ['memory']\n",
        "objectives.minimize: unknown objective 'memory'; allowed: params",
    ),
    (MINIMAL + "[constraints]\nmax_latency_ms = -1\n", "constraints.max_latency_ms: must be > 0"),
    (MINIMAL + "[latency]\ndevice = 'tpu'\n", "latency.device: unknown device 'tpu'"),
    (MINIMAL + "[latency]\nclock = 'cpu'\n", "latency.clock: unknown clock 'cpu'; allowed: wall, thread"),
    (MINIMAL + "[latency]\nclock = 'thread'\nthreads = 2\n", "latency.clock: thread needs"),
    (
        MINIMAL + "[hypervolume]\nreference = { acuracy = 0.1 }\n",
        "did you mean 'hypervolume.reference.accuracy'?",
    ),
    # [train] / [model] / [baseline]: names from dataclasses.fields, values from the dataclasses.
    (MINIMAL + "lrr = 0.1\n", "unknown key 'train.lrr'; did you mean 'train.lr'?"),
    (MINIMAL + "lr = 2.0\n", "train.lr: must be in (0, 1)"),
    (MINIMAL + "steps_ = 1\n", "did you mean 'train.steps'?"),
    ("[study]\nname = 't'\nn_trials = 3\n[train]\nsteps = '400'\n", "train.steps: expected an integer"),
    (MINIMAL + "[model]\nfocal_windows = 4\n", "model.focal_windows: must be odd"),
    (MINIMAL + "[model]\npatch_size = 5\n", "model.patch_size: 5 does not divide img_size=64"),
    (
        MINIMAL + "[model]\nembed_dims = 32\n",
        "unknown key 'model.embed_dims'; did you mean 'model.embed_dim'?",
    ),
    (MINIMAL + "[model]\ndepths = [2, 2]\nnum_stages = 3\n", "model.num_stages: conflicts with model.depths"),
    (
        MINIMAL + "[model]\npatch_size = 16\n",
        "model.depths: arch.patch_size=16 on 64 px allows at most 3 stages",
    ),
    (MINIMAL + "[model]\nhead_dropout = 1.5\n", "model.head_dropout: must be a number in [0.0, 1.0)"),
    (MINIMAL + "[baseline]\nchannels = [0]\n", "baseline.channels: must be a non-empty list"),
    # [space]
    (
        MINIMAL + "[space]\n'arch.embed_dim' = { choices = [] }\n",
        "space.arch.embed_dim.choices: must not be empty",
    ),
    (MINIMAL + "[space]\n'arch.embed_dims' = { choices = [8] }\n", "did you mean 'space.arch.embed_dim'?"),
    (MINIMAL + "[space]\n'model.embed_dim' = { choices = [8] }\n", "did you mean 'space.arch.embed_dim'?"),
    (MINIMAL + "[space]\n'net.embed_dim' = { choices = [8] }\n", "space.net.embed_dim: unknown prefix"),
    (MINIMAL + "[space]\n'head.kinds' = { choices = ['pool'] }\n", "did you mean 'space.head.kind'?"),
    (MINIMAL + "[space]\n'head.hidden' = { choices = [8] }\n", "space.head.hidden: cannot be searched"),
    (
        MINIMAL + "[model]\nhead = { kind = 'mlp' }\n",
        "model.head.kind: must be one of pool, flatten, heatmap, simcc",
    ),
    (MINIMAL + "[model]\nhead = { knd = 'pool' }\n", "did you mean 'model.head.kind'?"),
    (MINIMAL + "[model]\nhead = { stage = 4 }\n", "model.head.stage: the focalnet has 4 stage(s)"),
    (
        MINIMAL + "[model]\nhead_hidden = [8]\nhead = { hidden = [8] }\n",
        "model.head_hidden: conflicts with model.head.hidden",
    ),
    (MINIMAL + "[model]\ncoord_channels = 1\n", "model.coord_channels: expected true or false"),
    (
        MINIMAL + "[model]\ndepths = [1, 1, 1]\n[space]\n'head.stage' = { choices = [-1, -4] }\n",
        "space.head.stage: the focalnet has 3 stage(s)",
    ),
    (
        MINIMAL
        + "[space]\n'arch.num_stages' = { low = 1, high = 5 }\n'head.kind' = { choices = ['pool', 'heatmap'] }\n",
        "model.head.stage: a heatmap head needs a map of at least 2x2",
    ),
    (
        MINIMAL + "[space]\n'arch.embed_dim' = { low = 16, high = 8 }\n",
        "space.arch.embed_dim: low=16 > high=8",
    ),
    (MINIMAL + "[space]\n'arch.embed_dim' = { low = 8 }\n", "space.arch.embed_dim.high: missing"),
    (
        MINIMAL + "[space]\n'arch.embed_dim' = { choices = [8], low = 1 }\n",
        "space.arch.embed_dim.low: not allowed",
    ),
    (
        MINIMAL + "[space]\n'train.lr' = { low = 0.0, high = 1e-2, log = true }\n",
        "space.train.lr.low: log scale",
    ),
    (
        MINIMAL + "[space]\n'train.lr' = { low = 1e-3, high = 0.5, stpe = 1 }\n",
        "did you mean 'space.train.lr.step'?",
    ),
    (MINIMAL + "[space]\n'arch.depths' = { choices = [1] }\n", "space.arch.depths: cannot be searched"),
    (
        MINIMAL + "[space]\n'arch.focal_windows' = { choices = [3, 4] }\n",
        "space.arch.focal_windows: must be odd",
    ),
    (
        MINIMAL + "[space]\n'arch.patch_size' = { choices = [4, 5] }\n",
        "space.arch.patch_size: 5 does not divide img_size=64",
    ),
    (
        MINIMAL
        + "[space]\n'arch.patch_size' = { choices = [4, 16] }\n'arch.num_stages' = { low = 4, high = 5 }\n",
        "space.arch.num_stages: low=4 impossible with arch.patch_size=16 on 64 px (max 3 stages)",
    ),
    (
        MINIMAL + "[space]\n'arch.num_stages' = { choices = [1, 2] }\n",
        "space.arch.num_stages: must be an integer range",
    ),
    (
        MINIMAL + "[space]\n'arch.mlp_ratio' = { low = 0.0, high = 4.0 }\n",
        "space.arch.mlp_ratio: must give at least 1",
    ),
    (
        MINIMAL + "[space]\n'train.warmup_steps' = { low = 10, high = 60 }\n",
        "space.train.warmup_steps: must be in [0, steps=50)",
    ),
    (
        MINIMAL + "[space]\n'train.steps' = { low = 10, high = 60 }\n[early_stopping]\nrungs = [20]\n",
        "early_stopping.rungs",
    ),
    (
        MINIMAL + "[early_stopping]\nrule = 'median'\n",
        "early_stopping.rule: unknown rule 'median'; allowed: mo-asha, cost-asha",
    ),
    (
        MINIMAL + "[early_stopping]\nrule = 'behind-baseline'\nfraction = 1.2\n",
        "early_stopping.fraction: must be in (0, 1], got 1.2",
    ),
    (MINIMAL + "[early_stopping]\nfraction = 'most'\n", "early_stopping.fraction: expected a number"),
    (
        MINIMAL.replace("[study]\n", "[study]\nbaseline = false\n")
        + "[early_stopping]\nrule = 'behind-baseline'\nrungs = [10]\n",
        "early_stopping.rule: behind-baseline needs study.baseline = true",
    ),
]


def test_stopping_rule_default_and_hash() -> None:
    from search.spec.schema import DEFAULT_STOPPING_RULE

    assert parse(MINIMAL).early_stopping.rule == DEFAULT_STOPPING_RULE
    mo = parse(MINIMAL + "[early_stopping]\nrule = 'mo-asha'\n")
    cost = parse(MINIMAL + "[early_stopping]\nrule = 'cost-asha'\n")
    assert cost.early_stopping.rule == "cost-asha" and cost.spec_hash != mo.spec_hash
    # Specs written before the key existed meant MO-ASHA: saying so keeps their stored hash valid.
    assert "rule" not in mo.to_dict()["early_stopping"]
    behind = parse(MINIMAL + "[early_stopping]\nrule = 'behind-baseline'\n")
    assert behind.early_stopping.fraction == 0.8
    tighter = parse(MINIMAL + "[early_stopping]\nrule = 'behind-baseline'\nfraction = 0.9\n")
    assert tighter.spec_hash != behind.spec_hash != cost.spec_hash


@pytest.mark.parametrize(("text", "expected"), BAD, ids=[e[:40] for _, e in BAD])
def test_bad_specs_raise_one_line_spec_error(text: str, expected: str) -> None:
    with pytest.raises(SpecError) as info:
        parse(text)
    msg = str(info.value)
    assert expected in msg, msg
    assert "\n" not in msg and msg.startswith("t.toml: ")
    assert isinstance(info.value, ValueError)


def test_bad_variant_for_fixed_model() -> None:
    # 16x16 patches leave a 4x4 grid: at most 3 stages, but T-SRF has 4.
    text = "[study]\nname='t'\nn_trials=3\nvariants=['T-SRF']\n[model]\npatch_size=16\ndepths=[1]\n"
    with pytest.raises(SpecError, match=r"study\.variants: 'T-SRF' is invalid"):
        parse(text)


def test_load_spec_toml_syntax_error_and_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text('[study]\nname = "t"\nn_trials = \n')
    with pytest.raises(SpecError, match=r"broken\.toml: TOML syntax error: .*line 3"):
        load_spec(path)
    with pytest.raises(SpecError, match="cannot read spec"):
        load_spec(tmp_path / "nope.toml")


def test_spec_hash_ignores_order_budget_and_storage() -> None:
    raw = tomllib.loads((STUDIES[0].parent / "default.toml").read_text())
    base = parse_spec(raw, source="a.toml").spec_hash

    def reorder(d):
        return {k: reorder(v) for k, v in reversed(list(d.items()))} if isinstance(d, dict) else d

    assert parse_spec(reorder(raw), source="b.toml").spec_hash == base
    budget = copy.deepcopy(raw)
    budget["study"].update(n_trials=300, timeout_min=600, storage="sqlite:///x.db", tracking_uri="file:./m")
    assert parse_spec(budget, source="a.toml").spec_hash == base
    changed = copy.deepcopy(raw)
    changed["space"]["train.lr"]["high"] = 1e-2
    assert parse_spec(changed, source="a.toml").spec_hash != base
    seeded = copy.deepcopy(raw)
    seeded["study"]["seed"] = 1
    assert parse_spec(seeded, source="a.toml").spec_hash != base


def test_spec_is_frozen_and_to_dict_is_json() -> None:
    spec = parse(MINIMAL)
    with pytest.raises(AttributeError):
        spec.name = "x"  # type: ignore[misc]
    d = spec.to_dict()
    assert json.loads(json.dumps(d)) == d
    assert "spec_hash" not in d and d["raw"] == spec.raw
    # A stored copy (study user attr) rebuilds the same spec.
    again = parse_spec(json.loads(json.dumps(d))["raw"], source="stored")
    assert again.spec_hash == spec.spec_hash and again.to_dict() == d
