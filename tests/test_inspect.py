"""Modulator maps: `search.tools.modulators.modulator_figure` on a tiny model, and `python -m search inspect` end to end."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from harness_utils import ROOT, cli, mlflow_runs, quick_spec, write_spec
from PIL import Image

from focalnet import build_model
from search.tools.modulators import modulator_figure, panel_titles

TINY = {
    "backbone": "focalnet",
    "num_keypoints": 4,
    "focalnet": {"img_size": 32, "embed_dim": 8, "depths": [1, 1], "patch_size": 8, "focal_levels": 2},
    "head_hidden": [16],
}


def _patches(n: int = 3, size: int = 32, k: int = 4) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (n, 3, size, size), dtype=np.uint8)
    kp = rng.uniform(2, size - 3, (n, k, 2)).astype(np.float32)
    vis = np.tile(np.array([2, 1, 2, 0], np.uint8), (n, 1))
    return imgs, kp, vis


def test_panel_titles() -> None:
    titles = panel_titles(TINY)
    assert titles == [
        "input",
        "s1 gate l1 (k=3)",
        "s1 gate l2 (k=5)",
        "s1 gate global",
        "s1 |modulator|",
        "s2 gate l1 (k=3)",
        "s2 gate l2 (k=5)",
        "s2 gate global",
        "s2 |modulator|",
    ]
    assert len(titles) == 1 + 2 * (2 + 1 + 1)
    with pytest.raises(ValueError, match="backbone"):
        panel_titles({"backbone": "baseline"})


def test_modulator_figure_writes_png_and_stores_no_state(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build_model(TINY)
    model.train()  # the figure must use eval mode internally and restore the mode
    imgs, kp, vis = _patches()
    x = torch.as_tensor(imgs).float() / 255
    model.eval()
    with torch.no_grad():
        before_out = model(x).clone()
    model.train()
    before_sd = {k: v.clone() for k, v in model.state_dict().items()}
    before_keys = set(model.state_dict()) | {n for n, _ in model.named_buffers()}

    path = modulator_figure(model, imgs, kp, vis, [(0, 1), (1, 2), (2, 3)], tmp_path / "sub" / "maps.png")

    assert path == tmp_path / "sub" / "maps.png" and path.exists()
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        w, h = im.size
        assert im.format == "PNG" and w > h > 0  # 9 columns, 3 rows
    assert model.training  # mode restored
    after_sd = model.state_dict()
    assert set(after_sd) | {n for n, _ in model.named_buffers()} == before_keys  # no new buffers/attributes
    for k, v in before_sd.items():
        assert torch.equal(after_sd[k], v), k
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), before_out)
    assert not any(
        isinstance(v, torch.Tensor) for m in model.modules() for v in vars(m).values()
    )  # nothing cached

    with pytest.raises(ValueError, match="FocalNet"):
        modulator_figure(
            build_model({"backbone": "baseline", "baseline": {"img_size": 32}, "num_keypoints": 4}),
            imgs,
            kp,
            vis,
            [],
            tmp_path / "b.png",
        )


@pytest.mark.parametrize("coord_channels", [False, True])
def test_maps_see_the_normalised_input(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, coord_channels
) -> None:
    """modulation_maps gets exactly what KeypointModel.forward passes to the backbone."""
    model = build_model({**TINY, "coord_channels": coord_channels}).eval()
    imgs, kp, vis = _patches(n=2)
    seen: dict[str, torch.Tensor] = {}
    fwd, maps = type(model.backbone).forward_stages, type(model.backbone).modulation_maps
    monkeypatch.setattr(
        type(model.backbone),
        "forward_stages",
        lambda self, x: (seen.__setitem__("fwd", x.clone()), fwd(self, x))[1],
    )
    monkeypatch.setattr(
        type(model.backbone),
        "modulation_maps",
        lambda self, x: (seen.__setitem__("maps", x.clone()), maps(self, x))[1],
    )
    with torch.no_grad():
        model(torch.as_tensor(imgs).float() / 255)
    modulator_figure(model, imgs, kp, vis, [], tmp_path / "m.png", block=0)
    assert torch.equal(seen["fwd"], seen["maps"]) and seen["fwd"].shape[1] == 3 + 2 * coord_channels


@pytest.mark.slow
def test_inspect_cli_end_to_end(tmp_path: Path) -> None:
    env = {"FOCALNET_SEARCH_CACHE": str(tmp_path / "cache")}
    shutil.copytree(ROOT / "studies", tmp_path / "studies")
    spec = quick_spec(
        study={"n_trials": 2, "baseline": True, "name": "inspect-quick"}, early_stopping={"enabled": False}
    )
    spec["study"].pop("timeout_min", None)
    r = cli(
        ["run", str(write_spec(tmp_path / "inspect-quick.toml", spec)), "--no-progress"], tmp_path, env=env
    )
    assert r.returncode == 0, r.stderr[-3000:]

    r = cli(["inspect", "inspect-quick", "--trial", "1", "--n", "3"], tmp_path, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    png = tmp_path / "exports" / "inspect-quick" / "trial-1" / "modulator_maps.png"
    assert png.exists() and str(png.relative_to(tmp_path)) in r.stdout
    with Image.open(png) as im:
        assert im.format == "PNG"
    run = next(x for x in mlflow_runs(tmp_path, "inspect-quick") if x.data.tags.get("fs.trial_number") == "1")
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    assert [a.path for a in client.list_artifacts(run.info.run_id, "inspect")] == [
        "inspect/modulator_maps.png"
    ]

    # second time: the weights cached by the first call are loaded (no retraining), same picture
    r = cli(
        [
            "inspect",
            "inspect-quick",
            "--trial",
            "1",
            "--n",
            "3",
            "--out",
            "again.png",
            "--tracking-uri",
            "none",
        ],
        tmp_path,
        env=env,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert "loaded trial 1's weights" in r.stdout
    with Image.open(png) as a, Image.open(tmp_path / "again.png") as b:
        assert np.array_equal(np.asarray(a), np.asarray(b))

    r = cli(["inspect", "inspect-quick", "--trial", "0"], tmp_path, env=env)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "--trial" in lines[0] and "baseline" in lines[0], r.stderr
    r = cli(["inspect", "inspect-quick", "--trial", "7"], tmp_path, env=env)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "--trial" in r.stderr
