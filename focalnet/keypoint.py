"""Keypoint regression model: optional coordinate channels, a backbone, and a head giving (B, K, 2)."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import torch
from torch import Tensor, nn

from .baseline import BaselinePatchExtractor
from .config import ModelConfig
from .heads import build_head
from .model import FocalNet

__all__ = ["KeypointModel", "build_model", "coordinate_channels"]

# ImageNet statistics: official FocalNet checkpoints were trained on inputs normalised with them.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# State-dict keys of the MLP head before heads had their own modules ("head.0.weight" -> "head.mlp.0.weight").
_LEGACY_HEAD_KEY = re.compile(r"^head\.(\d+)\.")


def coordinate_channels(img_size: int) -> Tensor:
    """(1, 2, img_size, img_size) x and y channels running from -1 (first pixel) to 1 (last pixel)."""
    ramp = torch.linspace(-1.0, 1.0, img_size)
    return torch.stack([ramp.view(1, -1).expand(img_size, -1), ramp.view(-1, 1).expand(-1, img_size)])[None]


class KeypointModel(nn.Module):
    """Images -> normalise -> (coordinate channels) -> backbone stage maps -> head -> joint coordinates.

    Input: float images (B, C, H, W) with values in [0, 1]; they are normalised with the ImageNet
    mean/std (for 3 channels; otherwise 0.5/0.5) by fixed, non-persistent buffers. Output:
    (B, K, 2) ``(x, y)`` = pixel / img_size (pixel centres at integers), unconstrained for the MLP
    heads, within the patch for the heatmap and SimCC heads. An untrained model predicts (about)
    the patch centre.

    Args:
        backbone: Module with ``forward_stages(images) -> list of (B, C_i, h_i, w_i) maps``.
        head: Module mapping that list to (B, K, 2); see :mod:`focalnet.heads`.
        num_keypoints: Joints K.
        in_chans: Image channels (before any coordinate channels).
        img_size: Image side (sizes the coordinate channels).
        coord_channels: Append x/y coordinate channels to the normalised image (the backbone must then
            take ``in_chans + 2`` channels).
    """

    def __init__(
        self,
        *,
        backbone: nn.Module,
        head: nn.Module,
        num_keypoints: int,
        in_chans: int = 3,
        img_size: int = 64,
        coord_channels: bool = False,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.num_keypoints = num_keypoints
        self.coord_channels = coord_channels
        mean, std = (IMAGENET_MEAN, IMAGENET_STD) if in_chans == 3 else ((0.5,) * in_chans, (0.5,) * in_chans)
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("coords", coordinate_channels(img_size), persistent=False)
        self._register_load_state_dict_pre_hook(self._legacy_keys)

    @staticmethod
    def _legacy_keys(state_dict: dict[str, Tensor], prefix: str, *args: Any) -> None:
        """Read weights saved when the MLP head was ``self.head`` itself (``head.0.weight``)."""
        for key in [k for k in state_dict if k.startswith(prefix)]:
            m = _LEGACY_HEAD_KEY.match(key[len(prefix) :])
            if m:
                state_dict[prefix + "head.mlp." + key[len(prefix) + 5 :]] = state_dict.pop(key)

    def backbone_input(self, x: Tensor) -> Tensor:
        """What the backbone sees: the normalised images, plus the coordinate channels if any."""
        x = (x - self.mean) / self.std
        if self.coord_channels:
            x = torch.cat([x, self.coords.expand(x.shape[0], -1, -1, -1)], dim=1)
        return x

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.backbone.forward_stages(self.backbone_input(x)))


def build_model(config: ModelConfig | dict[str, Any]) -> KeypointModel:
    """Build the keypoint model described by ``config`` (a :class:`ModelConfig` or its dict form)."""
    if not isinstance(config, ModelConfig):
        config = ModelConfig.from_dict(config)
    extra = 2 if config.coord_channels else 0
    bcfg = config.backbone_config
    if extra:
        bcfg = dataclasses.replace(bcfg, in_chans=bcfg.in_chans + extra)
    backbone: nn.Module = FocalNet(bcfg) if config.backbone == "focalnet" else BaselinePatchExtractor(bcfg)
    head = build_head(
        config.head, shapes=config.stage_shapes, num_keypoints=config.num_keypoints, img_size=config.img_size
    )
    return KeypointModel(
        backbone=backbone,
        head=head,
        num_keypoints=config.num_keypoints,
        in_chans=config.in_chans,
        img_size=config.img_size,
        coord_channels=config.coord_channels,
    )
