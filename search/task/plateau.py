"""The constant-predictor plateau: the level a model reaches without looking at the image.

A keypoint regressor that has not learned to use the image settles on each joint's mean position (the
minimiser of a coordinate loss over a fixed output). That *constant predictor* scores well above zero
(≈ 0.19 PCK@0.05 on synthetic:medium), so a run's accuracy means nothing until it is clearly above it.

- :func:`constant_positions` — each joint's mean training position over labelled joints (visibility > 0);
  a joint never labelled in training sits at the patch centre.
- :func:`constant_metrics` — that predictor's val and test metrics (``search.task.metrics``).
- :func:`left_plateau_step` — the first evaluation step at which a run's val accuracy is at least
  ``constant + PLATEAU_MARGIN``; ``None`` if it never was.

Why ``PLATEAU_MARGIN = 0.05`` (absolute, on the study's accuracy metric): runs stuck on the plateau wander
around it by up to ≈ 0.03 (0.183–0.223 against a constant of ≈ 0.19 in issue 9's table, from small
systematic offsets of the mean), and the standard error of a PCK over a 1000-patch val split is ≈ 0.013
(joints of one patch are correlated, so patches, not joints, are the sample). 0.05 is above the wander
and about four standard errors, yet far below what a run that uses the image reaches (0.4–0.7 at 1000
steps), so it separates the two regimes without waiting for a run to be good.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from search.task.metrics import keypoint_metrics

__all__ = ["PLATEAU_MARGIN", "constant_metrics", "constant_positions", "left_plateau_step", "plateau_label"]

PLATEAU_MARGIN = 0.05


def constant_positions(split: Any) -> np.ndarray:
    """(K, 2) float64 mean pixel position of each joint over the split's labelled joints.

    Args:
        split: a ``search.task.data.Split`` (keypoints (N, K, 2) pixels, visibility (N, K)).
    """
    kp = np.asarray(split.keypoints, dtype=np.float64)
    lab = (np.asarray(split.visibility) > 0)[..., None]
    n = lab.sum(0)
    centre = (np.asarray(split.images).shape[-1] - 1) / 2.0  # pixel centres at integers
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(lab, kp, 0.0).sum(0) / n
    return np.where(n > 0, mean, centre)


def constant_metrics(data: Any) -> dict[str, Any]:
    """Val and test metrics of the constant predictor fitted on ``data.train``.

    Args:
        data: a ``KeypointData``.

    Returns:
        ``{"val": {metric: value}, "test": {...}, "positions": [[x, y], ...], "margin": PLATEAU_MARGIN}``
        (plain JSON types, ready to store as a study user attr).
    """
    pos = constant_positions(data.train)
    out: dict[str, Any] = {"positions": pos.round(4).tolist(), "margin": PLATEAU_MARGIN}
    for name in ("val", "test"):
        split = getattr(data, name)
        pred = np.broadcast_to(pos, np.asarray(split.keypoints).shape)
        out[name] = keypoint_metrics(pred, split.keypoints, split.visibility, int(data.img_size))
    return out


def left_plateau_step(
    curve: Iterable[Sequence[float]], constant: float, *, margin: float = PLATEAU_MARGIN
) -> int | None:
    """First step whose accuracy is >= ``constant + margin``, or ``None``.

    Args:
        curve: ``(step, accuracy)`` pairs in any order (a trial's ``curve`` user attr).
        constant: the constant predictor's value of the same metric on the same split.
        margin: how far above the constant counts as having left the plateau.
    """
    for step, acc in sorted((int(s), float(a)) for s, a in curve):
        if acc >= constant + margin:  # NaN compares False: a diverged evaluation never counts
            return step
    return None


def plateau_label(step: int | None) -> str:
    """``"left@<step>"`` or ``"never"`` (the MLflow tag ``fs.plateau``)."""
    return "never" if step is None else f"left@{int(step)}"
