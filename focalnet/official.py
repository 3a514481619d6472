"""Load classification checkpoints of the official microsoft/FocalNet code into :class:`FocalNet`.

Our modules use the official parameter names (``patch_embed.proj``, ``layers.{i}.blocks.{j}.
modulation.f`` ...), so loading is a strict ``load_state_dict`` after unwrapping ``{"model": ...}``
and dropping the classifier head. Any other mismatch is reported key by key.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import torch
from torch import Tensor, nn

from .model import FocalNet

__all__ = ["load_official_state_dict", "load_official_checkpoint"]

_SKIPPED_PREFIXES = ("head.",)


def _backbone(model: nn.Module) -> FocalNet:
    backbone = getattr(model, "backbone", model)  # accept a KeypointModel too
    if not isinstance(backbone, FocalNet):
        raise TypeError(
            f"model: expected a FocalNet (or a model with a FocalNet .backbone), got {type(model).__name__}"
        )
    return backbone


def load_official_state_dict(model: nn.Module, state_dict: Mapping[str, object]) -> list[str]:
    """Copy official FocalNet weights into ``model`` (a FocalNet or a KeypointModel around one).

    Args:
        model: Target; its config must match the checkpoint's architecture (image size may differ).
        state_dict: The official state dict, or a checkpoint dict wrapping it under ``"model"``
            (``"state_dict"`` is accepted too); a ``module.`` prefix is stripped.

    Returns:
        The checkpoint keys that were skipped (the classifier head).

    Raises:
        ValueError: listing missing keys, unexpected keys and shape mismatches.
    """
    backbone = _backbone(model)
    for wrapper in ("model", "state_dict"):
        if wrapper in state_dict and isinstance(state_dict[wrapper], Mapping):
            state_dict = state_dict[wrapper]
            break
    source: dict[str, Tensor] = {}
    skipped = []
    for key, value in state_dict.items():
        key = key.removeprefix("module.")
        if key.startswith(_SKIPPED_PREFIXES):
            skipped.append(key)
        elif isinstance(value, Tensor):
            source[key] = value
    target = backbone.state_dict()
    problems = [f"missing: {k} {tuple(v.shape)}" for k, v in target.items() if k not in source]
    problems += [f"unexpected: {k} {tuple(v.shape)}" for k, v in source.items() if k not in target]
    problems += [
        f"shape: {k} checkpoint {tuple(v.shape)} != model {tuple(target[k].shape)}"
        for k, v in source.items()
        if k in target and v.shape != target[k].shape
    ]
    if problems:
        shown = "; ".join(problems[:20]) + (
            f"; ... ({len(problems) - 20} more)" if len(problems) > 20 else ""
        )
        raise ValueError(f"state_dict: checkpoint does not match the FocalNet config: {shown}")
    backbone.load_state_dict(source, strict=True)
    return skipped


def load_official_checkpoint(model: nn.Module, path: str | os.PathLike[str]) -> list[str]:
    """Load an official ``.pth`` checkpoint file (tensors only: ``weights_only=True``) into ``model``.

    See :func:`load_official_state_dict`.
    """
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    return load_official_state_dict(model, checkpoint)
