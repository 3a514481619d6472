"""Parameter and FLOP counts (FLOPs: 1 multiply-accumulate = 2 FLOPs, batch 1)."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

__all__ = ["count_params", "count_flops"]


def count_params(model: nn.Module) -> int:
    """Number of (unique) parameters of ``model``, trainable or not."""
    return sum(p.numel() for p in model.parameters())


def count_flops(model: nn.Module, img_size: int, in_chans: int = 3) -> int:
    """FLOPs of one forward pass on a single ``in_chans x img_size x img_size`` image.

    Counted by ``torch.utils.flop_counter.FlopCounterMode``: convolutions and matrix products
    (2 FLOPs per MAC); element-wise ops (norms, activations, pooling) are not counted.

    Args:
        model: Any module taking (1, in_chans, img_size, img_size).
        img_size: Input side length.
        in_chans: Input channels.
    """
    was_training = model.training
    model.eval()
    try:
        param = next(model.parameters(), None)
        x = torch.zeros(1, in_chans, img_size, img_size, device=param.device if param is not None else None)
        counter = FlopCounterMode(display=False)
        with torch.no_grad(), counter:
            model(x)
        return int(counter.get_total_flops())
    finally:
        model.train(was_training)
