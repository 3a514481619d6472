"""Regression heads: every backbone x head builds, learns and keeps the project's coordinate convention.

Convention (search.task.train): targets are pixel / img_size with pixel centres at integers, so a joint
at pixel column 10 of a 64 px patch is 10 / 64; ``predict`` multiplies by img_size again.
"""

import itertools

import pytest
import torch

from focalnet import FocalNet, FocalNetConfig, HeadConfig, ModelConfig, build_model, count_flops, count_params
from focalnet.baseline import BaselinePatchExtractor
from focalnet.config import BaselineConfig
from focalnet.heads import HeatmapHead, SimCCHead, cell_centres

KINDS = ("pool", "flatten", "heatmap", "simcc")
TINY_FN = {"embed_dim": 8, "depths": [1, 1, 1], "mlp_ratio": 1.0}
TINY_BL = {"channels": [4, 8, 8]}


def _config(backbone: str, kind: str, **head) -> dict:
    return {"backbone": backbone, "num_keypoints": 3, "focalnet": TINY_FN, "baseline": TINY_BL,
            "head": {"kind": kind, "hidden": [8], **head}}  # fmt: skip


@pytest.mark.parametrize(
    ("backbone", "kind", "stage", "coords"),
    [
        (b, k, s, c)
        for b, k in itertools.product(("focalnet", "baseline"), KINDS)
        for s in (-1, 0)
        for c in (False, True)
    ],
)
def test_every_backbone_and_head_trains_every_parameter(backbone, kind, stage, coords):
    torch.manual_seed(0)
    cfg = {**_config(backbone, kind, stage=stage, learn_beta=True), "coord_channels": coords}
    model = build_model(cfg)
    out = model(torch.rand(2, 3, 64, 64))
    assert out.shape == (2, 3, 2)
    out.square().sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    # The coordinate channels reach the stem; the head's map comes from the requested stage.
    stem = model.backbone.patch_embed.proj if backbone == "focalnet" else model.backbone.blocks[0]
    assert stem.in_channels == 3 + 2 * coords
    assert (model.head.input.stage, len(model.head.input.lateral)) == (stage % 3, 2 if stage == 0 else 0)


@pytest.mark.parametrize("kind", KINDS)
def test_untrained_heads_predict_about_the_centre(kind):
    torch.manual_seed(0)
    out = build_model(_config("focalnet", kind, stage=0)).eval()(torch.rand(4, 3, 64, 64))
    if kind == "simcc":  # a soft-argmax of random maps: anywhere within the outermost bin centres
        assert out.min() >= cell_centres(128, 64)[0] and out.max() <= cell_centres(128, 64)[-1]
        assert out.std() > 0.01
    else:
        assert (out - 0.5).abs().max() < 0.2


def test_default_heads_are_todays_models_exactly():
    # FocalNet: global average pool of the normalised last map -> MLP; baseline: flattened 1/8 map -> MLP.
    torch.manual_seed(0)
    x = torch.rand(2, 3, 64, 64)
    for backbone in ("focalnet", "baseline"):
        model = build_model({"backbone": backbone, "focalnet": TINY_FN}).eval()
        assert model.head.input.lateral.__len__() == 0 and model.head.input.norm is None
        features = model.backbone((x - model.mean) / model.std)  # the backbone's own pooled / flat output
        assert torch.equal(model(x), model.head.mlp(features).view(2, 16, 2))
        assert model.head.mlp[-1].bias.eq(0.5).all()


def test_forward_stages_shapes_and_last_map():
    x = torch.rand(2, 3, 64, 64)
    fn = FocalNet(FocalNetConfig(**{**TINY_FN, "depths": (1, 1, 1, 1)})).eval()
    maps = fn.forward_stages(x)
    assert [tuple(m.shape) for m in maps] == [(2, 8, 16, 16), (2, 16, 8, 8), (2, 32, 4, 4), (2, 64, 2, 2)]
    assert torch.equal(maps[-1], fn.forward_features(x))
    base = BaselinePatchExtractor(BaselineConfig()).eval()
    maps = base.forward_stages(x)
    assert [tuple(m.shape) for m in maps] == [(2, 8, 32, 32), (2, 16, 16, 16), (2, 32, 8, 8)]
    assert torch.equal(maps[-1], base.forward_features(x))
    assert ModelConfig(backbone="baseline").stage_shapes == ((8, 32), (16, 16), (32, 8))


def _heatmap(side: int, img_size: int = 64, k: int = 2) -> HeatmapHead:
    return HeatmapHead(HeadConfig(kind="heatmap", hidden=()), ((4, side),), k, img_size)


@pytest.mark.parametrize(("side", "img_size"), [(64, 64), (8, 64), (16, 64), (5, 5)])
def test_soft_argmax_of_a_one_hot_heatmap_is_that_cell_centre(side, img_size):
    head = _heatmap(side, img_size)
    stride = img_size / side
    for row, col in [(0, 0), (side - 1, side - 1), (side // 3, side - 2)]:
        logits = torch.full((1, 2, side, side), -1e4)
        logits[0, :, row, col] = 0.0  # softmax is exactly one-hot
        xy = head.decode(logits)[0, 0]
        want = torch.tensor([(col + 0.5) * stride - 0.5, (row + 0.5) * stride - 0.5]) / img_size
        torch.testing.assert_close(xy, want, rtol=0, atol=1e-6)
    if side == img_size:  # full resolution: the pixel itself, as the training targets put it
        logits = torch.full((1, 2, side, side), -1e4)
        row, col = side * 3 // 5, side // 6
        logits[0, :, row, col] = 0.0
        xy = head.decode(logits)[0, 0] * img_size  # what search.task.train.predict does
        torch.testing.assert_close(xy, torch.tensor([float(col), float(row)]), rtol=0, atol=1e-4)


def test_simcc_decode_of_a_one_hot_bin_is_that_bin_centre():
    for split in (1.0, 2.0, 3.0):
        head = SimCCHead(HeadConfig(kind="simcc", split_ratio=split, hidden=()), ((4, 8),), 1, 64)
        bins = round(64 * split)
        assert head.fc_x.out_features == bins
        for bx, by in [(0, bins - 1), (17, 5)]:
            lx, ly = torch.full((1, 1, bins), -1e4), torch.full((1, 1, bins), -1e4)
            lx[..., bx], ly[..., by] = 0.0, 0.0
            xy = head.decode(lx, ly)[0, 0] * 64  # pixels
            want = torch.tensor([(bx + 0.5) / split - 0.5, (by + 0.5) / split - 0.5])
            torch.testing.assert_close(xy, want, rtol=0, atol=1e-4)
    torch.testing.assert_close(cell_centres(64, 64) * 64, torch.arange(64.0), rtol=0, atol=1e-5)


def test_simcc_starts_as_a_separable_soft_argmax():
    # Its linears start as the column / row sums of the joint map: a peaked map cell decodes to that
    # cell's bins, i.e. the soft-argmax of the map's marginals.
    head = SimCCHead(HeadConfig(kind="simcc", hidden=()), ((4, 8),), 1, 64)
    heat = _heatmap(8, 64, k=1)  # for its cell centres
    logits = torch.full((1, 1, 8, 8), -1.0)
    logits[0, 0, 5, 2] = 1.0
    v = logits.flatten(2)
    lx, ly = head.fc_x(v), head.fc_y(v)
    assert lx.argmax().item() // 16 == 2 and ly.argmax().item() // 16 == 5  # 16 bins per cell
    marginal_x = logits.sum(2)  # (1, 1, 8) column sums
    torch.testing.assert_close(lx, marginal_x.repeat_interleave(16, dim=-1))
    xy = head.decode(lx * 5, ly * 5)[0, 0]  # sharpened: all mass on the cell's 16 bins, centred on the cell
    torch.testing.assert_close(xy, heat.centres[[2, 5]], rtol=0, atol=2e-3)


def test_learned_beta_is_a_parameter_fixed_beta_is_not():
    learned = build_model(_config("baseline", "heatmap", beta=2.0, learn_beta=True))
    fixed = build_model(_config("baseline", "heatmap", beta=2.0))
    assert "head.log_beta" in dict(learned.named_parameters())
    assert "head.log_beta" not in dict(fixed.named_parameters()) and "head.log_beta" not in fixed.state_dict()
    assert learned.head.log_beta.exp().item() == pytest.approx(2.0)
    assert fixed.head.log_beta.exp().item() == pytest.approx(2.0)


def test_costs_include_the_head():
    pool = build_model(_config("focalnet", "pool", stage=0))
    heat = build_model(_config("focalnet", "heatmap", stage=0))
    for model in (pool, heat):
        assert count_params(model) == count_params(model.backbone) + count_params(model.head)
        assert count_flops(model, 64) > count_flops(model.backbone, 64)
    flat = build_model(_config("baseline", "flatten"))
    assert count_params(flat.head) == 8 * 8 * 8 * 8 + 8 + 8 * 6 + 6  # Linear(512, 8) + Linear(8, 6)


def test_old_state_dicts_load():
    torch.manual_seed(0)
    model = build_model({"backbone": "baseline", "head_hidden": [8]})
    old = {k.replace("head.mlp.", "head."): v for k, v in model.state_dict().items()}  # pre-head-module keys
    assert "head.0.weight" in old
    fresh = build_model({"backbone": "baseline", "head_hidden": [8]})
    fresh.load_state_dict(old)
    x = torch.rand(1, 3, 64, 64)
    assert torch.equal(fresh.eval()(x), model.eval()(x))


def _blobs(n: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """A bright blob per image; both joints at its centre. Positions sit off-centre (mean ~0.7), so
    even a head that keeps no position lowers its loss by learning the mean."""
    pos = torch.randint(30, 60, (n, 2), generator=g).float()
    yy, xx = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    d2 = (xx - pos[:, 0, None, None]) ** 2 + (yy - pos[:, 1, None, None]) ** 2
    images = torch.exp(-d2 / 8.0)[:, None].expand(-1, 3, -1, -1).contiguous()
    return images, (pos / 64)[:, None, :].expand(-1, 2, -1).contiguous()


@pytest.mark.parametrize(("backbone", "kind"), list(itertools.product(("focalnet", "baseline"), KINDS)))
def test_short_training_lowers_the_loss(backbone, kind):
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    images, targets = _blobs(64, g)
    stage = 1 if backbone == "focalnet" else -1
    model = build_model({**_config(backbone, kind, stage=stage, hidden=[16]), "num_keypoints": 2})
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(60):
        idx = torch.randint(0, 64, (16,), generator=g)
        loss = (model(images[idx]) - targets[idx]).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < 0.75 * first, (first, last)
    if kind == "heatmap":  # keeps position: beats the constant (mean) predictor, not just the centre
        constant = (targets - targets.mean(0)).abs().mean().item()
        assert last < constant, (backbone, last, constant)
