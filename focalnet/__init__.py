"""FocalNet patch feature extractor, the conv baseline and the keypoint regression model.

Pure PyTorch: nothing here imports optuna or mlflow. The configs are imported at once (they need no
torch); everything else on first use, so a program that only reads configs (the search harness's
``report``, ``list`` and spec checks) does not pay torch's import (~1.3 s).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .config import BaselineConfig, FocalNetConfig, HeadConfig, ModelConfig, max_stages

if TYPE_CHECKING:  # pragma: no cover - for type checkers; at run time :func:`__getattr__` imports them
    from .baseline import BaselinePatchExtractor
    from .cost import count_flops, count_params
    from .describe import describe
    from .export import export_onnx, export_program, export_torchscript, load_program
    from .heads import build_head
    from .keypoint import KeypointModel, build_model
    from .model import FocalNet
    from .official import load_official_checkpoint, load_official_state_dict

_LAZY = {
    "BaselinePatchExtractor": "baseline",
    "count_flops": "cost",
    "count_params": "cost",
    "describe": "describe",
    "export_onnx": "export",
    "export_program": "export",
    "export_torchscript": "export",
    "load_program": "export",
    "build_head": "heads",
    "KeypointModel": "keypoint",
    "build_model": "keypoint",
    "FocalNet": "model",
    "load_official_checkpoint": "official",
    "load_official_state_dict": "official",
}

__all__ = [
    "FocalNetConfig",
    "FocalNet",
    "BaselineConfig",
    "BaselinePatchExtractor",
    "HeadConfig",
    "ModelConfig",
    "KeypointModel",
    "build_model",
    "build_head",
    "count_params",
    "count_flops",
    "describe",
    "load_official_state_dict",
    "load_official_checkpoint",
    "max_stages",
    "export_program",
    "load_program",
    "export_onnx",
    "export_torchscript",
]


def __getattr__(name: str) -> Any:
    """Import a torch-backed name of ``__all__`` on first use (PEP 562)."""
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
