"""torch.export (.pt2), ONNX (dynamo exporter) and TorchScript exports reproduce the eager keypoint model.

``CONFIGS`` lists one small model per backbone / code path; add an entry to cover a new model option.
"""

import pytest
import torch

from focalnet import build_model
from focalnet.export import export_onnx, export_program, export_torchscript, load_program

CONFIGS = {
    "focalnet": {"backbone": "focalnet", "num_keypoints": 4, "head_hidden": [16],
                 "focalnet": {"embed_dim": 16, "depths": [1, 1], "patch_size": 4, "contexts": "independent",
                              "use_layerscale": True, "overlapped_embed": True}},
    "focalnet_postln": {"backbone": "focalnet", "focalnet": {"embed_dim": 8, "depths": [1], "patch_size": 8,
                                                             "use_postln": True, "use_postln_in_modulation": True}},
    "baseline": {"backbone": "baseline", "num_keypoints": 4},
}  # fmt: skip
# Every backbone x head kind (tiny; heads on an earlier stage so the top-down path is exported too).
_TINY_FN = {"embed_dim": 8, "depths": [1, 1, 1], "patch_size": 4, "mlp_ratio": 1.0}
for _kind in ("pool", "flatten", "heatmap", "simcc"):
    CONFIGS[f"focalnet_{_kind}"] = {"backbone": "focalnet", "num_keypoints": 3, "focalnet": _TINY_FN,
                                   "head": {"kind": _kind, "stage": 1, "hidden": [8], "learn_beta": True},
                                   "coord_channels": _kind in ("heatmap", "simcc")}  # fmt: skip
    CONFIGS[f"baseline_{_kind}"] = {"backbone": "baseline", "num_keypoints": 3, "baseline": {"channels": [4, 8, 8]},
                                   "head": {"kind": _kind, "stage": 0, "hidden": [8]},
                                   "coord_channels": _kind in ("pool", "flatten")}  # fmt: skip
BATCHES = (1, 3)  # 1: the size torch.export would specialise on; 3: not the example's batch (2)


def _model(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(CONFIGS[name])  # left in train mode: exporters must not touch it


def _eager(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(x)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_program_roundtrip(name, tmp_path):
    model = _model(name)
    path = export_program(model, tmp_path / "model.pt2", img_size=64)
    assert path == tmp_path / "model.pt2" and model.training
    loaded = load_program(path)
    for b in BATCHES:
        x = torch.rand(b, 3, 64, 64)
        out = loaded(x)
        assert out.shape == (b, model.num_keypoints, 2)
        torch.testing.assert_close(out, _eager(model, x), atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_onnx_roundtrip(name, tmp_path):
    pytest.importorskip("onnxscript")
    ort = pytest.importorskip("onnxruntime")
    model = _model(name)
    path = export_onnx(model, tmp_path / "model.onnx", img_size=64)
    assert model.training
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]  # weights inside, no .data sidecar
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (inp,), (outp,) = session.get_inputs(), session.get_outputs()
    assert (inp.name, inp.shape) == ("images", ["batch", 3, 64, 64])
    assert (outp.name, outp.shape) == ("keypoints", ["batch", model.num_keypoints, 2])
    for b in BATCHES:
        x = torch.rand(b, 3, 64, 64)
        (out,) = session.run(None, {"images": x.numpy()})
        torch.testing.assert_close(torch.from_numpy(out), _eager(model, x), atol=1e-5, rtol=0)


def test_torchscript_is_deprecated_but_works(tmp_path):
    model = _model("baseline")
    path = tmp_path / "model.pt"
    with pytest.warns(DeprecationWarning, match="export_program") as record:
        export_torchscript(model, path, img_size=64)
    assert len(record) == 1  # torch.jit's own warnings are folded into ours
    with pytest.warns(DeprecationWarning, match="torch.jit.load"):
        loaded = torch.jit.load(str(path))
    x = torch.rand(3, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), _eager(model, x), atol=1e-5, rtol=0)
