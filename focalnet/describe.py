"""Human-readable walkthrough of a FocalNet config: per-stage shapes, kernels, receptive fields and costs."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from .baseline import BaselinePatchExtractor
from .config import BaselineConfig, FocalNetConfig, HeadConfig, ModelConfig
from .cost import count_flops, count_params
from .keypoint import build_model
from .model import overlapped_kernel

__all__ = ["describe", "head_summary", "receptive_fields"]


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


def head_summary(config: ModelConfig) -> str:
    """One line saying what the head of ``config`` reads and computes, e.g.
    ``heatmap on stage 1 (8x8, stride 8) + stages 2-3 top-down; 1x1 convs (256,) -> 16 heatmaps -> soft-argmax``."""
    h, shapes = config.head, config.stage_shapes
    n = len(shapes)
    stage = h.stage % n
    ch, side = shapes[stage]
    where = f"{h.kind} on stage {stage} ({side}x{side}, {ch} ch, stride {config.img_size // side})"
    if stage < n - 1:
        later = f"{stage + 1}" if stage + 1 == n - 1 else f"{stage + 1}-{n - 1}"
        where += f" + stage{'s' if stage + 1 < n - 1 else ''} {later} top-down (1x1 conv, nearest upsampling, LayerNorm)"
    k = config.num_keypoints
    what = {
        "pool": f"global average pool -> MLP {h.hidden} -> {k}x2",
        "flatten": f"flatten {ch * side * side} -> MLP {h.hidden} -> {k}x2",
        "heatmap": f"1x1 convs {h.hidden} -> {k} heatmaps -> softmax (beta {h.beta:g}"
        f"{', learned' if h.learn_beta else ''}) -> expected cell centre",
        "simcc": f"1x1 convs {h.hidden} -> {k} maps -> per-axis linears over {round(config.img_size * h.split_ratio)} bins "
        f"(split {h.split_ratio:g}) -> softmax (beta {h.beta:g}{', learned' if h.learn_beta else ''}) -> expected bin",
    }[h.kind]
    drop = f", dropout {h.dropout:g}" if h.dropout else ""
    xy = "; x/y coordinate input channels" if config.coord_channels else ""
    return f"{where}; {what}{drop}{xy}"


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
    """Table of the FocalNet described by ``config`` and its head, with totals and the baseline for comparison.

    Args:
        config: A FocalNetConfig, a ModelConfig (its ``focalnet`` part and head are described and the
            whole keypoint models are compared), or the dict form of either.
    """
    if isinstance(config, dict):
        is_model = any(k in config for k in ("backbone", "focalnet", "baseline", "num_keypoints"))
        config = ModelConfig.from_dict(config) if is_model else FocalNetConfig.from_dict(config)
    model_cfg = config if isinstance(config, ModelConfig) else ModelConfig(focalnet=config)
    if model_cfg.backbone != "focalnet":  # describe the FocalNet with the head the config gives
        head = dataclasses.replace(
            model_cfg.head, kind=None if model_cfg.head.kind == "flatten" else model_cfg.head.kind
        )
        model_cfg = dataclasses.replace(model_cfg, backbone="focalnet", head=head)
    c = model_cfg.focalnet

    fn_full = build_model(model_cfg).eval()
    model = fn_full.backbone
    rows = [["part", "grid", "channels", "blocks", "kernels", "RF seq", "RF ind", "params", "MFLOPs"]]
    mark = {"sequential": 5, "independent": 6}[c.contexts]
    rows[0][mark] += "*"
    with torch.no_grad():
        x = torch.zeros(1, c.in_chans, c.img_size, c.img_size)
        x = torch.cat([x, fn_full.coords], 1) if model_cfg.coord_channels else x
        stem = model.patch_embed
        x, flops = _run(stem, x)
        k = overlapped_kernel(c.patch_size) if c.overlapped_embed else (c.patch_size, 0)
        stem_desc = f"{k[0]}x{k[0]}/s{c.patch_size}" + (f"/p{k[1]}" if k[1] else "")
        grid = c.stage_resolutions
        in_desc = f"{c.in_chans}+2xy" if model_cfg.coord_channels else f"{c.in_chans}"
        rows.append(["stem", f"{c.img_size}->{grid[0]}", f"{in_desc}->{c.embed_dim}", "-", stem_desc, "-", "-",
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
        rows.append(["norm", str(grid[-1]), str(c.num_features), "-", "-", "-", "-", f"{count_params(model.norm):,}", "0.0"])  # fmt: skip
        n_params = count_params(model)
        rows.append(
            ["backbone", "", "", str(sum(c.depths)), "", "", "", f"{n_params:,}", _mflops(total_flops)]
        )
        maps = model.forward_stages(
            torch.cat([torch.zeros(1, c.in_chans, c.img_size, c.img_size), fn_full.coords], 1)
            if model_cfg.coord_channels
            else torch.zeros(1, c.in_chans, c.img_size, c.img_size)
        )
        _, head_flops = _run(fn_full.head, maps)
        h = model_cfg.head
        stage = h.stage % c.num_stages
        rows.append([f"head {h.kind}", str(grid[stage]), f"{c.stage_dims[stage]}->{model_cfg.num_keypoints}x2", "-",
                     f"stage {stage}", "-", "-", f"{count_params(fn_full.head):,}", _mflops(head_flops)])  # fmt: skip
        rows.append(
            ["total", "", "", "", "", "", "", f"{count_params(fn_full):,}", _mflops(total_flops + head_flops)]
        )

    base_cfg = BaselineConfig(img_size=c.img_size, in_chans=c.in_chans, channels=model_cfg.baseline.channels)
    base = BaselinePatchExtractor(base_cfg)
    base_flops = count_flops(base, c.img_size, c.in_chans)
    # The baseline as the team runs it: its flatten head on the last block, no coordinate channels.
    bl_head = HeadConfig(kind="flatten", hidden=model_cfg.head.hidden, dropout=model_cfg.head.dropout)
    bl_full = build_model(dataclasses.replace(model_cfg, backbone="baseline", baseline=base_cfg, head=bl_head,
                                              coord_channels=False))  # fmt: skip

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
        f"head: {head_summary(model_cfg)}",
        f"baseline {base_cfg.channels}: {count_params(base):,} params, {_mflops(base_flops)} MFLOPs, "
        f"{base.num_features} features (conv3x3+GroupNorm+ReLU+avgpool x{len(base_cfg.channels)})",
        f"keypoint model (K={model_cfg.num_keypoints}): focalnet + {h.kind} head {count_params(fn_full):,} params, "
        f"{_mflops(count_flops(fn_full, c.img_size, c.in_chans))} MFLOPs; baseline + flatten head {bl_head.hidden} "
        f"{count_params(bl_full):,} params, {_mflops(count_flops(bl_full, c.img_size, c.in_chans))} MFLOPs",
    ]
    return "\n".join(out)
