"""bench/bench_timm.py: timm stays outside the project, and its key mapping covers our FocalNet.

timm itself is not needed here (nor installed by these tests).
"""

from __future__ import annotations

import importlib.util
import re
import tomllib
from pathlib import Path

import pytest

from focalnet import FocalNet, FocalNetConfig

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_timm", ROOT / "bench" / "bench_timm.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # defines helpers only; timm is imported by main() alone
    return module


def test_timm_is_not_a_project_dependency():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    deps = list(project["dependencies"]) + [
        d for ds in project.get("optional-dependencies", {}).values() for d in ds
    ]
    assert not [d for d in deps if re.match(r"(timm|torchvision)\b", d)]


def test_library_code_never_imports_timm():
    pattern = re.compile(r"^\s*(import|from)\s+(timm|torchvision)\b", re.MULTILINE)
    offenders = [
        str(path.relative_to(ROOT))
        for folder in ("focalnet", "search")
        for path in (ROOT / folder).rglob("*.py")
        if pattern.search(path.read_text())
    ]
    assert offenders == []


def _timm_names(cfg: FocalNetConfig) -> dict[str, tuple[int, ...]]:
    """Parameter names and shapes of timm 1.0's FocalNet (num_classes=0) for ``cfg``, written out."""
    names: dict[str, tuple[int, ...]] = {}
    dims = cfg.stage_dims
    names["stem.proj.weight"] = (dims[0], cfg.in_chans, cfg.patch_size, cfg.patch_size)
    names["stem.proj.bias"] = (dims[0],)
    names["stem.norm.weight"] = names["stem.norm.bias"] = (dims[0],)
    for i, (C, depth) in enumerate(zip(dims, cfg.depths, strict=True)):
        if i:
            names[f"layers.{i}.downsample.proj.weight"] = (C, dims[i - 1], 2, 2)
            names[f"layers.{i}.downsample.proj.bias"] = (C,)
            names[f"layers.{i}.downsample.norm.weight"] = names[f"layers.{i}.downsample.norm.bias"] = (C,)
        L = cfg.stage_focal_levels[i]
        for j in range(depth):
            b = f"layers.{i}.blocks.{j}."
            for n in ("norm1", "norm2"):
                names[b + n + ".weight"] = names[b + n + ".bias"] = (C,)
            names[b + "modulation.f.weight"] = (2 * C + L + 1, C, 1, 1)
            names[b + "modulation.f.bias"] = (2 * C + L + 1,)
            for n in ("h", "proj"):
                names[b + f"modulation.{n}.weight"] = (C, C, 1, 1)
                names[b + f"modulation.{n}.bias"] = (C,)
            for k, ks in enumerate(cfg.kernel_sizes(i)):
                names[b + f"modulation.focal_layers.{k}.0.weight"] = (C, 1, ks, ks)
            hidden = int(C * cfg.mlp_ratio)
            names[b + "mlp.fc1.weight"], names[b + "mlp.fc1.bias"] = (hidden, C, 1, 1), (hidden,)
            names[b + "mlp.fc2.weight"], names[b + "mlp.fc2.bias"] = (C, hidden, 1, 1), (C,)
    names["norm.weight"] = names["norm.bias"] = (dims[-1],)
    return names


def test_timm_state_dict_maps_onto_every_project_parameter(bench):
    import torch

    cfg = FocalNetConfig(embed_dim=8, depths=(1, 2, 1))
    model = FocalNet(cfg)
    timm_state = {k: torch.randn(shape) for k, shape in _timm_names(cfg).items()}
    state = bench.timm_to_project(timm_state, model)
    model.load_state_dict(state, strict=True)
    for key, value in timm_state.items():
        assert torch.equal(state[bench.timm_key_to_project(key)].flatten(), value.flatten())


def test_timm_key_renames(bench):
    assert bench.timm_key_to_project("head.fc.weight") is None
    assert bench.timm_key_to_project("stem.proj.weight") == "patch_embed.proj.weight"
    assert bench.timm_key_to_project("layers.2.downsample.norm.bias") == "layers.1.downsample.norm.bias"
    assert bench.timm_key_to_project("layers.0.blocks.1.ls2.gamma") == "layers.0.blocks.1.gamma_2"
    assert (
        bench.timm_key_to_project("layers.0.blocks.1.norm1_post.weight") == "layers.0.blocks.1.norm1.weight"
    )
    assert bench.timm_key_to_project("layers.3.blocks.0.modulation.norm.weight") == (
        "layers.3.blocks.0.modulation.ln.weight"
    )
