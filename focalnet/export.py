"""Export a keypoint model: ``torch.export`` programs (``.pt2``), ONNX and (deprecated) TorchScript.

* :func:`export_program` / :func:`load_program`: the default, a ``torch.export`` program with a
  dynamic batch dimension, loadable without the model's Python code.
* :func:`export_onnx`: ONNX through the dynamo exporter (needs the ``onnx`` extra: ``onnx`` and
  ``onnxscript``, imported lazily), same dynamic batch dimension.
* :func:`export_torchscript`: kept for old consumers only; TorchScript is deprecated in torch.

Every exporter works on an eval-mode copy, so the model passed in is never modified.
"""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import logging
import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn

__all__ = ["export_program", "load_program", "export_onnx", "export_torchscript"]

INPUT_NAME = "images"
OUTPUT_NAME = "keypoints"


def _eval_copy(model: nn.Module) -> nn.Module:
    return copy.deepcopy(model).eval()


def _example(model: nn.Module, *, img_size: int, in_chans: int, batch: int = 2) -> torch.Tensor:
    # batch 2, not 1: torch.export specialises sizes 0 and 1, so a batch-1 example would pin B = 1.
    param = next(model.parameters())
    return torch.rand(batch, in_chans, img_size, img_size, device=param.device)


def _dynamic_batch() -> tuple[dict[int, torch.export.Dim]]:
    # One entry per positional input of forward: dim 0 of the images is the batch.
    return ({0: torch.export.Dim("batch", min=1)},)


def _capture(model: nn.Module, *, img_size: int, in_chans: int) -> torch.export.ExportedProgram:
    model = _eval_copy(model)
    example = _example(model, img_size=img_size, in_chans=in_chans)
    return torch.export.export(model, (example,), dynamic_shapes=_dynamic_batch())


def export_program(
    model: nn.Module, path: str | os.PathLike[str], *, img_size: int = 64, in_chans: int = 3
) -> Path:
    """Capture ``model`` (eval mode) with ``torch.export`` and save the program to ``path``.

    The batch dimension is dynamic (any B >= 1); channels and spatial size are fixed. Load it
    with :func:`load_program` (or ``torch.export.load(path).module()``).

    Args:
        model: The model to export; it is not modified (a copy is put in eval mode).
        path: Output file, conventionally ``.pt2``.
        img_size: Input side length (square inputs).
        in_chans: Input channels.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    path = Path(path)
    torch.export.save(_capture(model, img_size=img_size, in_chans=in_chans), path)
    return path


def load_program(path: str | os.PathLike[str]) -> nn.Module:
    """Load a program written by :func:`export_program` as a callable module.

    The module is the eval-mode graph that was captured: it maps (B, C, H, W) images in [0, 1] to
    (B, K, 2) keypoints. It has no train/eval switch (``.eval()`` raises), and needs none.

    Args:
        path: A ``.pt2`` file.
    """
    return torch.export.load(Path(path)).module()


@contextlib.contextmanager
def _quiet_onnx_exporter() -> Iterator[None]:
    """Silence the dynamo ONNX exporter's known, harmless chatter (and nothing else)."""
    # "torchvision is not installed. Skipping torchvision::nms" etc., logged on every export.
    registration = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = registration.level
    registration.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            # torch's own deepcopy of a pytree LeafSpec during decomposition (torch 2.13).
            warnings.filterwarnings(
                "ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated", category=FutureWarning
            )
            yield
    finally:
        registration.setLevel(level)


def export_onnx(
    model: nn.Module,
    path: str | os.PathLike[str],
    *,
    img_size: int = 64,
    in_chans: int = 3,
    opset_version: int | None = None,
) -> Path:
    """Export ``model`` (eval mode) to ONNX with the dynamo exporter and check the graph.

    Input ``images`` (batch, in_chans, img_size, img_size), output ``keypoints`` (batch, K, 2);
    ``batch`` is a dynamic dimension. Weights are stored inside the file (no ``.data`` sidecar).
    Needs the ``onnx`` extra (``pip install 'focalnet-search[onnx]'``: ``onnx``, ``onnxscript``).

    Args:
        model: The model to export; it is not modified (a copy is put in eval mode).
        path: Output ``.onnx`` file.
        img_size: Input side length (square inputs).
        in_chans: Input channels.
        opset_version: ONNX opset; ``None`` for the exporter's default.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    missing = [m for m in ("onnx", "onnxscript") if importlib.util.find_spec(m) is None]
    if missing:  # optional dependencies
        raise ImportError(f"export_onnx needs {', '.join(missing)}: pip install 'focalnet-search[onnx]'")
    import onnx  # optional extra ([onnx]): checked above

    path = Path(path)
    model = _eval_copy(model)
    example = _example(model, img_size=img_size, in_chans=in_chans)
    with _quiet_onnx_exporter():
        torch.onnx.export(
            model,
            (example,),
            path,
            dynamo=True,
            verbose=False,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_shapes=_dynamic_batch(),
            opset_version=opset_version,
            external_data=False,
        )
    onnx.checker.check_model(onnx.load(os.fspath(path)))
    return path


def export_torchscript(
    model: nn.Module, path: str | os.PathLike[str], *, img_size: int = 64, in_chans: int = 3
) -> torch.jit.ScriptModule:
    """Deprecated: script ``model`` (eval mode; tracing as fallback) and save it to ``path``.

    TorchScript is deprecated in torch; use :func:`export_program` instead. This emits one
    ``DeprecationWarning`` (torch's own per-call ``torch.jit`` warnings are folded into it).

    Args:
        model: The model to export; it is not modified (a copy is put in eval mode).
        path: Output ``.pt`` file.
        img_size: Input side length, used for the tracing fallback and a smoke check.
        in_chans: Input channels.
    """
    warnings.warn(
        "export_torchscript: TorchScript is deprecated in torch; use focalnet.export_program (torch.export)",
        DeprecationWarning,
        stacklevel=2,
    )
    model = _eval_copy(model)
    example = _example(model, img_size=img_size, in_chans=in_chans, batch=1)
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=r"`torch\.jit\.\w+` is deprecated", category=DeprecationWarning
        )
        try:
            exported = torch.jit.script(model)
        except Exception:  # scripting is preferred (no shape specialisation); tracing is the fallback
            exported = torch.jit.trace(model, example)
        with torch.no_grad():
            exported(example)
        torch.jit.save(exported, os.fspath(path))
    return exported
