"""TorchScript and ONNX exports reproduce the eager keypoint model."""

import pytest
import torch

from focalnet import build_model
from focalnet.export import export_onnx, export_torchscript

CONFIGS = {
    "focalnet": {"backbone": "focalnet", "num_keypoints": 4, "head_hidden": [16],
                 "focalnet": {"embed_dim": 8, "depths": [1, 1], "contexts": "independent",
                              "use_layerscale": True, "overlapped_embed": True}},
    "focalnet_postln": {"backbone": "focalnet", "focalnet": {"embed_dim": 8, "depths": [1], "patch_size": 8,
                                                             "use_postln": True, "use_postln_in_modulation": True}},
    "baseline": {"backbone": "baseline", "num_keypoints": 4},
}  # fmt: skip


@pytest.mark.parametrize("name", list(CONFIGS))
def test_torchscript_roundtrip(name, tmp_path):
    torch.manual_seed(0)
    model = build_model(CONFIGS[name]).eval()
    path = tmp_path / "model.pt"
    export_torchscript(model, path, img_size=64)
    loaded = torch.jit.load(str(path))
    x = torch.rand(3, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), atol=1e-5, rtol=0)
    assert model.training is False


@pytest.mark.parametrize("name", list(CONFIGS))
def test_onnx_roundtrip(name, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    model = build_model(CONFIGS[name]).eval()
    path = tmp_path / "model.onnx"
    export_onnx(model, path, img_size=64)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = torch.rand(5, 3, 64, 64)  # dynamic batch axis
    (out,) = session.run(None, {"images": x.numpy()})
    with torch.no_grad():
        torch.testing.assert_close(torch.from_numpy(out), model(x), atol=1e-5, rtol=0)
