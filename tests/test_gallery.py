"""Prediction gallery writes a PNG of the expected grid."""

from __future__ import annotations

import torch
from PIL import Image

from search.task.gallery import prediction_gallery
from search.task.synthetic import HUMAN16, PRESETS, render


def test_gallery_png(tmp_path):
    img, kp, vis = render(5, PRESETS["medium"], 0)
    vis[0, :3] = 1
    out = prediction_gallery(img, kp, kp + 2.0, vis, HUMAN16.edges, tmp_path / "sub" / "g.png", n=5)
    assert out.exists()
    with Image.open(out) as im:
        assert im.format == "PNG" and im.size == (3 * 160, 2 * 160)
    # torch inputs, channels-last images, n larger than N
    prediction_gallery(torch.from_numpy(img.transpose(0, 2, 3, 1).copy()), torch.from_numpy(kp), kp, vis, (),
                       tmp_path / "t.png", n=16)  # fmt: skip
    assert (tmp_path / "t.png").stat().st_size > 1000
