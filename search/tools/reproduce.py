"""Retrain a stored trial from its fully resolved config, compare, export, and log the run.

Same seed, same machine and thread count → identical metrics; any difference beyond the tolerance exits
non-zero. Extra seeds give mean ± std.
"""

from __future__ import annotations

import copy
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from focalnet import build_model
from focalnet.export import export_onnx, export_program
from search.efficiency.pareto import knee_point
from search.report.records import objective_points, study_records
from search.study.objective import METRIC_KEYS
from search.task.data import load_data_config
from search.task.gallery import model_gallery
from search.task.train import train
from search.tracking.outbox import WAIT_AT_EXIT_S
from search.tracking.params import flatten_config, redact_url
from search.tracking.runs import StudyTracker
from search.tracking.store import default_tracking_uri, store_exists

__all__ = ["reproduce", "pick_trial", "trial_data", "ReproduceError"]


class ReproduceError(ValueError):
    """A trial cannot be reproduced (missing, unfinished, data changed); CLI exit code 2."""


def pick_trial(
    records: list[dict[str, Any]], spec: Any, *, trial: int | None, pick: str | None
) -> dict[str, Any]:
    """The record to reproduce: an explicit trial number, or a pick from the feasible Pareto front."""
    if trial is not None:
        rec = next((r for r in records if r["number"] == trial), None)
        if rec is None:
            raise ReproduceError(f"--trial: no trial {trial}; trials are 0..{len(records) - 1}")
        if rec["state"] != "COMPLETE" or not rec["config"] or rec["skipped"]:
            raise ReproduceError(
                f"--trial: trial {trial} is {rec['state']}{' (skipped: ' + rec['skipped'] + ')' if rec['skipped'] else ''}; pick a trained COMPLETE trial"
            )
        return rec
    front = [r for r in records if r["pareto"] and r["role"] != "baseline"] or [
        r for r in records if r["pareto"]
    ]
    if not front:
        raise ReproduceError("--pick: the study has no completed feasible trial yet")
    pick = pick or "knee"
    if pick == "accuracy":
        return max(front, key=lambda r: r["values"]["accuracy"])
    if pick == "params":
        return min(front, key=lambda r: r["values"]["params"])
    if pick == "latency":
        return min(front, key=lambda r: r["values"]["latency_ms"])
    names = ["accuracy", *spec.objectives.minimize]
    return front[knee_point(objective_points(front, names), list(spec.objectives.directions))]


def trial_data(config: dict[str, Any], *, base_dir: str | None = None) -> Any:
    """The dataset a trial was trained on, refusing one whose content hash has changed since.

    Args:
        config: the trial's resolved config; its ``data`` table is a data config.
        base_dir: where relative file paths resolve (the spec file's folder, ``spec.data.base_dir``).
    """
    d = config["data"]
    data = load_data_config(d, base_dir=base_dir)
    if d.get("hash") and d["hash"] != data.data_hash:
        raise ReproduceError(
            f"data: dataset {d['dataset']} now hashes to {data.data_hash[:12]}, the trial used {d['hash'][:12]}"
        )
    return data


def _metrics_table(
    original: dict[str, dict[str, float]], reproduced: dict[str, dict[str, float]]
) -> tuple[list[str], float]:
    lines = [f"{'metric':<16} {'original':>10} {'reproduced':>11} {'diff':>10}"]
    worst = 0.0
    for split in ("val", "test"):
        for k in METRIC_KEYS:
            if k in original.get(split, {}) and k in reproduced.get(split, {}):
                a, b = original[split][k], reproduced[split][k]
                d = b - a
                worst = max(worst, abs(d)) if math.isfinite(d) else math.inf
                lines.append(f"{split + ' ' + k:<16} {a:>10.4f} {b:>11.4f} {d:>+10.2e}")
    return lines, worst


def reproduce(
    study: Any,
    spec: Any,
    *,
    trial: int | None = None,
    pick: str | None = None,
    seeds: list[int] | None = None,
    out_dir: str | Path = "exports",
    tracking_uri: str | None = None,
    tolerance: float = 1e-6,
    progress: bool = True,
) -> int:
    """Retrain, compare with the stored metrics, export and log. Returns the CLI exit code (0 = reproduced)."""
    records = study_records(study, spec)
    rec = pick_trial(records, spec, trial=trial, pick=pick)
    config = rec["config"]
    data = trial_data(config, base_dir=spec.data.base_dir)
    print(
        f"reproducing trial {rec['number']} ({rec['name']}) of study {study.study_name} with seed {config['train']['seed']}"
    )
    result = train(
        config["model"], config["train"], data, progress=progress, desc=f"reproduce {rec['number']}"
    )
    lines, worst = _metrics_table(
        {"val": rec["val"], "test": rec["test"]}, {"val": result.val, "test": result.test}
    )
    print("\n".join(lines))
    ok = worst <= tolerance
    print(f"max |difference| = {worst:.3g} ({'within' if ok else 'BEYOND'} tolerance {tolerance:g})")

    extra: dict[str, list[float]] = {}
    for s in seeds or []:
        cfg = copy.deepcopy(config)
        cfg["train"]["seed"] = int(s)
        r = train(cfg["model"], cfg["train"], data, progress=progress, desc=f"seed {s}")
        for split, m in (("val", r.val), ("test", r.test)):
            for k in METRIC_KEYS:
                if k in m:
                    extra.setdefault(f"{split}_{k}", []).append(m[k])
    if extra:
        print(f"over seeds {[config['train']['seed'], *seeds]}:")
        for split, m in (("val", result.val), ("test", result.test)):
            for k in METRIC_KEYS:
                if f"{split}_{k}" in extra:
                    vals = np.array([m[k], *extra[f"{split}_{k}"]])
                    print(f"  {split} {k:<10} {vals.mean():.4f} ± {vals.std(ddof=1):.4f}")

    out = Path(out_dir) / study.study_name / f"trial-{rec['number']}"
    out.mkdir(parents=True, exist_ok=True)
    model = build_model(config["model"])
    model.load_state_dict(result.state_dict)
    model.eval()
    torch.save(result.state_dict, out / "model.pt")
    (out / "config.json").write_text(json.dumps(config, indent=1, sort_keys=True))
    img = config["model"].get(config["model"]["backbone"], {}).get("img_size", data.test.images.shape[-1])
    export_program(model, out / "model.pt2", img_size=img)
    exported = ["torch.export program"]
    try:
        export_onnx(model, out / "model.onnx", img_size=img)
        exported.append("ONNX")
    except ImportError as e:  # onnx/onnxscript are an optional extra
        print(f"note: no ONNX export ({e})")
    model_gallery(model, data, out / "gallery.png")
    (out / "metrics.json").write_text(
        json.dumps(
            {
                "original": {"val": rec["val"], "test": rec["test"]},
                "reproduced": {"val": result.val, "test": result.test},
                "max_abs_diff": worst,
            },
            indent=1,
        )
    )
    print(f"exported state dict, config, {', '.join(exported)} and gallery to {out}")

    uri = tracking_uri or spec.tracking_uri or default_tracking_uri()
    if uri != "none" and not store_exists(uri):  # never create a tracking store from here
        print(f"note: no MLflow store at {redact_url(uri)}; nothing logged", file=sys.stderr)
    elif uri != "none":
        tracker = StudyTracker(tracking_uri=uri, study_name=spec.name)
        run_id = tracker.start_extra_run(
            run_name=f"reproduce-t{rec['number']:03d}-s{config['train']['seed']}",
            params=flatten_config(config),
            tags={"fs.role": "reproduce", "fs.reproduces": str(rec["number"])},
        )
        metrics = {f"final_val_{k}": v for k, v in result.val.items() if k in METRIC_KEYS}
        metrics |= {f"test_{k}": v for k, v in result.test.items() if k in METRIC_KEYS}
        metrics["max_abs_diff"] = worst
        tracker.log_metrics(run_id, metrics, step=None)
        for f in sorted(out.iterdir()):
            tracker.log_artifact(run_id, str(f), "export")
        tracker.end_trial_run(run_id, status="FINISHED", tags={"fs.reproduced": str(ok).lower()})
        tracker.flush(WAIT_AT_EXIT_S)  # writes that had to wait are sent before the process ends
    return 0 if ok else 1
