"""Keypoint metrics, masked by visibility: only labelled joints (visibility > 0) count.

- `pck_<a>` (a in 0.05, 0.1, 0.2): fraction of labelled joints whose error is <= a * img_size pixels,
  i.e. PCK normalised by the **patch size** (at 64 px: 3.2, 6.4 and 12.8 px).
- `mpe_px`: mean Euclidean error in pixels.
- `nme`: mean of error / sqrt(area of the box around that sample's labelled ground-truth joints), box sides
  floored at 1 px; samples with fewer than 2 labelled joints are left out of it.
With no labelled joint at all, every value is nan (a float, so logging and comparisons still work).
Inputs may be numpy arrays or torch tensors: pred/gt (N,K,2) pixels, visibility (N,K).
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["PCK_ALPHAS", "keypoint_metrics", "per_joint_pck"]

PCK_ALPHAS = (0.05, 0.1, 0.2)


def _np(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensor
        x = x.detach().float().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def _errors(pred_px: Any, gt_px: Any, visibility: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    pred, gt, vis = _np(pred_px), _np(gt_px), _np(visibility)
    if pred.shape != gt.shape or pred.ndim != 3 or pred.shape[-1] != 2 or vis.shape != gt.shape[:2]:
        raise ValueError(
            f"expected pred/gt (N,K,2) and visibility (N,K); got {pred.shape}, {gt.shape}, {vis.shape}"
        )
    return np.sqrt(((pred - gt) ** 2).sum(-1)), vis > 0, gt


def keypoint_metrics(pred_px: Any, gt_px: Any, visibility: Any, img_size: int) -> dict[str, float]:
    """PCK@{0.05,0.1,0.2} (normalised by img_size), mean pixel error and NME; see the module docstring."""
    err, lab, gt = _errors(pred_px, gt_px, visibility)
    nan = float("nan")
    if not lab.any():
        return {**{f"pck_{a}": nan for a in PCK_ALPHAS}, "mpe_px": nan, "nme": nan}
    e = err[lab]
    out = {f"pck_{a}": float((e <= a * img_size).mean()) for a in PCK_ALPHAS}
    out["mpe_px"] = float(e.mean())
    big = np.where(lab[..., None], gt, np.nan)
    keep = lab.sum(1) >= 2
    if keep.any():
        side = np.maximum(np.nanmax(big[keep], 1) - np.nanmin(big[keep], 1), 1.0)  # (n,2)
        norm = np.sqrt(side[:, 0] * side[:, 1])
        out["nme"] = float((err[keep] / norm[:, None])[lab[keep]].mean())
    else:
        out["nme"] = nan
    return out


def per_joint_pck(
    pred_px: Any, gt_px: Any, visibility: Any, img_size: int, alpha: float = 0.05
) -> np.ndarray:
    """(K,) float64 PCK@alpha (normalised by img_size) of each joint; nan where a joint is never labelled."""
    err, lab, _ = _errors(pred_px, gt_px, visibility)
    hit = ((err <= alpha * img_size) & lab).sum(0)
    n = lab.sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, hit / np.maximum(n, 1), np.nan)
