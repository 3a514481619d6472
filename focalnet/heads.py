"""Regression heads: a backbone's stage maps -> (B, K, 2) joint coordinates in patch units.

Every head reads the list of stage maps a backbone's ``forward_stages`` returns (channels first, first
stage first) and outputs ``(x, y)`` = pixel / img_size with pixel centres at integers, the convention
of ``search.task`` (a target of pixel ``(i, j)`` is ``(i / img_size, j / img_size)``). So a map cell of
stride ``s`` covering pixels ``j*s .. j*s + s - 1`` sits at ``((j + 0.5) * s - 0.5) / img_size``, and
a soft-argmax of a one-hot heatmap returns exactly that cell's centre.

Nothing here writes state in ``forward``: the heads export with ``torch.export`` and ONNX.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import HeadConfig

__all__ = ["StageInput", "PoolHead", "FlattenHead", "HeatmapHead", "SimCCHead", "build_head", "cell_centres"]


def cell_centres(n: int, img_size: int) -> Tensor:
    """Centres of ``n`` equal cells across a patch of ``img_size`` pixels, in patch units (float32, (n,)).

    Pixel centres are at integers, so the patch spans ``[-0.5, img_size - 0.5]`` in pixels; cell ``j`` of
    width ``w = img_size / n`` is centred at ``(j + 0.5) * w - 0.5`` pixels. ``n = img_size`` gives the
    pixel centres ``j / img_size`` themselves; ``n = 2 * img_size`` gives SimCC's half-pixel bins.
    """
    width = img_size / n
    return ((torch.arange(n, dtype=torch.float64) + 0.5) * width - 0.5).div(img_size).float()


def _init_(module: nn.Module) -> None:
    """Head weights truncated normal (std 0.02), biases 0: the seed's MLP head init, for every kind."""
    for m in module.modules():
        if isinstance(m, nn.Linear | nn.Conv2d):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class StageInput(nn.Module):
    """The map a head reads: stage ``stage``'s map, plus every later stage's through a 1x1 conv and
    nearest upsampling (a top-down path, as in FPN), then LayerNorm over channels.

    With ``stage`` the last stage it is that map unchanged (no parameters), which keeps the seed's
    pool head and the baseline's flatten head exactly as they were.

    Args:
        shapes: (channels, side) of every stage's map, first stage first.
        stage: Index into ``shapes`` (negative counts from the last).
    """

    def __init__(self, shapes: tuple[tuple[int, int], ...] | list[tuple[int, int]], stage: int) -> None:
        super().__init__()
        n = len(shapes)
        self.stage = stage % n
        channels, side = shapes[self.stage]
        later = shapes[self.stage + 1 :]
        self.lateral = nn.ModuleList([nn.Conv2d(c, channels, 1) for c, _ in later])
        self.factors = [side // s for _, s in later]
        self.norm = nn.LayerNorm(channels) if later else None

    def forward(self, maps: list[Tensor]) -> Tensor:
        x = maps[self.stage]
        for i, conv in enumerate(self.lateral):
            f = self.factors[i]
            y = conv(maps[self.stage + 1 + i])
            x = x + (y.repeat_interleave(f, dim=2).repeat_interleave(f, dim=3) if f > 1 else y)
        if self.norm is not None:
            x = self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        return x


def _mlp(width: int, hidden: tuple[int, ...], dropout: float, out: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for h in hidden:
        layers += [nn.Linear(width, h), nn.GELU(), nn.Dropout(dropout)]
        width = h
    layers.append(nn.Linear(width, out))
    return nn.Sequential(*layers)


def _convs(width: int, hidden: tuple[int, ...], dropout: float, out: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for h in hidden:
        layers += [nn.Conv2d(width, h, 1), nn.GELU(), nn.Dropout(dropout)]
        width = h
    layers.append(nn.Conv2d(width, out, 1))
    return nn.Sequential(*layers)


class _VectorHead(nn.Module):
    """Feature vector -> MLP -> K x 2; the last bias starts at 0.5 so an untrained model predicts the centre."""

    def __init__(self, cfg: HeadConfig, shapes: tuple[tuple[int, int], ...], num_keypoints: int, width: int):
        super().__init__()
        self.num_keypoints = num_keypoints
        self.input = StageInput(shapes, cfg.stage)
        self.mlp = _mlp(width, cfg.hidden, cfg.dropout, num_keypoints * 2)
        _init_(self.mlp)
        nn.init.constant_(self.mlp[-1].bias, 0.5)  # patch centre


class PoolHead(_VectorHead):
    """Global average pool -> MLP (the seed's FocalNet head; keeps almost no absolute position).

    Args:
        cfg: Head config (``hidden``, ``dropout``, ``stage``).
        shapes: (channels, side) of every backbone stage.
        num_keypoints: Joints K.
    """

    def __init__(self, cfg: HeadConfig, shapes: tuple[tuple[int, int], ...], num_keypoints: int) -> None:
        super().__init__(cfg, shapes, num_keypoints, shapes[cfg.stage][0])

    def forward(self, maps: list[Tensor]) -> Tensor:
        return self.mlp(self.input(maps).mean((2, 3))).view(-1, self.num_keypoints, 2)


class FlattenHead(_VectorHead):
    """The map flattened (channels, rows, columns) -> MLP (the team's baseline head).

    Args:
        cfg: Head config (``hidden``, ``dropout``, ``stage``).
        shapes: (channels, side) of every backbone stage.
        num_keypoints: Joints K.
    """

    def __init__(self, cfg: HeadConfig, shapes: tuple[tuple[int, int], ...], num_keypoints: int) -> None:
        c, side = shapes[cfg.stage]
        super().__init__(cfg, shapes, num_keypoints, c * side * side)

    def forward(self, maps: list[Tensor]) -> Tensor:
        return self.mlp(self.input(maps).flatten(1)).view(-1, self.num_keypoints, 2)


class _SoftmaxHead(nn.Module):
    """Shared parts of the heatmap and SimCC heads: stage input, 1x1 convs to K maps, the temperature."""

    def __init__(self, cfg: HeadConfig, shapes: tuple[tuple[int, int], ...], num_keypoints: int) -> None:
        super().__init__()
        self.num_keypoints = num_keypoints
        self.input = StageInput(shapes, cfg.stage)
        self.convs = _convs(shapes[cfg.stage][0], cfg.hidden, cfg.dropout, num_keypoints)
        log_beta = torch.tensor(math.log(cfg.beta))
        if cfg.learn_beta:
            self.log_beta = nn.Parameter(log_beta)
        else:
            self.register_buffer("log_beta", log_beta, persistent=False)

    def logits(self, maps: list[Tensor]) -> Tensor:
        """(B, K, h, w) joint maps."""
        return self.convs(self.input(maps))


class HeatmapHead(_SoftmaxHead):
    """K heatmaps -> softmax over the map -> expected cell centre (integral regression / soft-argmax).

    The output is a convex combination of cell centres, so it stays within half a cell of the patch edge.

    Args:
        cfg: Head config (``hidden``, ``dropout``, ``stage``, ``beta``, ``learn_beta``).
        shapes: (channels, side) of every backbone stage.
        num_keypoints: Joints K.
        img_size: Patch side in pixels (sets the cell centres).
    """

    def __init__(
        self, cfg: HeadConfig, shapes: tuple[tuple[int, int], ...], num_keypoints: int, img_size: int
    ) -> None:
        super().__init__(cfg, shapes, num_keypoints)
        self.side = shapes[cfg.stage][1]
        self.register_buffer("centres", cell_centres(self.side, img_size), persistent=False)
        _init_(self.convs)

    def decode(self, logits: Tensor) -> Tensor:
        """Soft-argmax of (B, K, h, w) logits (already scaled) -> (B, K, 2) expected (x, y)."""
        p = F.softmax(logits.flatten(2), dim=-1).unflatten(-1, (self.side, self.side))
        x = (p.sum(2) * self.centres).sum(-1)  # marginal over rows -> columns
        y = (p.sum(3) * self.centres).sum(-1)
        return torch.stack([x, y], dim=-1)

    def forward(self, maps: list[Tensor]) -> Tensor:
        return self.decode(self.logits(maps) * self.log_beta.exp())


class SimCCHead(_SoftmaxHead):
    """SimCC: K maps, each flattened -> per-axis logits over ``split_ratio`` bins per pixel -> softmax ->
    expected bin centre. The two linears are shared by all joints (as in the paper).

    Args:
        cfg: Head config (``hidden``, ``dropout``, ``stage``, ``beta``, ``learn_beta``, ``split_ratio``).
        shapes: (channels, side) of every backbone stage.
        num_keypoints: Joints K.
        img_size: Patch side in pixels (sets the bins).
    """

    def __init__(
        self, cfg: HeadConfig, shapes: tuple[tuple[int, int], ...], num_keypoints: int, img_size: int
    ) -> None:
        super().__init__(cfg, shapes, num_keypoints)
        side = shapes[cfg.stage][1]
        bins = max(1, round(img_size * cfg.split_ratio))
        self.fc_x = nn.Linear(side * side, bins)
        self.fc_y = nn.Linear(side * side, bins)
        self.register_buffer("centres", cell_centres(bins, img_size), persistent=False)
        # The 1x1 convs keep PyTorch's default init (not the 0.02 of the other heads): with the geometric
        # linears below, a d32 1-1-3-1 FocalNet reading stage 1 reached val PCK@0.05 0.390/0.481/0.469
        # (seeds 0/1/2, synthetic:medium, 2000 patches, 500 steps) against 0.322/0.400/0.364 with 0.02.
        # So an untrained SimCC head starts spread around the patch, not on its centre.
        self._init_geometric(side, bins)

    @torch.no_grad()
    def _init_geometric(self, side: int, bins: int) -> None:
        """Start the per-axis linears as the map's marginals: bin b's x-logit is the sum of the column that
        contains it (its y-logit, of the row), so SimCC starts as a separable soft-argmax and learns
        sub-cell placement from there.

        Measured (issue 9; synthetic:medium, 2000 patches, seed 0, val PCK@0.05 at 100/250/500 steps, d32
        1-1-3-1 p4 FocalNet reading stage 1): random linears 0.186/0.194/0.189 (never left the plateau),
        column means 0.195/0.238/0.325, column sums 0.214/0.329/0.390 (the baseline reading block 1:
        means 0.197/0.194/0.194, sums 0.196/0.201/0.260). A mean divides a peaked column by ``side`` and
        leaves the softmax nearly uniform, where an expectation's gradient is weakest."""
        cell_of_bin = torch.div(torch.arange(bins) * side, bins, rounding_mode="floor")  # (bins,)
        rows, cols = torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")
        self.fc_x.weight.copy_((cell_of_bin[:, None] == cols.flatten()[None]).float())
        self.fc_y.weight.copy_((cell_of_bin[:, None] == rows.flatten()[None]).float())
        nn.init.zeros_(self.fc_x.bias)
        nn.init.zeros_(self.fc_y.bias)

    def decode(self, logits_x: Tensor, logits_y: Tensor) -> Tensor:
        """Expected bin centres of (B, K, bins) per-axis logits (already scaled) -> (B, K, 2)."""
        x = (F.softmax(logits_x, dim=-1) * self.centres).sum(-1)
        y = (F.softmax(logits_y, dim=-1) * self.centres).sum(-1)
        return torch.stack([x, y], dim=-1)

    def forward(self, maps: list[Tensor]) -> Tensor:
        v = self.logits(maps).flatten(2)  # (B, K, h*w)
        beta = self.log_beta.exp()
        return self.decode(self.fc_x(v) * beta, self.fc_y(v) * beta)


def build_head(
    cfg: HeadConfig, *, shapes: tuple[tuple[int, int], ...], num_keypoints: int, img_size: int
) -> nn.Module:
    """The head ``cfg.kind`` describes (``kind`` must be resolved, see ``ModelConfig``).

    Args:
        cfg: Head config.
        shapes: (channels, side) of every backbone stage, first stage first.
        num_keypoints: Joints K.
        img_size: Patch side in pixels.
    """
    if cfg.kind == "pool":
        return PoolHead(cfg, shapes, num_keypoints)
    if cfg.kind == "flatten":
        return FlattenHead(cfg, shapes, num_keypoints)
    if cfg.kind == "heatmap":
        return HeatmapHead(cfg, shapes, num_keypoints, img_size)
    if cfg.kind == "simcc":
        return SimCCHead(cfg, shapes, num_keypoints, img_size)
    raise ValueError(f"kind: must be resolved to one of pool, flatten, heatmap, simcc, got {cfg.kind!r}")
