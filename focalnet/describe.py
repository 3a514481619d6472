"""Human-readable walkthrough of a FocalNet config: per-stage shapes, kernels, receptive fields and costs."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from .baseline import BaselinePatchExtractor
from .config import BaselineConfig, FocalNetConfig, ModelConfig
from .cost import count_flops, count_params
from .keypoint import build_model
from .model import FocalNet, overlapped_kernel

__all__ = ["describe", "receptive_fields"]


def receptive_fields(kernel_sizes: tuple[int, ...] | list[int], contexts: str) -> list[int]:
    """Receptive field (in tokens of the stage's grid) of each depthwise focal level.

    Sequential contexts stack the convolutions, so level l sees ``sum_{i<=l} (k_i - 1) + 1``;
    independent contexts apply each kernel to the projected context once, so level l sees ``k_l``.
    (The global level always sees the whole map; the 1x1 ``f``/``h`` projections add nothing.)
    """
    if contexts == "independent":
        return list(kernel_sizes)
    out, rf = [], 1
    for k in kernel_sizes:
        rf += k - 1
        out.append(rf)
    return out


def _run(module: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, int]:
    counter = FlopCounterMode(display=False)
    with counter:
        y = module(x)
    return y, int(counter.get_total_flops())


def _mflops(flops: int) -> str:
    return f"{flops / 1e6:,.1f}"


def _table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return lines


def describe(config: FocalNetConfig | ModelConfig | dict[str, Any]) -> str:
    """Table of the FocalNet described by ``config``, with totals and the baseline for comparison.

    Args:
        config: A FocalNetConfig, a ModelConfig (its ``focalnet`` part is described and the
            whole keypoint models are compared), or the dict form of either.
    """
    if isinstance(config, dict):
        is_model = any(k in config for k in ("backbone", "focalnet", "baseline", "num_keypoints"))
        config = ModelConfig.from_dict(config) if is_model else FocalNetConfig.from_dict(config)
    model_cfg = config if isinstance(config, ModelConfig) else ModelConfig(focalnet=config)
    c = model_cfg.focalnet

    model = FocalNet(c).eval()
    rows = [["part", "grid", "channels", "blocks", "kernels", "RF seq", "RF ind", "params", "MFLOPs"]]
    mark = {"sequential": 5, "independent": 6}[c.contexts]
    rows[0][mark] += "*"
    with torch.no_grad():
        x = torch.zeros(1, c.in_chans, c.img_size, c.img_size)
        stem = model.patch_embed
        x, flops = _run(stem, x)
        k = overlapped_kernel(c.patch_size) if c.overlapped_embed else (c.patch_size, 0)
        stem_desc = f"{k[0]}x{k[0]}/s{c.patch_size}" + (f"/p{k[1]}" if k[1] else "")
        grid = c.stage_resolutions
        rows.append(["stem", f"{c.img_size}->{grid[0]}", f"{c.in_chans}->{c.embed_dim}", "-", stem_desc, "-", "-",
                     f"{count_params(stem):,}", _mflops(flops)])  # fmt: skip
        total_flops = flops
        for i, layer in enumerate(model.layers):
            x, flops = _run(layer, x)
            total_flops += flops
            kernels = c.kernel_sizes(i)
            seq = ",".join(map(str, receptive_fields(kernels, "sequential"))) + ",all"
            ind = ",".join(map(str, receptive_fields(kernels, "independent"))) + ",all"
            res = f"{grid[i]}" + (f"->{grid[i + 1]}" if i + 1 < len(grid) else "")
            dims = f"{c.stage_dims[i]}" + (f"->{c.stage_dims[i + 1]}" if i + 1 < len(grid) else "")
            rows.append([f"stage {i}", res, dims, str(c.depths[i]), ",".join(map(str, kernels)), seq, ind,
                         f"{count_params(layer):,}", _mflops(flops)])  # fmt: skip
        rows.append(["norm+pool", "1", str(c.num_features), "-", "-", "-", "-", f"{count_params(model.norm):,}", "0.0"])  # fmt: skip
    n_params = count_params(model)
    rows.append(["total", "", "", str(sum(c.depths)), "", "", "", f"{n_params:,}", _mflops(total_flops)])

    base_cfg = BaselineConfig(img_size=c.img_size, in_chans=c.in_chans, channels=model_cfg.baseline.channels)
    base = BaselinePatchExtractor(base_cfg)
    base_flops = count_flops(base, c.img_size, c.in_chans)
    head = f"head {tuple(model_cfg.head_hidden)}, K={model_cfg.num_keypoints}"
    fn_full = build_model(ModelConfig.from_dict({**model_cfg.to_dict(), "backbone": "focalnet"}))
    bl_full = build_model(ModelConfig.from_dict({**model_cfg.to_dict(), "backbone": "baseline"}))

    out = [
        f"FocalNet: img {c.img_size}, patch {c.patch_size} ({'overlapped' if c.overlapped_embed else 'plain'} "
        f"embed), embed_dim {c.embed_dim}, depths {tuple(c.depths)}, focal_levels {c.focal_levels}, "
        f"focal_windows {c.focal_windows}, focal_factor {c.focal_factor}, contexts={c.contexts}",
        "",
        *_table(rows),
        "",
        "grid: token grid side (stage input -> after its downsample). kernels: depthwise kernel per focal level.",
        "RF: receptive field per level in tokens of the stage grid (seq: sum(k_i - 1) + 1 over levels <= l;",
        "ind: k_l), then the global level ('all'); * marks the configured mode.",
        "FLOPs: torch FlopCounterMode, batch 1, 1 MAC = 2 FLOPs, convs and matmuls only.",
        "",
        f"features: {c.num_features} (global average pool of a {grid[-1]}x{grid[-1]} map)",
        f"baseline {base_cfg.channels}: {count_params(base):,} params, {_mflops(base_flops)} MFLOPs, "
        f"{base.num_features} features (conv3x3+GroupNorm+ReLU+avgpool x{len(base_cfg.channels)})",
        f"keypoint model ({head}): focalnet {count_params(fn_full):,} params, "
        f"{_mflops(count_flops(fn_full, c.img_size, c.in_chans))} MFLOPs; baseline {count_params(bl_full):,} "
        f"params, {_mflops(count_flops(bl_full, c.img_size, c.in_chans))} MFLOPs",
    ]
    return "\n".join(out)
