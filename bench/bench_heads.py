"""Heads × backbones: steps to leave the constant-predictor plateau, and val PCK@0.05 at fixed steps.

    python bench/bench_heads.py [--steps 1000] [--checkpoints 250 500 1000] [--seeds 0 1 2]
        [--configs baseline fn-d32-1131-p4 fn-d16-2222-p4] [--heads pool flatten heatmap simcc]
        [--lr baseline=6e-3 focalnet=2e-3] [--jobs 1] [--threads 1] [--out runs/bench_heads.json]

Every (config, head, seed) is one training run of the harness's own ``train`` on the same data (default
synthetic:medium, 8000 training patches, the main study's budget), evaluated on val every ``--eval-every``
steps and at each checkpoint. A run *leaves the plateau* at the first evaluation whose val PCK@0.05 is at
least the constant predictor's + ``search.task.plateau.PLATEAU_MARGIN``. The summary gives, per (config,
head), mean ± std over seeds of that step (over the seeds that left; how many never did) and of val
PCK@0.05 at each checkpoint.

Resumable: each finished run is appended to ``--out`` (JSON) at once; a re-run skips the runs it holds (same
key, steps, lr and data) and prints the summary of everything asked for. ``--jobs 2`` runs two at a time,
each with ``--threads`` torch threads. The machine's load average is recorded beside every run.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from any directory
from search.task.plateau import PLATEAU_MARGIN  # noqa: E402

#: Backbones (``ModelConfig`` dicts without a head). The two FocalNets are small (<= 2 M params with any head).
CONFIGS: dict[str, dict[str, Any]] = {
    "baseline": {"backbone": "baseline"},
    "fn-d32-1131-p4": {"backbone": "focalnet", "focalnet": {"embed_dim": 32, "depths": [1, 1, 3, 1], "patch_size": 4}},
    "fn-d16-2222-p4": {"backbone": "focalnet", "focalnet": {"embed_dim": 16, "depths": [2, 2, 2, 2], "patch_size": 4}},
}  # fmt: skip
#: Heads. Vector heads (pool, flatten) read each backbone's last map, as designed (the seed's FocalNet pool
#: head, the team's flatten head). Spatial heads (heatmap, simcc) read the 16x16 (stride-4) map: at 64 px the
#: last map of a 4-stage patch-4 FocalNet is 2x2, too coarse to place a joint, and the same stride for both
#: backbones keeps the comparison about the backbone.
HEADS: dict[str, dict[str, Any]] = {
    "pool": {"kind": "pool", "stage": -1},
    "flatten": {"kind": "flatten", "stage": -1},
    "heatmap": {"kind": "heatmap", "side": 16},
    "simcc": {"kind": "simcc", "side": 16},
}


def head_config(config: str, head: str) -> dict[str, Any]:
    """The ``HeadConfig`` dict of ``head`` on ``config``: a ``side`` becomes the stage whose map has that side."""
    from focalnet import ModelConfig

    h = dict(HEADS[head])
    side = h.pop("side", None)
    if side is not None:
        shapes = ModelConfig.from_dict(CONFIGS[config]).stage_shapes
        h["stage"] = next(i for i, (_, s) in enumerate(shapes) if s <= side)
    return h


def _key(config: str, head: str, seed: int) -> str:
    return f"{config}|{head}|seed{seed}"


def _load_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--checkpoints", type=int, nargs="+", default=[250, 500, 1000])
    p.add_argument("--eval-every", type=int, default=50)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    p.add_argument("--heads", nargs="+", default=list(HEADS), choices=list(HEADS))
    p.add_argument(
        "--lr", nargs="+", default=["baseline=6e-3", "focalnet=2e-3"], help="BACKBONE=LR or CONFIG=LR"
    )
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--dataset", default="synthetic:medium")
    p.add_argument("--n-train", type=int, default=8000)
    p.add_argument("--n-val", type=int, default=1000)
    p.add_argument("--jobs", type=int, default=1)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="runs/bench_heads.json")
    a = p.parse_args()
    bad = [c for c in a.checkpoints if not 1 <= c <= a.steps]
    if bad or a.jobs < 1 or a.threads < 1 or a.steps < 1:
        p.error(f"--checkpoints must lie in 1..--steps={a.steps}; --jobs, --threads, --steps >= 1")
    lrs = {}
    for item in a.lr:
        name, _, value = item.partition("=")
        try:
            lrs[name] = float(value)
        except ValueError:
            p.error(f"--lr: expected NAME=VALUE, got {item!r}")
    a.lrs = lrs
    return a


def _lr(args: argparse.Namespace, config: str) -> float:
    return args.lrs.get(config, args.lrs.get(CONFIGS[config]["backbone"], 2e-3))


def _data(args: argparse.Namespace) -> Any:
    from search.task.data import load_dataset

    return load_dataset(args.dataset, n_train=args.n_train, n_val=args.n_val, n_test=1, seed=0)


def _run(args: argparse.Namespace, config: str, head: str, seed: int) -> dict[str, Any]:
    """One training run (in a worker process): curve, plateau step, params, wall time, load."""
    from focalnet import build_model, count_params
    from search.task.plateau import constant_metrics, left_plateau_step
    from search.task.train import train

    data = _data(args)
    model = {**CONFIGS[config], "head": head_config(config, head), "num_keypoints": data.num_keypoints}
    cfg = {
        "steps": args.steps, "batch_size": args.batch_size, "lr": _lr(args, config), "warmup_steps": args.warmup,
        "eval_every": args.eval_every, "eval_steps": sorted(set(args.checkpoints)), "seed": seed,
        "threads": args.threads, "device": "cpu",
    }  # fmt: skip
    load0 = os.getloadavg()[0]
    result = train(model, cfg, data, progress=False)
    curve = [[s, m["pck_0.05"]] for s, m in result.history]
    const = constant_metrics(data)["val"]["pck_0.05"]
    return {
        "key": _key(config, head, seed), "config": config, "head": head, "seed": seed, "model": model,
        "train": cfg, "data_hash": data.data_hash, "params": count_params(build_model(model)),
        "curve": curve, "constant": const, "left_plateau_step": left_plateau_step(curve, const),
        "wall_s": result.wall_s, "load_start": load0, "load_end": os.getloadavg()[0],
    }  # fmt: skip


def _fmt(values: list[float], nd: int = 3) -> str:
    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], dtype=float)
    if not v.size:
        return "-"
    return f"{v.mean():.{nd}f}" + (f" ± {v.std(ddof=1):.{nd}f}" if v.size > 1 else "")


def summary(runs: list[dict[str, Any]], args: argparse.Namespace) -> str:
    """Per (config, head): params, steps to leave the plateau, val PCK@0.05 at each checkpoint."""
    const = next((r["constant"] for r in runs), math.nan)
    cps = sorted(set(args.checkpoints))
    head = [
        "config",
        "head",
        "lr",
        "params",
        "n",
        "left plateau at (never)",
        *(f"PCK@0.05 @{c}" for c in cps),
    ]
    body = []
    for config in args.configs:
        for h in args.heads:
            rs = [r for r in runs if r["config"] == config and r["head"] == h and r["seed"] in args.seeds]
            if not rs:
                continue
            left = [r["left_plateau_step"] for r in rs]
            never = sum(s is None for s in left)
            at = {c: [dict(map(tuple, r["curve"])).get(c) for r in rs] for c in cps}
            body.append([config, h, f"{_lr(args, config):g}", f"{rs[0]['params']:,}", str(len(rs)),
                         f"{_fmt([s for s in left if s is not None], 0)} ({never}/{len(rs)})",
                         *(_fmt(at[c]) for c in cps)])  # fmt: skip
    widths = [max(len(row[i]) for row in [head, *body]) for i in range(len(head))]
    lines = [
        f"val PCK@0.05, mean ± std over seeds {args.seeds}; {args.dataset}, {args.n_train} train patches, "
        f"batch {args.batch_size}, warm-up {args.warmup}; constant predictor {const:.3f} (plateau left at >= "
        f"{const + PLATEAU_MARGIN:.3f}); load average now {os.getloadavg()[0]:.1f}",
        "  ".join(c.ljust(w) for c, w in zip(head, widths, strict=True)),
    ]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in body]
    return "\n".join(lines)


def main() -> None:
    args = _load_args()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    runs: list[dict[str, Any]] = json.loads(out.read_text()) if out.exists() else []
    data_hash = _data(args).data_hash  # generate / check the cache once, before the workers read it

    def current(r: dict[str, Any]) -> bool:  # a stored run counts only if it was this experiment
        t = r["train"]
        return (r["data_hash"], t["steps"], t["lr"], t["batch_size"], t["warmup_steps"], r["model"]["head"]) == (
            data_hash, args.steps, _lr(args, r["config"]), args.batch_size, args.warmup, head_config(r["config"], r["head"]))  # fmt: skip

    stored, runs = runs, [r for r in runs if current(r)]  # other experiments' runs stay in the file
    have = {r["key"] for r in runs}
    todo = [
        (c, h, s) for s in args.seeds for c in args.configs for h in args.heads if _key(c, h, s) not in have
    ]
    print(
        f"{len(todo)} runs to do, {len(have)} stored in {out}; load average {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    t0 = time.time()
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        futures = {pool.submit(_run, args, *job): job for job in todo}
        for i, fut in enumerate(as_completed(futures), 1):
            r = fut.result()
            runs.append(r)
            stored.append(r)
            tmp = out.with_name(
                out.name + ".tmp"
            )  # after every run, atomically: an interrupted bench resumes
            tmp.write_text(json.dumps(stored, indent=1))
            tmp.replace(out)
            eta = (time.time() - t0) / i * (len(todo) - i)
            print(f"[{i}/{len(todo)} ETA {eta / 60:.0f} min] {r['key']}: left plateau at {r['left_plateau_step']}, "
                  f"final {r['curve'][-1][1]:.3f}, {r['wall_s']:.0f} s, load {r['load_end']:.1f}", flush=True)  # fmt: skip
    text = summary(runs, args)
    out.with_suffix(".txt").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
