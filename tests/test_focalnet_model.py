"""FocalNet, baseline and keypoint model: shapes, gradients, official param counts, context modes."""

import itertools
import pathlib

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from focalnet import (
    BaselineConfig,
    BaselinePatchExtractor,
    FocalNet,
    FocalNetConfig,
    KeypointModel,
    ModelConfig,
    build_model,
    count_flops,
    count_params,
)
from focalnet.model import FocalModulation

TINY = {"embed_dim": 8, "mlp_ratio": 2.0}
BOOL_OPTIONS = (
    "overlapped_embed",
    "use_layerscale",
    "use_postln",
    "use_postln_in_modulation",
    "normalize_modulator",
)


@pytest.mark.parametrize("contexts", ["sequential", "independent"])
@pytest.mark.parametrize("flags", list(itertools.product([False, True], repeat=len(BOOL_OPTIONS))))
def test_shapes_every_option_combination(contexts, flags):
    options = dict(zip(BOOL_OPTIONS, flags, strict=True))
    # Rotate depth list / patch size / levels over the combinations so all are covered cheaply.
    idx = sum(int(f) << i for i, f in enumerate(flags))
    depths, patch = [((1,), 8), ((1, 2), 4), ((2, 1, 1), 2), ((1, 1, 1, 1), 4)][idx % 4]
    cfg = FocalNetConfig(
        **TINY, depths=depths, patch_size=patch, focal_levels=1 + idx % 3, contexts=contexts, **options
    )
    model = FocalNet(cfg).eval()
    x = torch.rand(2, 3, 64, 64)
    side = 64 // patch // 2 ** (len(depths) - 1)
    assert model.forward_features(x).shape == (2, cfg.num_features, side, side)
    assert model(x).shape == (2, model.num_features)
    assert model.num_features == 8 * 2 ** (len(depths) - 1)


@pytest.mark.parametrize("patch", [2, 4, 8])
@pytest.mark.parametrize("depths", [(1,), (2, 2), (1, 1, 3), (2, 2, 6, 2)])
@pytest.mark.parametrize("overlapped", [False, True])
def test_shapes_depths_and_patch_sizes(patch, depths, overlapped):
    cfg = FocalNetConfig(
        embed_dim=4, mlp_ratio=1.0, depths=depths, patch_size=patch, overlapped_embed=overlapped
    )
    model = FocalNet(cfg)
    feats = model.forward_features(torch.rand(1, 3, 64, 64))
    side = 64 // patch // 2 ** (len(depths) - 1)
    assert feats.shape == (1, 4 * 2 ** (len(depths) - 1), side, side)


def test_official_overlapped_stem_at_patch_4():
    conv = FocalNet(FocalNetConfig(**TINY, depths=(1, 1), overlapped_embed=True)).patch_embed.proj
    assert (conv.kernel_size, conv.stride, conv.padding) == ((7, 7), (4, 4), (2, 2))
    down = FocalNet(FocalNetConfig(**TINY, depths=(1, 1), overlapped_embed=True)).layers[0].downsample.proj
    assert (down.kernel_size, down.stride, down.padding) == ((3, 3), (2, 2), (1, 1))


@pytest.mark.parametrize("contexts", ["sequential", "independent"])
@pytest.mark.parametrize("backbone", ["focalnet", "baseline"])
def test_every_parameter_gets_a_gradient(contexts, backbone):
    cfg = ModelConfig.from_dict(
        {
            "backbone": backbone,
            "num_keypoints": 5,
            "head_hidden": [16],
            "focalnet": {**TINY, "depths": [1, 2], "contexts": contexts, "use_layerscale": True,
                         "use_postln_in_modulation": True},
        }
    )  # fmt: skip
    model = build_model(cfg)
    out = model(torch.rand(2, 3, 64, 64))
    assert out.shape == (2, 5, 2)
    out.square().sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert p.grad.abs().sum() > 0, name


def _full(**kw) -> FocalNet:
    with torch.device("meta"):  # shapes only: no memory, no init cost
        return FocalNet(FocalNetConfig(**kw))


@pytest.mark.parametrize(
    ("kw", "with_head", "expected"),
    [
        ({}, False, 27_658_116),  # FocalNet-T SRF backbone
        ({}, True, 28.43e6),  # ... with the 1000-class head
        ({"focal_levels": 3}, True, 28.65e6),  # T LRF
        ({"embed_dim": 128, "depths": (2, 2, 18, 2)}, True, 88.15e6),  # B SRF
    ],
)
def test_param_counts_match_official(kw, with_head, expected):
    model = _full(**kw)
    n = count_params(model)
    if with_head:
        n += model.num_features * 1000 + 1000  # Linear(num_features, 1000)
        assert round(n / 1e6, 2) == pytest.approx(expected / 1e6)
    else:
        assert n == expected


def _tiny_modulation(contexts: str, levels: int) -> FocalModulation:
    torch.manual_seed(0)
    mod = FocalModulation(6, focal_window=3, focal_level=levels, independent=contexts == "independent")
    with torch.no_grad():
        for p in mod.parameters():
            p.normal_(0, 0.5)
    return mod


def _written_out(mod: FocalModulation, x: torch.Tensor, contexts: str) -> torch.Tensor:
    """Direct evaluation of the modulation equations, one level at a time."""
    C, L = x.shape[-1], mod.focal_level
    y = x @ mod.f.weight.T + mod.f.bias  # (B, H, W, 2C + L + 1)
    q, z0, g = y[..., :C], y[..., C : 2 * C], y[..., 2 * C :]
    z0 = z0.permute(0, 3, 1, 2)
    levels, prev = [], z0
    for lvl in range(L):
        w = mod.focal_layers[lvl][0].weight
        src = prev if contexts == "sequential" else z0
        z = F.gelu(F.conv2d(src, w, padding=w.shape[-1] // 2, groups=C))
        levels.append(z)
        prev = z
    pooled_src = levels[-1] if contexts == "sequential" else z0
    levels.append(F.gelu(pooled_src.mean((2, 3), keepdim=True)).expand_as(z0))
    agg = sum(levels[i] * g[..., i].unsqueeze(1) for i in range(L + 1))
    m = F.conv2d(agg, mod.h.weight, mod.h.bias)
    return (q * m.permute(0, 2, 3, 1)) @ mod.proj.weight.T + mod.proj.bias


@pytest.mark.parametrize("levels", [1, 2, 3])
@pytest.mark.parametrize("contexts", ["sequential", "independent"])
def test_context_modes_match_written_out_equations(contexts, levels):
    mod = _tiny_modulation(contexts, levels)
    x = torch.randn(2, 7, 7, 6)
    torch.testing.assert_close(mod(x), _written_out(mod, x, contexts), atol=1e-5, rtol=1e-5)


def test_context_modes_same_params_different_outputs():
    x = torch.randn(2, 7, 7, 6)
    for levels in (2, 3):
        seq, ind = _tiny_modulation("sequential", levels), _tiny_modulation("independent", levels)
        assert count_params(seq) == count_params(ind)
        ind.load_state_dict(seq.state_dict())
        assert not torch.allclose(seq(x), ind(x), atol=1e-3)
    # One level: the local level is identical; only the global level's input differs
    # (last level output vs projected context), so zeroing the global gate makes them equal.
    seq, ind = _tiny_modulation("sequential", 1), _tiny_modulation("independent", 1)
    ind.load_state_dict(seq.state_dict())
    with torch.no_grad():
        for mod in (seq, ind):
            mod.f.weight[-1].zero_()
            mod.f.bias[-1].zero_()
    torch.testing.assert_close(seq(x), ind(x))


def test_full_model_context_modes_same_param_count():
    a = _full(contexts="sequential", focal_levels=3)
    b = _full(contexts="independent", focal_levels=3)
    assert count_params(a) == count_params(b)


def test_same_seed_same_weights():
    cfg = {"backbone": "focalnet", "focalnet": {**TINY, "depths": [1, 2]}}
    torch.manual_seed(123)
    a = build_model(cfg)
    torch.manual_seed(123)
    b = build_model(cfg)
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_forward_writes_no_state_and_is_deterministic():
    model = FocalNet(FocalNetConfig(**TINY, depths=(1, 1))).eval()
    before = {id(m): dict(vars(m)) for m in model.modules()}
    x = torch.rand(2, 3, 64, 64)
    y1 = model(x)
    for m in model.modules():
        assert set(vars(m)) == set(before[id(m)]), type(m).__name__
    torch.testing.assert_close(model(x), y1)


def test_modulation_maps():
    cfg = FocalNetConfig(**TINY, depths=(2, 1), focal_levels=(2, 3))
    model = FocalNet(cfg).eval()
    with torch.no_grad():
        maps = model.modulation_maps(torch.rand(3, 3, 64, 64))
    assert len(maps) == 2
    assert len(maps[0]["gates"]) == 2 and len(maps[1]["modulator"]) == 1
    assert maps[0]["gates"][0].shape == (3, 3, 16, 16)
    assert maps[0]["modulator"][1].shape == (3, 8, 16, 16)
    assert maps[1]["gates"][0].shape == (3, 4, 8, 8)
    assert maps[1]["kernel_sizes"] == [3, 5, 7]


def test_weight_init():
    model = FocalNet(FocalNetConfig(embed_dim=32, depths=(1, 1), use_layerscale=True))
    fc = model.layers[0].blocks[0].mlp.fc1
    assert fc.weight.std().item() == pytest.approx(0.02, rel=0.1)
    assert fc.weight.abs().max() <= 2.0 and torch.all(fc.bias == 0)
    assert torch.all(model.norm.weight == 1) and torch.all(model.norm.bias == 0)
    assert torch.all(model.layers[0].blocks[0].gamma_1 == 1e-4)


def test_baseline_extractor():
    base = BaselinePatchExtractor(BaselineConfig())
    x = torch.rand(2, 3, 64, 64)
    assert base.forward_features(x).shape == (2, 32, 8, 8)
    assert base(x).shape == (2, 2048) and base.num_features == 2048
    assert not any(isinstance(m, nn.BatchNorm2d) for m in base.modules())
    # Batch independence: a sample's features do not depend on the rest of the batch.
    torch.testing.assert_close(base(x[:1]), base(x)[:1])
    assert count_params(base) < 10_000


def test_keypoint_model_starts_at_centre_and_counts():
    model = build_model({"backbone": "focalnet", "num_keypoints": 7, "focalnet": {**TINY, "depths": [1, 1]}})
    assert isinstance(model, KeypointModel)
    out = model.eval()(torch.rand(4, 3, 64, 64))
    assert out.shape == (4, 7, 2)
    assert (out - 0.5).abs().max() < 0.2
    assert torch.all(model.head.mlp[-1].bias == 0.5)
    assert count_flops(model, 64) > count_flops(model.backbone, 64) > 0
    assert model.training is False  # count_flops restores the mode


def test_count_flops_linear():
    # One Linear(10, 20) on a flattened image: 10*20 MACs = 400 FLOPs.
    model = nn.Sequential(nn.Flatten(), nn.Linear(10, 20))
    assert count_flops(model, img_size=1, in_chans=10) == 400


def test_focalnet_never_imports_optuna_or_mlflow():
    src = pathlib.Path(__file__).resolve().parents[1] / "focalnet"
    for path in src.rglob("*.py"):
        text = path.read_text()
        for banned in ("optuna", "mlflow"):
            assert f"import {banned}" not in text and f"from {banned}" not in text, path
