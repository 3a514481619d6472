"""Keypoint metrics against hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from search.task.metrics import keypoint_metrics, per_joint_pck


def _case():
    gt = np.zeros((2, 3, 2), np.float32)
    gt[0] = [[10, 10], [20, 10], [10, 30]]  # box 10 x 20
    gt[1] = [[0, 0], [40, 40], [5, 5]]  # joint 0 unlabelled -> box of joints 1, 2: 35 x 35
    # errors: 5, 0, 10 | -, 7, 20
    off = np.array([[[3, 4], [0, 0], [6, 8]], [[50, 50], [0, 7], [12, 16]]], np.float32)
    vis = np.array([[2, 1, 2], [0, 2, 2]], np.uint8)
    return gt + off, gt, vis


def test_values_by_hand():
    pred, gt, vis = _case()
    m = keypoint_metrics(pred, gt, vis, img_size=64)  # thresholds 3.2, 6.4, 12.8 px
    errs = [5, 0, 10, 7, 20]
    assert m["pck_0.05"] == pytest.approx(1 / 5)
    assert m["pck_0.1"] == pytest.approx(2 / 5)
    assert m["pck_0.2"] == pytest.approx(4 / 5)
    assert m["mpe_px"] == pytest.approx(np.mean(errs))
    nme = np.mean([5 / math.sqrt(200), 0, 10 / math.sqrt(200), 7 / 35, 20 / 35])
    assert m["nme"] == pytest.approx(nme)
    assert set(m) == {"pck_0.05", "pck_0.1", "pck_0.2", "mpe_px", "nme"}
    assert all(isinstance(v, float) for v in m.values())


def test_torch_inputs_and_threshold_inclusive():
    pred, gt, vis = _case()
    a = keypoint_metrics(torch.from_numpy(pred), torch.from_numpy(gt), torch.from_numpy(vis), 64)
    assert a == pytest.approx(keypoint_metrics(pred, gt, vis, 64))
    gt1 = np.zeros((1, 1, 2))
    assert keypoint_metrics(gt1 + [[[3.2, 0]]], gt1, np.ones((1, 1)), 64)["pck_0.05"] == 1.0


def test_per_joint_pck():
    pred, gt, vis = _case()
    pj = per_joint_pck(pred, gt, vis, 64, alpha=0.2)
    np.testing.assert_allclose(pj, [1.0, 1.0, 0.5])
    vis2 = vis.copy()
    vis2[:, 0] = 0
    assert np.isnan(per_joint_pck(pred, gt, vis2, 64)[0])


def test_no_labelled_joints_gives_nan_and_single_joint_nme():
    pred, gt, _ = _case()
    m = keypoint_metrics(pred, gt, np.zeros((2, 3)), 64)
    assert all(math.isnan(v) for v in m.values())
    one = np.array([[2, 0, 0], [0, 0, 0]])
    m1 = keypoint_metrics(pred, gt, one, 64)
    assert m1["mpe_px"] == pytest.approx(5.0) and math.isnan(m1["nme"])


def test_shape_errors():
    with pytest.raises(ValueError, match="expected pred/gt"):
        keypoint_metrics(np.zeros((2, 3, 2)), np.zeros((2, 4, 2)), np.zeros((2, 3)), 64)
