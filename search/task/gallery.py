"""Prediction gallery: a grid of patches with ground-truth and predicted joints and skeleton edges (PNG).

Ground truth is green (filled = visible, hollow = occluded; joints outside the patch are not drawn),
predictions are red; edges are drawn where both end joints are labelled. Pixel centres are at integer
coordinates, as everywhere in search/. Uses a bare matplotlib Figure with the Agg canvas: no pyplot state.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from search.task.train import predict

__all__ = ["prediction_gallery", "model_gallery"]


def _np(x: Any) -> np.ndarray:
    return x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)


def prediction_gallery(
    images: Any,
    gt_px: Any,
    pred_px: Any,
    visibility: Any,
    edges: Sequence[tuple[int, int]],
    path: str | Path,
    n: int = 16,
) -> Path:
    """Draw the first n patches (images uint8 (N,3,H,W) or (N,H,W,3); keypoints (N,K,2) px) to a PNG."""
    imgs, gt, pred, vis = _np(images), _np(gt_px), _np(pred_px), _np(visibility)
    if imgs.ndim == 4 and imgs.shape[1] == 3 and imgs.shape[-1] != 3:
        imgs = imgs.transpose(0, 2, 3, 1)
    n = max(1, min(n, len(imgs)))
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(2 * cols, 2 * rows), dpi=80)
    FigureCanvasAgg(fig)
    for i in range(rows * cols):
        ax = fig.add_subplot(rows, cols, i + 1)
        ax.set_axis_off()
        if i >= min(n, len(imgs)):
            continue
        h, w = imgs[i].shape[:2]
        ax.imshow(imgs[i], interpolation="nearest")  # pixel centres at integers, extent [-0.5, w-0.5]
        lab = vis[i] > 0
        for a, b in edges:
            if lab[a] and lab[b]:
                ax.plot(*gt[i, [a, b]].T, color="lime", lw=1, alpha=0.8)
                ax.plot(*pred[i, [a, b]].T, color="red", lw=1, alpha=0.8)
        v2, v1 = vis[i] == 2, vis[i] == 1
        ax.scatter(*gt[i, v2].T, s=12, c="lime", edgecolors="black", linewidths=0.4, zorder=3)
        ax.scatter(*gt[i, v1].T, s=12, facecolors="none", edgecolors="lime", linewidths=1.0, zorder=3)
        ax.scatter(*pred[i, lab].T, s=10, c="red", marker="x", linewidths=1.0, zorder=4)
        ax.set_xlim(-0.5, w - 0.5)
        ax.set_ylim(h - 0.5, -0.5)
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=0.99, wspace=0.04, hspace=0.04)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path


def model_gallery(model: Any, data: Any, path: str | Path, *, n: int = 16) -> Path:
    """Gallery of a trained keypoint model on the first ``n`` test patches of ``data`` (a KeypointData)."""
    n = min(n, len(data.test.images))
    pred = predict(model, data.test.images[:n])
    return prediction_gallery(
        data.test.images[:n], data.test.keypoints[:n], pred, data.test.visibility[:n], data.edges, path, n=n
    )
