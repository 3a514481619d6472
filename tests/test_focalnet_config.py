"""FocalNetConfig / BaselineConfig / ModelConfig: validation, JSON round trips, max_stages."""

import json

import pytest

from focalnet import BaselineConfig, FocalNetConfig, HeadConfig, ModelConfig, max_stages


def _json_roundtrip(d):
    return json.loads(json.dumps(d))


@pytest.mark.parametrize(
    "cfg",
    [
        FocalNetConfig(),
        FocalNetConfig(embed_dim=64, depths=(3, 3, 16, 3), contexts="independent", overlapped_embed=True),
        FocalNetConfig(patch_size=16, depths=(2, 2, 2), focal_levels=(1, 2, 3), focal_windows=(3, 5, 7)),
        FocalNetConfig(
            use_layerscale=True, layerscale_value=1e-5, use_postln=True, drop_path_rate=0.2, mlp_ratio=3
        ),
    ],
)
def test_focalnet_config_roundtrip(cfg):
    assert FocalNetConfig.from_dict(cfg.to_dict()) == cfg
    back = FocalNetConfig.from_dict(_json_roundtrip(cfg.to_dict()))
    assert back == cfg
    assert isinstance(back.depths, tuple)
    assert type(back.mlp_ratio) is float


def test_model_config_roundtrip_and_partial_dicts():
    cfg = ModelConfig(
        backbone="baseline",
        num_keypoints=21,
        focalnet=FocalNetConfig(embed_dim=32, depths=(2, 2)),
        baseline=BaselineConfig(channels=(4, 8, 16)),
        head=HeadConfig(kind="simcc", hidden=(128, 64), dropout=0.1, stage=1, learn_beta=True),
        coord_channels=True,
    )
    assert ModelConfig.from_dict(_json_roundtrip(cfg.to_dict())) == cfg
    partial = ModelConfig.from_dict({"backbone": "focalnet", "focalnet": {"embed_dim": 32}})
    assert partial.focalnet == FocalNetConfig(embed_dim=32)
    assert partial.img_size == 64 and partial.head.hidden == (256,) and not partial.coord_channels


def test_model_config_default_heads_are_todays():
    # kind None resolves per backbone, and to_dict writes the resolved kind.
    assert ModelConfig().head == HeadConfig(kind="pool", hidden=(256,), stage=-1)
    assert ModelConfig(backbone="baseline").head.kind == "flatten"
    assert ModelConfig(backbone="baseline").to_dict()["head"]["kind"] == "flatten"
    assert ModelConfig.from_dict({"head": {"hidden": [32]}}).head == HeadConfig(kind="pool", hidden=(32,))


def test_model_config_reads_old_head_keys():
    old = {"backbone": "baseline", "head_hidden": [128, 64], "head_dropout": 0.1}
    cfg = ModelConfig.from_dict(old)
    assert cfg.head == HeadConfig(kind="flatten", hidden=(128, 64), dropout=0.1)
    assert "head_hidden" not in cfg.to_dict() and ModelConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match=r"^head_hidden: conflicts with head.hidden"):
        ModelConfig.from_dict({"head_hidden": [8], "head": {"hidden": [8]}})


@pytest.mark.parametrize(
    ("d", "field"),
    [
        ({"foo": 1}, "foo"),
        ({"focalnet": {"embed_dims": 8}}, "focalnet.embed_dims"),
        ({"baseline": {"chans": [1]}}, "baseline.chans"),
        ({"backbone": "resnet"}, "backbone"),
        ({"focalnet": {"patch_size": 5}}, "focalnet.patch_size"),
        ({"num_keypoints": 0}, "num_keypoints"),
        ({"head_hidden": [0]}, "head_hidden"),
        ({"head_dropout": 1.0}, "head_dropout"),
        ({"head": {"hidden": [0]}}, "head.hidden"),
        ({"head": {"kind": "mlp"}}, "head.kind"),
        ({"head": {"knd": "pool"}}, "head.knd"),
        ({"head": {"beta": 0}}, "head.beta"),
        ({"head": {"split_ratio": 0.5}}, "head.split_ratio"),
        ({"head": {"stage": 1.5}}, "head.stage"),
        ({"head": {"stage": 4}}, "head.stage"),
        ({"head": {"stage": -5}}, "head.stage"),
        ({"backbone": "baseline", "head": {"stage": 3}}, "head.stage"),
        ({"focalnet": {"depths": [1, 1, 1, 1, 1]}, "head": {"kind": "heatmap"}}, "head.stage"),
        ({"head": "pool"}, "head"),
        ({"coord_channels": 1}, "coord_channels"),
    ],
)
def test_model_config_errors_name_the_key(d, field):
    with pytest.raises(ValueError, match=rf"^{field}:"):
        ModelConfig.from_dict(d)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"patch_size": 5}, "patch_size"),
        ({"patch_size": 0}, "patch_size"),
        ({"img_size": 0}, "img_size"),
        ({"img_size": 64.0}, "img_size"),
        ({"in_chans": 0}, "in_chans"),
        ({"embed_dim": 0}, "embed_dim"),
        ({"depths": ()}, "depths"),
        ({"depths": (2, 0)}, "depths"),
        ({"patch_size": 16, "depths": (2, 2, 2, 2)}, "depths"),  # 4x4 grid: final map < 1x1
        ({"img_size": 48, "patch_size": 4, "depths": (1, 1, 1, 1)}, "depths"),  # 12 -> 6 -> 3 -> 1.5
        ({"focal_levels": 0}, "focal_levels"),
        ({"focal_levels": (2, 2)}, "focal_levels"),  # needs 4 entries
        ({"focal_windows": 4}, "focal_windows"),
        ({"focal_windows": (3, 3, 3, 0)}, "focal_windows"),
        ({"focal_factor": 1}, "focal_factor"),
        ({"focal_factor": -2}, "focal_factor"),
        ({"mlp_ratio": 0.0}, "mlp_ratio"),
        ({"mlp_ratio": float("nan")}, "mlp_ratio"),
        ({"contexts": "parallel"}, "contexts"),
        ({"overlapped_embed": 1}, "overlapped_embed"),
        ({"use_layerscale": "yes"}, "use_layerscale"),
        ({"layerscale_value": -1.0}, "layerscale_value"),
        ({"use_postln": None}, "use_postln"),
        ({"use_postln_in_modulation": 0}, "use_postln_in_modulation"),
        ({"normalize_modulator": 1}, "normalize_modulator"),
        ({"drop_rate": 1.0}, "drop_rate"),
        ({"drop_path_rate": -0.1}, "drop_path_rate"),
        ({"patch_norm": "true"}, "patch_norm"),
    ],
)
def test_invalid_focalnet_config_names_field(kwargs, field):
    with pytest.raises(ValueError, match=rf"^{field}:") as info:
        FocalNetConfig(**kwargs)
    assert len(str(info.value).splitlines()) == 1


def test_error_message_states_allowed_range():
    with pytest.raises(ValueError, match=r"patch_size: must divide img_size=64, got 5"):
        FocalNetConfig(patch_size=5)
    with pytest.raises(ValueError, match=r"depths: at most 3 stages"):
        FocalNetConfig(patch_size=16)
    with pytest.raises(ValueError, match=r"focal_windows: must be odd"):
        FocalNetConfig(focal_windows=2)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"channels": ()}, "channels"), ({"img_size": 60}, "channels"), ({"in_chans": 0}, "in_chans")],
)
def test_invalid_baseline_config(kwargs, field):
    with pytest.raises(ValueError, match=rf"^{field}:"):
        BaselineConfig(**kwargs)


def test_config_is_frozen_and_keyword_only():
    cfg = FocalNetConfig()
    with pytest.raises(AttributeError):
        cfg.embed_dim = 8  # type: ignore[misc]
    with pytest.raises(TypeError):
        FocalNetConfig(64)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("img", "patch", "stages"),
    [(64, 4, 5), (64, 2, 6), (64, 8, 4), (64, 16, 3), (64, 64, 1), (48, 4, 3), (60, 4, 1)],
)
def test_max_stages(img, patch, stages):
    assert max_stages(img, patch) == stages
    FocalNetConfig(img_size=img, patch_size=patch, depths=(1,) * stages, embed_dim=8)
    with pytest.raises(ValueError, match="^depths:"):
        FocalNetConfig(img_size=img, patch_size=patch, depths=(1,) * (stages + 1), embed_dim=8)


def test_max_stages_rejects_bad_patch():
    with pytest.raises(ValueError, match="^patch_size:"):
        max_stages(64, 3)


def test_derived_properties():
    cfg = FocalNetConfig(focal_levels=(1, 2, 3, 2), focal_windows=(3, 5, 3, 1))
    assert cfg.stage_dims == (96, 192, 384, 768)
    assert cfg.stage_resolutions == (16, 8, 4, 2)
    assert cfg.kernel_sizes(1) == (5, 7)
    assert cfg.kernel_sizes(2) == (3, 5, 7)
    assert cfg.num_features == 768
