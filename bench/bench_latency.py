"""Latency stability benchmark: the same model measured by repeated, fresh ``measure_latency`` calls.

Goal: coefficient of variation (std / mean of the per-call medians) <= 3% per model. Also reports
the CV of the latency / baseline ratio when the baseline is timed right before each measurement,
which is what the search records because absolute times drift on shared machines.

Usage::

    python bench/bench_latency.py [--runs 10] [--repeats 30] [--threads 1] [--device cpu]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from focalnet import ModelConfig, build_model  # noqa: E402
from search.efficiency.costs import measure_latency  # noqa: E402

CONFIGS: dict[str, dict] = {
    "baseline": {"backbone": "baseline"},
    "focalnet-small": {
        "backbone": "focalnet",
        "focalnet": {"embed_dim": 32, "depths": [1, 1, 2], "focal_levels": 2},
    },
    "focalnet-T": {"backbone": "focalnet"},
}


def cv_percent(xs: list[float]) -> float:
    return 100.0 * statistics.stdev(xs) / statistics.mean(xs)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--clock", choices=["wall", "thread"], default="wall")
    ap.add_argument("--configs", nargs="*", default=list(CONFIGS))
    args = ap.parse_args(argv)

    kw = dict(
        device=args.device,
        batch_size=args.batch_size,
        threads=args.threads,
        warmup=args.warmup,
        repeats=args.repeats,
        clock=args.clock,
    )
    models = {}
    for name in ["baseline", *[c for c in args.configs if c != "baseline"]]:
        cfg = ModelConfig.from_dict(CONFIGS[name])
        torch.manual_seed(0)
        models[name] = (build_model(cfg), cfg)

    base_model, base_cfg = models["baseline"]
    print(
        f"torch {torch.__version__}, device={args.device}, threads={args.threads}, batch={args.batch_size}, "
        f"repeats={args.repeats}, runs={args.runs}, clock={args.clock}, loadavg(1m)={os.getloadavg()[0]:.2f}"
    )
    print(
        f"{'model':<16}{'median ms':>11}{'CV %':>8}{'max IQR/med %':>15}{'ratio':>9}{'ratio CV %':>12}{'wall s':>8}"
    )
    for name in args.configs:
        model, cfg = models[name]
        medians, ratios, iqr_rel = [], [], []
        t0 = time.perf_counter()
        for _ in range(args.runs):
            base = measure_latency(base_model, img_size=base_cfg.img_size, **kw)
            lat = measure_latency(model, img_size=cfg.img_size, in_chans=cfg.in_chans, **kw)
            medians.append(lat.median_ms)
            ratios.append(lat.median_ms / base.median_ms)
            iqr_rel.append(100.0 * lat.iqr_ms / lat.median_ms)
        wall = time.perf_counter() - t0
        print(
            f"{name:<16}{statistics.median(medians):>11.3f}{cv_percent(medians):>8.2f}{max(iqr_rel):>15.1f}"
            f"{statistics.median(ratios):>9.2f}{cv_percent(ratios):>12.2f}{wall:>8.1f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
