"""FocalNet patch feature extractor, the conv baseline and the keypoint regression model.

Pure PyTorch: nothing here imports optuna or mlflow.
"""

from .baseline import BaselinePatchExtractor
from .config import BaselineConfig, FocalNetConfig, HeadConfig, ModelConfig, max_stages
from .cost import count_flops, count_params
from .describe import describe
from .export import export_onnx, export_program, export_torchscript, load_program
from .heads import build_head
from .keypoint import KeypointModel, build_model
from .model import FocalNet
from .official import load_official_checkpoint, load_official_state_dict

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
