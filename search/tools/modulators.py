"""`python -m search inspect NAME --trial N`: modulator maps of a trained trial, as one PNG logged to MLflow.

For a few test patches the figure shows, per row (one patch): the input with its ground-truth joints and
skeleton, then for every stage the per-level gate maps of one block (levels 1..L and the global level,
nearest-upsampled to the patch, one diverging colour scale per stage) and the modulator magnitude
(L2 norm over channels) — the paper's visualisation of what focal modulation attends to.

The maps come from ``FocalNet.modulation_maps`` (recomputed on demand under ``torch.no_grad``; nothing is
stored in ``forward``), on the same ImageNet-normalised input (plus coordinate channels, if any) the backbone sees inside
``KeypointModel.forward``.

Search trials store only their config, so the model is retrained deterministically with the trial's seed
(as ``reproduce`` does; bit-identical on the same machine), unless ``exports/<study>/trial-<N>/model.pt``
with a matching ``config.json`` already exists (from ``reproduce`` or an earlier ``inspect``).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from focalnet import FocalNet, FocalNetConfig, ModelConfig, build_model
from search.report.records import study_records
from search.storage.connect import load_stored_study
from search.task.train import train
from search.tools.reproduce import ReproduceError, pick_trial, trial_data
from search.tracking.outbox import WAIT_AT_EXIT_S
from search.tracking.params import redact_url
from search.tracking.runs import StudyTracker
from search.tracking.store import default_tracking_uri, store_exists

__all__ = ["panel_titles", "modulator_figure", "inspect_trial", "inspect_study"]

FIGURE_NAME = "modulator_maps.png"


def _focalnet_config(model_config: Any) -> Any:
    if isinstance(model_config, FocalNetConfig):
        return model_config
    if not isinstance(model_config, ModelConfig):
        model_config = ModelConfig.from_dict(model_config)
    if model_config.backbone != "focalnet":
        raise ValueError(f"backbone: modulator maps need a focalnet backbone, got {model_config.backbone!r}")
    return model_config.focalnet


def panel_titles(model_config: Any) -> list[str]:
    """Column titles of :func:`modulator_figure` for a model config (``ModelConfig``, its dict, or ``FocalNetConfig``).

    ``["input", "s1 gate l1 (k=3)", ..., "s1 gate global", "s1 |modulator|", "s2 ...", ...]``: per stage
    L gate levels, the global gate and the modulator magnitude.
    """
    cfg = _focalnet_config(model_config)
    titles = ["input"]
    for s in range(cfg.num_stages):
        titles += [f"s{s + 1} gate l{lvl + 1} (k={k})" for lvl, k in enumerate(cfg.kernel_sizes(s))]
        titles += [f"s{s + 1} gate global", f"s{s + 1} |modulator|"]
    return titles


def _np(x: Any) -> np.ndarray:
    return x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)


def _stage_maps(model: Any, images_u8: np.ndarray, block: int | str) -> list[dict[str, Any]]:
    """Per stage: kernel sizes, gates (N, L+1, H, W) and |modulator| (N, H, W), upsampled to the patch."""
    backbone = getattr(model, "backbone", None)
    if not isinstance(backbone, FocalNet):
        raise ValueError(
            f"model: modulator maps need a KeypointModel with a FocalNet backbone, got {type(backbone or model).__name__}"
        )
    x = torch.as_tensor(images_u8).float().div(255.0)
    size = tuple(x.shape[-2:])
    was_training = model.training
    model.eval()  # dropout / drop-path off, as at test time; restored below
    try:
        with torch.no_grad():
            param = next(model.parameters())
            x = x.to(param.device)
            maps = backbone.modulation_maps(model.backbone_input(x))  # = KeypointModel.forward's input
    finally:
        model.train(was_training)
    out = []
    for st in maps:
        idx = len(st["gates"]) - 1 if block == "last" else int(block)
        g = st["gates"][idx].float()
        m = st["modulator"][idx].float().norm(dim=1, keepdim=True)
        out.append(
            {
                "kernel_sizes": list(st["kernel_sizes"]),
                "gates": F.interpolate(g, size=size, mode="nearest").cpu().numpy(),
                "modulator": F.interpolate(m, size=size, mode="nearest")[:, 0].cpu().numpy(),
                "res": tuple(g.shape[-2:]),
            }
        )
    return out


def modulator_figure(
    model: Any,
    images_u8: Any,
    keypoints_px: Any,
    visibility: Any,
    edges: Sequence[tuple[int, int]],
    path: str | Path,
    *,
    block: int | str = "last",
) -> Path:
    """Draw the modulator maps of ``model`` (a ``KeypointModel`` with a FocalNet backbone) to a PNG.

    Args:
        model: the keypoint model; its parameters and buffers are not changed (train/eval mode is restored).
        images_u8: uint8 patches (N, 3, H, W); one figure row each.
        keypoints_px: ground-truth joints (N, K, 2) in pixels; visibility (N, K) 0/1/2.
        edges: skeleton edges (pairs of joint indices).
        path: PNG to write (parent folders are created).
        block: which block of each stage to show: ``"last"`` or an index into the stage's blocks.

    Columns follow :func:`panel_titles` of the backbone config. Gates are the raw linear outputs (signed,
    colour ``RdBu_r`` symmetric around 0, one scale per stage); the modulator magnitude uses ``viridis``
    (its min..max over the drawn patches, one scale per stage). The ranges are printed under the bottom row.
    """
    imgs, kp, vis = _np(images_u8), _np(keypoints_px), _np(visibility)
    if imgs.ndim != 4 or imgs.shape[1] != 3:
        raise ValueError(f"images_u8: expected (N, 3, H, W) uint8, got shape {imgs.shape}")
    stages = _stage_maps(model, imgs, block)
    titles = panel_titles(model.backbone.config)
    n, ncols = len(imgs), len(titles)
    assert ncols == 1 + sum(len(st["kernel_sizes"]) + 2 for st in stages), (
        "panel titles do not match the maps"
    )

    fig = Figure(figsize=(1.55 * ncols, 1.65 * n + 0.45), dpi=90)
    FigureCanvasAgg(fig)
    axes = fig.subplots(n, ncols, squeeze=False)
    scales = [_colour_scales(st) for st in stages]
    for i in range(n):
        _draw_row(axes[i], imgs[i], _Joints(kp[i], vis[i], edges), stages, scales, i=i, last=i == n - 1)
    for i in range(n):
        for j in range(ncols):
            axes[i, j].set_xticks([])
            axes[i, j].set_yticks([])
            if i == 0:
                axes[i, j].set_title(titles[j], fontsize=8)
    fig.subplots_adjust(
        left=0.01,
        right=0.99,
        bottom=0.08 if n > 1 else 0.14,
        top=0.93 if n > 1 else 0.85,
        wspace=0.06,
        hspace=0.06,
    )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path


def _colour_scales(stage: dict[str, Any]) -> tuple[float, tuple[float, float]]:
    """A stage's colour scales over the drawn patches: (gate limit, symmetric; modulator (min, max))."""
    glim = float(np.abs(stage["gates"]).max()) or 1.0
    mmin, mmax = float(stage["modulator"].min()), float(stage["modulator"].max())
    return glim, (mmin, mmax if mmax > mmin else mmin + 1e-6)


@dataclass(frozen=True)
class _Joints:
    """One patch's ground truth: joints (K, 2) in pixels, visibility (K,) 0/1/2 and the skeleton edges."""

    kp: np.ndarray
    vis: np.ndarray
    edges: Sequence[tuple[int, int]]

    def draw(self, ax: Any, h: int, w: int, *, small: bool) -> None:
        """Joints (filled = visible, hollow = occluded) and, on the full-size input panel, the skeleton."""
        lab = self.vis > 0
        if not small:
            for a, b in self.edges:
                if lab[a] and lab[b]:
                    ax.plot(*self.kp[[a, b]].T, color="lime", lw=1, alpha=0.8)
        v2, v1 = self.vis == 2, self.vis == 1
        s = 5 if small else 12
        colour = "white" if small else "lime"
        ax.scatter(*self.kp[v2].T, s=s, c=colour, edgecolors="black", linewidths=0.4, zorder=3)
        ax.scatter(*self.kp[v1].T, s=s, facecolors="none", edgecolors=colour, linewidths=0.8, zorder=3)
        ax.set_xlim(-0.5, w - 0.5)
        ax.set_ylim(h - 0.5, -0.5)


def _draw_row(
    row: Any,
    image: np.ndarray,
    joints: _Joints,
    stages: list[dict[str, Any]],
    scales: list[tuple[float, tuple[float, float]]],
    *,
    i: int,
    last: bool,
) -> None:
    """One patch: the input, then per stage its gate levels and modulator magnitude (ranges on the last row).

    Args:
        row: the row's axes, one per :func:`panel_titles` column.
        image: the patch (3, H, W) uint8.
        joints: the patch's ground truth.
        stages: per stage, the maps of :func:`_stage_maps` (all patches).
        scales: per stage, :func:`_colour_scales`.
        i: the patch's index into the maps.
        last: the bottom row, which prints the colour ranges.
    """
    h, w = image.shape[1:]
    extent = (-0.5, w - 0.5, h - 0.5, -0.5)  # pixel centres at integers, as in search.task.gallery
    row[0].imshow(image.transpose(1, 2, 0), interpolation="nearest", extent=extent)
    joints.draw(row[0], h, w, small=False)
    col = 1
    for st, (glim, (mmin, mmax)) in zip(stages, scales, strict=True):
        for lvl in range(st["gates"].shape[1]):
            ax = row[col]
            ax.imshow(
                st["gates"][i, lvl],
                cmap="RdBu_r",
                vmin=-glim,
                vmax=glim,
                interpolation="nearest",
                extent=extent,
            )
            joints.draw(ax, h, w, small=True)
            if last:
                ax.set_xlabel(f"±{glim:.2g}  ({st['res'][0]}×{st['res'][1]})", fontsize=7)
            col += 1
        ax = row[col]
        ax.imshow(
            st["modulator"][i], cmap="viridis", vmin=mmin, vmax=mmax, interpolation="nearest", extent=extent
        )
        joints.draw(ax, h, w, small=True)
        if last:
            ax.set_xlabel(f"{mmin:.2g}..{mmax:.2g}", fontsize=7)
        col += 1


def _json_equal(a: Any, b: Any) -> bool:
    return json.loads(json.dumps(a, sort_keys=True)) == json.loads(json.dumps(b, sort_keys=True))


def _trained_model(
    config: dict[str, Any], data: Any, export_dir: Path, *, number: int, rec: dict[str, Any], progress: bool
) -> Any:
    """The trial's trained model: from a previous export when its config matches, else retrained with the seed."""
    model = build_model(config["model"])
    weights, cfg_file = export_dir / "model.pt", export_dir / "config.json"
    if weights.exists() and cfg_file.exists():
        try:
            same = _json_equal(json.loads(cfg_file.read_text()), config)
        except (OSError, json.JSONDecodeError):
            same = False
        if same:
            model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
            print(f"loaded trial {number}'s weights from {weights}")
            return model
        print(f"{cfg_file} does not match trial {number}'s config: retraining", file=sys.stderr)
    print(
        f"retraining trial {number} with seed {config['train']['seed']} (search trials store only their config)"
    )
    result = train(config["model"], config["train"], data, progress=progress, desc=f"inspect {number}")
    model.load_state_dict(result.state_dict)
    stored, got = (rec.get("val") or {}), result.val
    diffs = [abs(stored[k] - got[k]) for k in stored if k in got]
    if diffs and max(diffs) > 1e-6:
        print(
            f"warning: retrained val metrics differ from the stored ones by up to {max(diffs):.3g} "
            "(other machine or thread count?)",
            file=sys.stderr,
        )
    if (
        not weights.exists() and not cfg_file.exists()
    ):  # cache for the next inspect (same files reproduce writes)
        export_dir.mkdir(parents=True, exist_ok=True)
        torch.save(result.state_dict, weights)
        cfg_file.write_text(json.dumps(config, indent=1, sort_keys=True))
    return model


def inspect_trial(
    study: Any,
    spec: Any,
    trial: int,
    *,
    n: int = 4,
    out: str | Path | None = None,
    tracking_uri: str | None = None,
    out_dir: str | Path = "exports",
    block: int | str = "last",
    progress: bool | None = None,
) -> Path:
    """Draw the modulator maps of trial ``trial`` for the first ``n`` test patches, log them, return the PNG path.

    Raises:
        search.tools.reproduce.ReproduceError: unknown, unfinished, pruned or skipped trial; a baseline
            (non-FocalNet) trial; ``n < 1``; the dataset changed since the search.
    """
    if n < 1:
        raise ReproduceError(f"--n: must be >= 1, got {n}")
    rec = pick_trial(study_records(study, spec), spec, trial=trial, pick=None)
    config = rec["config"]
    backbone = config["model"].get("backbone")
    if backbone != "focalnet":
        raise ReproduceError(
            f"--trial: trial {trial} ({rec['name']}) has a {backbone} backbone, not FocalNet; "
            "pick a FocalNet trial"
        )
    data = trial_data(config, base_dir=spec.data.base_dir)

    export_dir = Path(out_dir) / study.study_name / f"trial-{rec['number']}"
    progress = sys.stderr.isatty() if progress is None else progress
    model = _trained_model(config, data, export_dir, number=rec["number"], rec=rec, progress=progress)
    k = min(n, len(data.test.images))
    path = modulator_figure(
        model,
        data.test.images[:k],
        data.test.keypoints[:k],
        data.test.visibility[:k],
        data.edges,
        Path(out) if out else export_dir / FIGURE_NAME,
        block=block,
    )

    uri = tracking_uri or spec.tracking_uri or default_tracking_uri()
    if uri != "none" and not store_exists(uri):  # never create a tracking store from here
        print(f"note: no MLflow store at {redact_url(uri)}; nothing logged", file=sys.stderr)
    elif uri != "none":
        tracker = StudyTracker(tracking_uri=uri, study_name=spec.name)
        run_id = rec.get("mlflow_run_id") or tracker.find_trial_run(rec["number"])
        if run_id:
            tracker.log_artifact(run_id, path, "inspect")
            if not tracker.flush(WAIT_AT_EXIT_S):  # a write that had to wait is sent before the process ends
                print(f"logged inspect/{path.name} to MLflow run {run_id}")
        else:
            print(
                f"warning: trial {rec['number']} has no MLflow run in {uri}; the figure was not logged",
                file=sys.stderr,
            )
    print(path)
    return path


def inspect_study(args: argparse.Namespace) -> int:
    """CLI entry: ``python -m search inspect NAME --trial N [--out PATH] [--n 4]``."""
    study, spec = load_stored_study(args.name, args.storage)
    inspect_trial(study, spec, args.trial, n=args.n, out=args.out, tracking_uri=args.tracking_uri)
    return 0
