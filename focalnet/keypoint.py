"""Keypoint regression model: a backbone plus dense layers predicting (B, K, 2) coordinates."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from .baseline import BaselinePatchExtractor
from .config import ModelConfig
from .model import FocalNet

__all__ = ["KeypointModel", "build_model"]

# ImageNet statistics: official FocalNet checkpoints were trained on inputs normalised with them.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class KeypointModel(nn.Module):
    """Backbone features -> MLP head -> joint coordinates normalised to the patch.

    Input: float images (B, C, H, W) with values in [0, 1]; they are normalised with the ImageNet
    mean/std (for 3 channels; otherwise 0.5/0.5) by fixed, non-persistent buffers. Output:
    (B, K, 2) ``(x, y)`` = pixel / img_size, unconstrained. The final linear's bias starts at 0.5
    so an untrained model predicts the patch centre.

    Args:
        backbone: Module mapping images to (B, backbone.num_features) features.
        num_keypoints: Joints K.
        head_hidden: Hidden widths of the head (Linear -> GELU -> Dropout each).
        head_dropout: Dropout after each hidden layer.
    """

    def __init__(
        self,
        backbone: nn.Module,
        num_keypoints: int,
        head_hidden: tuple[int, ...] = (256,),
        head_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.num_keypoints = num_keypoints
        in_chans = getattr(getattr(backbone, "config", None), "in_chans", 3)
        mean, std = (IMAGENET_MEAN, IMAGENET_STD) if in_chans == 3 else ((0.5,) * in_chans, (0.5,) * in_chans)
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)

        layers: list[nn.Module] = []
        width = backbone.num_features
        for hidden in head_hidden:
            layers += [nn.Linear(width, hidden), nn.GELU(), nn.Dropout(head_dropout)]
            width = hidden
        out = nn.Linear(width, num_keypoints * 2)
        layers.append(out)
        self.head = nn.Sequential(*layers)
        for m in self.head.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
        nn.init.constant_(out.bias, 0.5)  # patch centre

    def forward(self, x: Tensor) -> Tensor:
        feats = self.backbone((x - self.mean) / self.std)
        return self.head(feats).view(-1, self.num_keypoints, 2)


def build_model(config: ModelConfig | dict[str, Any]) -> KeypointModel:
    """Build the keypoint model described by ``config`` (a :class:`ModelConfig` or its dict form)."""
    if not isinstance(config, ModelConfig):
        config = ModelConfig.from_dict(config)
    if config.backbone == "focalnet":
        backbone: nn.Module = FocalNet(config.focalnet)
    else:
        backbone = BaselinePatchExtractor(config.baseline)
    return KeypointModel(backbone, config.num_keypoints, config.head_hidden, config.head_dropout)
