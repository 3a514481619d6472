"""The team's current patch feature extractor, kept as the comparison baseline."""

from __future__ import annotations

from torch import Tensor, nn

from .config import BaselineConfig

__all__ = ["BaselinePatchExtractor"]


class BaselinePatchExtractor(nn.Module):
    """Conv blocks with parameter-free 2x2 average-pool downsampling, flattened.

    Each block is conv3x3 (pad 1) -> GroupNorm(1 group) -> ReLU -> AvgPool2d(2); three blocks
    give 1/8 resolution (64 px, channels (8, 16, 32): 32 x 8 x 8 = 2048 features). GroupNorm with
    one group normalises each sample on its own, unlike BatchNorm, so batch-1 inference, small
    batches and exported models behave exactly like training-time evaluation.

    Args:
        config: Image size, input channels and per-block channels.
    """

    def __init__(self, config: BaselineConfig) -> None:
        super().__init__()
        self.config = config
        self.num_features = config.num_features
        blocks: list[nn.Module] = []
        c_in = config.in_chans
        for c_out in config.channels:
            blocks += [
                nn.Conv2d(c_in, c_out, 3, padding=1),
                nn.GroupNorm(1, c_out),
                nn.ReLU(inplace=True),
                nn.AvgPool2d(2),
            ]
            c_in = c_out
        self.blocks = nn.Sequential(*blocks)

    def forward_stages(self, x: Tensor) -> list[Tensor]:
        """Every conv block's output (B, channels[i], H / 2**(i+1), W / 2**(i+1)), first block first."""
        maps: list[Tensor] = []
        for i, m in enumerate(self.blocks):
            x = m(x)
            if i % 4 == 3:  # each block is conv, norm, relu, pool
                maps.append(x)
        return maps

    def forward_features(self, x: Tensor) -> Tensor:
        """Feature map (B, channels[-1], H/8, W/8) for three blocks."""
        return self.blocks(x)

    def forward(self, x: Tensor) -> Tensor:
        """Flattened features (B, num_features)."""
        return self.blocks(x).flatten(1)
