"""Export a keypoint model to TorchScript or ONNX (``onnx`` is an optional extra, imported lazily)."""

from __future__ import annotations

import copy
import os
import warnings

import torch
from torch import nn

__all__ = ["export_torchscript", "export_onnx"]


def _example(model: nn.Module, img_size: int, in_chans: int) -> torch.Tensor:
    param = next(model.parameters())
    return torch.rand(1, in_chans, img_size, img_size, device=param.device)


def export_torchscript(
    model: nn.Module, path: str | os.PathLike[str], img_size: int, in_chans: int = 3
) -> torch.jit.ScriptModule:
    """Script ``model`` in eval mode (falling back to tracing) and save it to ``path``.

    Args:
        model: The model to export; it is not modified (a copy is put in eval mode).
        path: Output ``.pt`` file.
        img_size: Input side length, used for the tracing fallback and a smoke check.
        in_chans: Input channels.
    """
    model = copy.deepcopy(model).eval()
    example = _example(model, img_size, in_chans)
    try:
        exported = torch.jit.script(model)
    except Exception:  # scripting is preferred (no shape specialisation); tracing is the fallback
        exported = torch.jit.trace(model, example)
    with torch.no_grad():
        exported(example)
    torch.jit.save(exported, os.fspath(path))
    return exported


def export_onnx(model: nn.Module, path: str | os.PathLike[str], img_size: int, in_chans: int = 3) -> None:
    """Export ``model`` (eval mode) to ONNX with a dynamic batch axis and check the graph.

    Input name ``images`` (B, in_chans, img_size, img_size), output ``keypoints``.
    Needs the ``onnx`` extra (``pip install focalnet-search[onnx]``).
    """
    try:
        import onnx
    except ImportError as e:  # optional dependency
        raise ImportError("export_onnx needs the onnx extra: pip install 'focalnet-search[onnx]'") from e
    model = copy.deepcopy(model).eval()
    example = _example(model, img_size, in_chans)
    # The TorchScript-based exporter needs no onnxscript (the dynamo exporter would), so its
    # deprecation and tracer warnings are expected here.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(
            model,
            (example,),
            os.fspath(path),
            input_names=["images"],
            output_names=["keypoints"],
            dynamic_axes={"images": {0: "batch"}, "keypoints": {0: "batch"}},
            opset_version=17,
            dynamo=False,
        )
    onnx.checker.check_model(onnx.load(os.fspath(path)))
