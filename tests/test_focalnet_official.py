"""Official microsoft/FocalNet checkpoints: key names, loading, and forward parity with a reference.

The reference below is written independently from the paper's equations and the official key
names, as a functional forward over the state dict in the official (B, H*W, C) token layout.
"""

import pytest
import torch
import torch.nn.functional as F

from focalnet import FocalNet, FocalNetConfig, build_model, load_official_checkpoint, load_official_state_dict


def official_shapes(cfg: FocalNetConfig, num_classes: int = 1000) -> dict[str, tuple[int, ...]]:
    """Key -> shape of an official classification checkpoint, enumerated by hand."""
    shapes: dict[str, tuple[int, ...]] = {}
    k0 = 7 if cfg.overlapped_embed else cfg.patch_size  # the official overlapped stem exists for p=4 only
    dims = [cfg.embed_dim * 2**i for i in range(len(cfg.depths))]
    shapes["patch_embed.proj.weight"] = (dims[0], cfg.in_chans, k0, k0)
    shapes["patch_embed.proj.bias"] = (dims[0],)
    if cfg.patch_norm:
        shapes["patch_embed.norm.weight"] = shapes["patch_embed.norm.bias"] = (dims[0],)
    levels, windows = cfg.stage_focal_levels, cfg.stage_focal_windows
    for i, (depth, C) in enumerate(zip(cfg.depths, dims, strict=True)):
        L, hidden = levels[i], int(C * cfg.mlp_ratio)
        for j in range(depth):
            b = f"layers.{i}.blocks.{j}."
            for norm in ("norm1", "norm2"):
                shapes[b + norm + ".weight"] = shapes[b + norm + ".bias"] = (C,)
            shapes[b + "modulation.f.weight"] = (2 * C + L + 1, C)
            shapes[b + "modulation.f.bias"] = (2 * C + L + 1,)
            shapes[b + "modulation.h.weight"] = (C, C, 1, 1)
            shapes[b + "modulation.h.bias"] = (C,)
            shapes[b + "modulation.proj.weight"] = (C, C)
            shapes[b + "modulation.proj.bias"] = (C,)
            for lvl in range(L):
                k = cfg.focal_factor * lvl + windows[i]
                shapes[b + f"modulation.focal_layers.{lvl}.0.weight"] = (C, 1, k, k)
            if cfg.use_postln_in_modulation:
                shapes[b + "modulation.ln.weight"] = shapes[b + "modulation.ln.bias"] = (C,)
            shapes[b + "mlp.fc1.weight"] = (hidden, C)
            shapes[b + "mlp.fc1.bias"] = (hidden,)
            shapes[b + "mlp.fc2.weight"] = (C, hidden)
            shapes[b + "mlp.fc2.bias"] = (C,)
            if cfg.use_layerscale:
                shapes[b + "gamma_1"] = shapes[b + "gamma_2"] = (C,)
        if i + 1 < len(dims):
            kd = 3 if cfg.overlapped_embed else 2
            shapes[f"layers.{i}.downsample.proj.weight"] = (dims[i + 1], C, kd, kd)
            shapes[f"layers.{i}.downsample.proj.bias"] = (dims[i + 1],)
            shapes[f"layers.{i}.downsample.norm.weight"] = shapes[f"layers.{i}.downsample.norm.bias"] = (
                dims[i + 1],
            )
    shapes["norm.weight"] = shapes["norm.bias"] = (dims[-1],)
    shapes["head.weight"] = (num_classes, dims[-1])
    shapes["head.bias"] = (num_classes,)
    return shapes


def random_official_checkpoint(cfg: FocalNetConfig, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for key, shape in official_shapes(cfg).items():
        t = torch.randn(shape, generator=g)
        if "norm" in key.split(".")[-2] or key.endswith(("ln.weight", "ln.bias")):
            t = 1 + 0.1 * t if key.endswith("weight") else 0.1 * t
        elif key.endswith(("gamma_1", "gamma_2")):
            t = 0.5 + 0.1 * t
        elif len(shape) == 1:  # biases
            t = 0.1 * t
        else:  # weights: variance 1 / fan_in keeps activations O(1)
            t = t / torch.tensor(shape[1:]).prod().sqrt()
        sd[key] = t
    return {"model": sd, "epoch": 300}


def reference_forward(sd: dict, cfg: FocalNetConfig, x: torch.Tensor) -> torch.Tensor:
    """Official FocalNet forward (pooled features, no head) from the state dict alone."""

    def ln(t, prefix):
        return F.layer_norm(t, t.shape[-1:], sd[prefix + ".weight"], sd[prefix + ".bias"])

    def lin(t, prefix):
        return F.linear(t, sd[prefix + ".weight"], sd[prefix + ".bias"])

    pad = 2 if cfg.overlapped_embed else 0
    x = F.conv2d(
        x, sd["patch_embed.proj.weight"], sd["patch_embed.proj.bias"], stride=cfg.patch_size, padding=pad
    )
    B, C, H, W = x.shape
    x = x.flatten(2).transpose(1, 2)  # (B, H*W, C)
    if cfg.patch_norm:
        x = ln(x, "patch_embed.norm")
    for i, depth in enumerate(cfg.depths):
        L = cfg.stage_focal_levels[i]
        for j in range(depth):
            b = f"layers.{i}.blocks.{j}."
            g1 = sd.get(b + "gamma_1", 1.0)
            g2 = sd.get(b + "gamma_2", 1.0)
            shortcut = x
            t = x if cfg.use_postln else ln(x, b + "norm1")
            # Focal modulation: q, context and gates from one linear map.
            t = lin(t.view(B, H, W, C), b + "modulation.f").permute(0, 3, 1, 2)
            q, ctx, gates = t[:, :C], t[:, C : 2 * C], t[:, 2 * C :]
            ctx_all = torch.zeros_like(ctx)
            for lvl in range(L):
                w = sd[b + f"modulation.focal_layers.{lvl}.0.weight"]
                ctx = F.gelu(F.conv2d(ctx, w, padding=w.shape[-1] // 2, groups=C))
                ctx_all = ctx_all + ctx * gates[:, lvl : lvl + 1]
            ctx_global = F.gelu(ctx.mean(2, keepdim=True).mean(3, keepdim=True))
            ctx_all = ctx_all + ctx_global * gates[:, L:]
            if cfg.normalize_modulator:
                ctx_all = ctx_all / (L + 1)
            modulator = F.conv2d(ctx_all, sd[b + "modulation.h.weight"], sd[b + "modulation.h.bias"])
            t = (q * modulator).permute(0, 2, 3, 1)
            if cfg.use_postln_in_modulation:
                t = ln(t, b + "modulation.ln")
            t = lin(t, b + "modulation.proj").reshape(B, H * W, C)
            if cfg.use_postln:
                t = ln(t, b + "norm1")
            x = shortcut + g1 * t
            mlp_in = x if cfg.use_postln else ln(x, b + "norm2")
            t = lin(F.gelu(lin(mlp_in, b + "mlp.fc1")), b + "mlp.fc2")
            x = x + g2 * (ln(t, b + "norm2") if cfg.use_postln else t)
        if i + 1 < len(cfg.depths):
            p = f"layers.{i}.downsample."
            t = x.transpose(1, 2).reshape(B, C, H, W)
            t = F.conv2d(
                t,
                sd[p + "proj.weight"],
                sd[p + "proj.bias"],
                stride=2,
                padding=1 if cfg.overlapped_embed else 0,
            )
            B, C, H, W = t.shape
            x = ln(t.flatten(2).transpose(1, 2), p + "norm")
    return ln(x, "norm").mean(1)


PARITY_CONFIGS = [
    {},
    {"focal_levels": 3, "focal_windows": (3, 5, 3)},
    {"overlapped_embed": True, "normalize_modulator": True},
    {"use_layerscale": True, "use_postln": True, "use_postln_in_modulation": True, "patch_norm": False},
]


@pytest.mark.parametrize("extra", PARITY_CONFIGS)
def test_parity_with_official_reference(extra):
    cfg = FocalNetConfig(embed_dim=8, depths=(1, 2, 1), **extra)
    ckpt = random_official_checkpoint(cfg)
    model = FocalNet(cfg).eval()
    skipped = load_official_state_dict(model, ckpt)
    assert sorted(skipped) == ["head.bias", "head.weight"]
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        ours, ref = model(x), reference_forward(ckpt["model"], cfg, x)
    assert ref.abs().mean() > 0.1  # not a degenerate comparison
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)


def test_our_keys_are_the_official_keys():
    cfg = FocalNetConfig(use_layerscale=True, use_postln_in_modulation=True, overlapped_embed=True)
    with torch.device("meta"):
        model = FocalNet(cfg)
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    official = {k: v for k, v in official_shapes(cfg).items() if not k.startswith("head.")}
    assert ours == official


def test_checkpoint_file_into_keypoint_model(tmp_path):
    cfg = FocalNetConfig(embed_dim=8, depths=(1, 1))
    ckpt = random_official_checkpoint(cfg, seed=1)
    path = tmp_path / "focalnet_official.pth"
    torch.save(ckpt, path)
    model = build_model({"backbone": "focalnet", "focalnet": cfg.to_dict()})
    load_official_checkpoint(model, path)
    torch.testing.assert_close(
        model.backbone.patch_embed.proj.weight, ckpt["model"]["patch_embed.proj.weight"]
    )


def test_mismatch_lists_offending_keys_and_shapes():
    ckpt = random_official_checkpoint(FocalNetConfig(embed_dim=8, depths=(1, 1), focal_levels=3))
    model = FocalNet(FocalNetConfig(embed_dim=8, depths=(1, 1), focal_levels=2))
    with pytest.raises(ValueError) as info:
        load_official_state_dict(model, ckpt)
    msg = str(info.value)
    assert "unexpected: layers.0.blocks.0.modulation.focal_layers.2.0.weight (8, 1, 7, 7)" in msg
    assert "shape: layers.0.blocks.0.modulation.f.weight checkpoint (20, 8) != model (19, 8)" in msg

    sd = dict(random_official_checkpoint(FocalNetConfig(embed_dim=8, depths=(1, 1)))["model"])
    del sd["norm.weight"]
    with pytest.raises(ValueError, match=r"missing: norm\.weight \(16,\)"):
        load_official_state_dict(FocalNet(FocalNetConfig(embed_dim=8, depths=(1, 1))), sd)
