"""FocalNet (Yang et al. 2022, "Focal Modulation Networks") as a patch feature extractor.

Semantics and parameter names follow the official microsoft/FocalNet classification model, so its
checkpoints load directly (see ``focalnet.official``). Differences from the official code:

* Tokens are kept as (B, H, W, C) maps rather than (B, H*W, C) sequences, so blocks need no
  H/W side channel (the official code writes ``blk.H``/``blk.W`` before every call).
* Nothing is written to a module in ``forward``; gates and modulators come from
  :meth:`FocalNet.modulation_maps` on demand.
* ``contexts="independent"`` is an option: every focal level convolves the projected context.
* The overlapped stem works for any patch size (official: 4 only; see :func:`overlapped_kernel`).
* No classifier head: ``forward`` returns pooled features.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import FocalNetConfig

__all__ = ["FocalNet", "overlapped_kernel"]


def overlapped_kernel(patch_size: int) -> tuple[int, int]:
    """Kernel and padding of an overlapped patch embedding with stride ``patch_size``.

    ``k = max(2p - 1, 3)``, ``pad = (k - p + 1) // 2`` gives exactly ``H / p`` outputs for any
    ``H`` divisible by ``p``. It reproduces the official stem at p=4 (7x7, pad 2) and the
    official overlapped downsample at p=2 (3x3, pad 1).
    """
    k = max(2 * patch_size - 1, 3)
    return k, (k - patch_size + 1) // 2


class DropPath(nn.Module):
    """Stochastic depth: drop the whole residual branch per sample.

    Args:
        drop_prob: Probability of dropping the branch in training.
    """

    def __init__(self, drop_prob: float = 0.0) -> None:
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, x: Tensor) -> Tensor:
        if self.drop_prob == 0.0 or not self.training:
            return x
        keep = 1.0 - self.drop_prob
        mask = x.new_empty([x.shape[0]] + [1] * (x.dim() - 1)).bernoulli_(keep)
        return x * mask / keep


class Mlp(nn.Module):
    """Two-layer GELU MLP on the last dimension.

    Args:
        dim: Input and output width.
        hidden: Hidden width.
        drop: Dropout after each layer.
    """

    def __init__(self, dim: int, hidden: int, drop: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x: Tensor) -> Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class FocalModulation(nn.Module):
    """Focal modulation: ``y = proj(q * h(sum_l gate_l * ctx_l))`` over L+1 context levels.

    Args:
        dim: Channels C.
        focal_window: Kernel of level 0.
        focal_level: Number of depthwise levels L (plus one global level).
        focal_factor: Kernel growth per level: ``k_l = focal_factor * l + focal_window``.
        independent: Every level convolves the projected context (and the global level pools
            it) instead of the previous level's output. Same parameters as sequential.
        use_postln_in_modulation: LayerNorm ``ln`` on ``q * modulator`` before ``proj``.
        normalize_modulator: Divide the aggregated context by L + 1.
        proj_drop: Dropout after ``proj``.
    """

    def __init__(
        self,
        dim: int,
        focal_window: int,
        focal_level: int,
        focal_factor: int = 2,
        independent: bool = False,
        use_postln_in_modulation: bool = False,
        normalize_modulator: bool = False,
        proj_drop: float = 0.0,
    ) -> None:
        super().__init__()
        self.dim = dim
        self.focal_level = focal_level
        self.independent = independent
        self.normalize_modulator = normalize_modulator
        self.kernel_sizes = [focal_factor * lvl + focal_window for lvl in range(focal_level)]

        # One projection gives the query, the context and L+1 raw (ungated-activation) gates.
        self.f = nn.Linear(dim, 2 * dim + focal_level + 1)
        self.focal_layers = nn.ModuleList(
            [
                nn.Sequential(nn.Conv2d(dim, dim, k, padding=k // 2, groups=dim, bias=False), nn.GELU())
                for k in self.kernel_sizes
            ]
        )
        self.act = nn.GELU()
        self.h = nn.Conv2d(dim, dim, kernel_size=1)
        self.ln = nn.LayerNorm(dim) if use_postln_in_modulation else nn.Identity()
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward_maps(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Modulate ``x`` (B, H, W, C); return (output, gates (B, L+1, H, W), modulator (B, C, H, W))."""
        C = x.shape[-1]
        q, ctx, gates = torch.split(self.f(x).permute(0, 3, 1, 2), [C, C, self.focal_level + 1], 1)

        ctx_all, level_in = ctx, ctx  # ctx_all is replaced at level 0 (no zeros tensor to add onto)
        for lvl, layer in enumerate(self.focal_layers):
            ctx_l = layer(level_in)
            gated = ctx_l * gates[:, lvl : lvl + 1]
            ctx_all = gated if lvl == 0 else ctx_all + gated
            if not self.independent:
                level_in = ctx_l  # sequential: the next level sees this level's output
        ctx_global = self.act(level_in.mean((2, 3), keepdim=True))
        ctx_all = ctx_all + ctx_global * gates[:, self.focal_level :]
        if self.normalize_modulator:
            ctx_all = ctx_all / (self.focal_level + 1)

        # h is a 1x1 Conv2d (official name and shape), applied as a Linear on the channels-last
        # memory the maps already have: a GEMM, cheaper on CPU than the 1x1 convolution.
        modulator = F.linear(ctx_all.permute(0, 2, 3, 1), self.h.weight.flatten(1), self.h.bias)
        out = self.ln(q.permute(0, 2, 3, 1) * modulator)
        modulator = modulator.permute(0, 3, 1, 2)
        return self.proj_drop(self.proj(out)), gates, modulator

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_maps(x)[0]


class FocalNetBlock(nn.Module):
    """Residual modulation + MLP block on (B, H, W, C) maps (pre-norm, or post-norm).

    Args:
        dim: Channels.
        mlp_ratio: MLP hidden width / channels.
        focal_level: Focal levels L.
        focal_window: Kernel of the first level.
        focal_factor: Kernel growth per level.
        independent: Independent contexts (see :class:`FocalModulation`).
        use_layerscale: Learnable residual scales ``gamma_1``/``gamma_2``.
        layerscale_value: Their initial value.
        use_postln: Normalise the branch outputs instead of the branch inputs.
        use_postln_in_modulation: See :class:`FocalModulation`.
        normalize_modulator: See :class:`FocalModulation`.
        drop: Dropout in MLP and modulation.
        drop_path: Stochastic depth rate of both branches.
    """

    def __init__(
        self,
        dim: int,
        mlp_ratio: float = 4.0,
        focal_level: int = 2,
        focal_window: int = 3,
        focal_factor: int = 2,
        independent: bool = False,
        use_layerscale: bool = False,
        layerscale_value: float = 1e-4,
        use_postln: bool = False,
        use_postln_in_modulation: bool = False,
        normalize_modulator: bool = False,
        drop: float = 0.0,
        drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        self.use_postln = use_postln
        self.norm1 = nn.LayerNorm(dim)
        self.modulation = FocalModulation(
            dim,
            focal_window=focal_window,
            focal_level=focal_level,
            focal_factor=focal_factor,
            independent=independent,
            use_postln_in_modulation=use_postln_in_modulation,
            normalize_modulator=normalize_modulator,
            proj_drop=drop,
        )
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop=drop)
        # Official names and semantics: parameters only with layerscale, else a constant 1.0.
        if use_layerscale:
            self.gamma_1 = nn.Parameter(torch.full((dim,), layerscale_value))
            self.gamma_2 = nn.Parameter(torch.full((dim,), layerscale_value))
        else:
            self.gamma_1 = 1.0
            self.gamma_2 = 1.0

    def forward_maps(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Apply the block to ``x`` (B, H, W, C); also return the modulation's gates and modulator."""
        shortcut = x
        x = x if self.use_postln else self.norm1(x)
        x, gates, modulator = self.modulation.forward_maps(x)
        x = self.norm1(x) if self.use_postln else x
        x = shortcut + self.drop_path(self.gamma_1 * x)
        if self.use_postln:
            x = x + self.drop_path(self.gamma_2 * self.norm2(self.mlp(x)))
        else:
            x = x + self.drop_path(self.gamma_2 * self.mlp(self.norm2(x)))
        return x, gates, modulator

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_maps(x)[0]


class PatchEmbed(nn.Module):
    """Strided conv embedding: (B, C_in, H, W) -> (B, H/p, W/p, C_out), optional LayerNorm.

    Args:
        in_chans: Input channels.
        embed_dim: Output channels.
        patch_size: Stride p.
        overlapped: Use the overlapped kernel of :func:`overlapped_kernel` instead of k = p.
        norm: LayerNorm the output.
    """

    def __init__(
        self, in_chans: int, embed_dim: int, patch_size: int, overlapped: bool = False, norm: bool = True
    ) -> None:
        super().__init__()
        kernel, pad = overlapped_kernel(patch_size) if overlapped else (patch_size, 0)
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel, stride=patch_size, padding=pad)
        self.norm = nn.LayerNorm(embed_dim) if norm else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(self.proj(x).permute(0, 2, 3, 1))


class BasicLayer(nn.Module):
    """One stage: ``depth`` FocalNetBlocks, then (except the last stage) a 2x downsample.

    Args:
        dim: Channels of the stage.
        out_dim: Channels after the downsample, or None for the last stage (no downsample).
        depth: Number of blocks.
        drop_path: Stochastic depth rate of each block.
        overlapped: Overlapped downsample (3x3, stride 2, pad 1).
        block_kwargs: Remaining :class:`FocalNetBlock` arguments.
    """

    def __init__(
        self,
        dim: int,
        out_dim: int | None,
        depth: int,
        drop_path: list[float],
        overlapped: bool = False,
        **block_kwargs: Any,
    ) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            [FocalNetBlock(dim, drop_path=drop_path[i], **block_kwargs) for i in range(depth)]
        )
        # Downsamples are always normalised, whatever patch_norm says (official behaviour).
        self.downsample = PatchEmbed(dim, out_dim, 2, overlapped, norm=True) if out_dim is not None else None

    def forward(self, x: Tensor) -> Tensor:
        for blk in self.blocks:
            x = blk(x)
        if self.downsample is not None:
            x = self.downsample(x.permute(0, 3, 1, 2))
        return x


class FocalNet(nn.Module):
    """FocalNet backbone returning globally pooled features.

    Weight init (on purpose, = the official code): Linear weights truncated normal (std 0.02,
    cut at +-2 absolute), Linear biases 0; LayerNorm weight 1, bias 0; every Conv2d (stem,
    downsamples, depthwise focal convs, ``h``) keeps PyTorch's default kaiming-uniform(a=sqrt(5)),
    which the official code never overrides (timm and HF re-initialise some convs differently);
    layerscale gammas start at ``layerscale_value``.

    Args:
        config: Architecture; see :class:`~focalnet.config.FocalNetConfig`.
    """

    def __init__(self, config: FocalNetConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        dims = c.stage_dims
        self.num_features = c.num_features
        self.patch_embed = PatchEmbed(
            c.in_chans, dims[0], c.patch_size, c.overlapped_embed, norm=c.patch_norm
        )
        self.pos_drop = nn.Dropout(c.drop_rate)

        n_blocks = sum(c.depths)  # stochastic depth grows linearly from 0 to drop_path_rate
        dpr = [c.drop_path_rate * i / max(n_blocks - 1, 1) for i in range(n_blocks)]
        levels, windows = c.stage_focal_levels, c.stage_focal_windows
        self.layers = nn.ModuleList()
        for i, depth in enumerate(c.depths):
            start = sum(c.depths[:i])
            self.layers.append(
                BasicLayer(
                    dims[i],
                    dims[i + 1] if i + 1 < len(dims) else None,
                    depth,
                    drop_path=dpr[start : start + depth],
                    overlapped=c.overlapped_embed,
                    mlp_ratio=c.mlp_ratio,
                    focal_level=levels[i],
                    focal_window=windows[i],
                    focal_factor=c.focal_factor,
                    independent=c.contexts == "independent",
                    use_layerscale=c.use_layerscale,
                    layerscale_value=c.layerscale_value,
                    use_postln=c.use_postln,
                    use_postln_in_modulation=c.use_postln_in_modulation,
                    normalize_modulator=c.normalize_modulator,
                    drop=c.drop_rate,
                )
            )
        self.norm = nn.LayerNorm(self.num_features)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    def _tokens(self, x: Tensor) -> Tensor:
        x = self.pos_drop(self.patch_embed(x))
        for layer in self.layers:
            x = layer(x)
        return self.norm(x)

    def forward_stages(self, x: Tensor) -> list[Tensor]:
        """Every stage's map, channels first: stage i's blocks' output (B, stage_dims[i], r_i, r_i) before
        its downsample; the last one normalised by ``norm`` (= :meth:`forward_features`)."""
        x = self.pos_drop(self.patch_embed(x))
        maps: list[Tensor] = []
        for layer in self.layers:
            for blk in layer.blocks:
                x = blk(x)
            if layer.downsample is not None:
                maps.append(x.permute(0, 3, 1, 2))
                x = layer.downsample(x.permute(0, 3, 1, 2))
        maps.append(self.norm(x).permute(0, 3, 1, 2))
        return maps

    def forward_features(self, x: Tensor) -> Tensor:
        """Final normalised feature map (B, num_features, H', W') of images (B, in_chans, H, W)."""
        return self._tokens(x).permute(0, 3, 1, 2)

    def forward(self, x: Tensor) -> Tensor:
        """Globally average-pooled features (B, num_features)."""
        return self._tokens(x).mean((1, 2))

    @torch.jit.unused
    def modulation_maps(self, x: Tensor) -> list[dict[str, Any]]:
        """Recompute the forward pass and return every block's gates and modulator.

        Returns one dict per stage: ``{"stage": i, "kernel_sizes": [...], "gates": [per block
        (B, L+1, H, W)], "modulator": [per block (B, C, H, W)]}``. Gates are the raw linear
        outputs (the official model applies no activation to them). Wrap in ``torch.no_grad()``
        when only drawing them.
        """
        maps = []
        x = self.pos_drop(self.patch_embed(x))
        for i, layer in enumerate(self.layers):
            gates, modulators = [], []
            for blk in layer.blocks:
                x, g, m = blk.forward_maps(x)
                gates.append(g)
                modulators.append(m)
            if layer.downsample is not None:
                x = layer.downsample(x.permute(0, 3, 1, 2))
            kernels = list(layer.blocks[0].modulation.kernel_sizes) if len(layer.blocks) else []
            maps.append({"stage": i, "kernel_sizes": kernels, "gates": gates, "modulator": modulators})
        return maps
