"""Latency stability benchmark: the same model measured by repeated, fresh ``measure_latency`` calls.

Goal: coefficient of variation (std / mean of the per-call medians) <= 3% per model. Also reports
the CV of the latency / baseline ratio three ways, because absolute times drift on shared machines:
against a baseline timed once before the first run (``once``: what the search did until 2026-12-05),
timed right before each measurement (``before``), and timed in turns with the model, repeat by repeat
(``paired``: ``measure_latency_pair``, what the search records now). With ``--neighbour`` the second half
of each model's runs has a busy one-thread torch loop on the other core, as when the other worker of a
study trains: the load changes under the measurement, as it does in a study.

Usage::

    python bench/bench_latency.py [--runs 10] [--repeats 30] [--threads 1] [--device cpu] [--neighbour]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from focalnet import ModelConfig, build_model  # noqa: E402
from search.efficiency.costs import measure_latency, measure_latency_pair  # noqa: E402

CONFIGS: dict[str, dict] = {
    "baseline": {"backbone": "baseline"},
    "focalnet-small": {
        "backbone": "focalnet",
        "focalnet": {"embed_dim": 32, "depths": [1, 1, 2], "focal_levels": 2},
    },
    "focalnet-T": {"backbone": "focalnet"},
}


# A neighbour: one thread training a FocalNet (patch 4, 4 stages of width 32, SimCC on its 16x16 map) on
# batches of 64 random 64x64 patches, as the other worker of `make study` does.
NEIGHBOUR = (
    "import torch; from focalnet import ModelConfig, build_model; torch.set_num_threads(1); "
    "m = build_model(ModelConfig.from_dict({'backbone': 'focalnet', 'focalnet': {'embed_dim': 32, "
    "'depths': [1, 1, 1, 1], 'patch_size': 4}, 'head': {'kind': 'simcc', 'stage': 0}})); "
    "opt = torch.optim.AdamW(m.parameters()); x = torch.rand(64, 3, 64, 64)\n"
    "while True:\n    out = m(x)\n    loss = sum(o.float().square().mean() for o in out.values()) "
    "if isinstance(out, dict) else out.float().square().mean()\n"
    "    opt.zero_grad(); loss.backward(); opt.step()"
)


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
    ap.add_argument("--neighbour", action="store_true", help="a busy neighbour in each model's second half")
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
        f"repeats={args.repeats}, runs={args.runs}, clock={args.clock}, loadavg(1m)={os.getloadavg()[0]:.2f}, "
        f"neighbour={args.neighbour}"
    )
    print(
        f"{'model':<16}{'median ms':>11}{'CV %':>8}{'max IQR/med %':>15}{'ratio':>9}"
        f"{'CV % once':>11}{'before':>8}{'paired':>8}{'wall s':>8}"
    )
    neighbour = None
    base_once = measure_latency(base_model, img_size=base_cfg.img_size, **kw).median_ms
    try:
        for name in args.configs:
            model, cfg = models[name]
            medians, once, before, paired, iqr_rel = [], [], [], [], []
            t0 = time.perf_counter()
            for run in range(args.runs):
                if args.neighbour and run == args.runs // 2:
                    neighbour = subprocess.Popen(
                        [sys.executable, "-c", NEIGHBOUR], cwd=Path(__file__).resolve().parents[1]
                    )
                    time.sleep(2.0)  # past its imports
                base = measure_latency(base_model, img_size=base_cfg.img_size, **kw)
                lat = measure_latency(model, img_size=cfg.img_size, in_chans=cfg.in_chans, **kw)
                _, _, ratio = measure_latency_pair(model, base_model, img_size=cfg.img_size, **kw)
                medians.append(lat.median_ms)
                once.append(lat.median_ms / base_once)
                before.append(lat.median_ms / base.median_ms)
                paired.append(ratio)
                iqr_rel.append(100.0 * lat.iqr_ms / lat.median_ms)
            wall = time.perf_counter() - t0
            if neighbour is not None:
                neighbour.kill()
                neighbour.wait()
                neighbour = None
            print(
                f"{name:<16}{statistics.median(medians):>11.3f}{cv_percent(medians):>8.2f}{max(iqr_rel):>15.1f}"
                f"{statistics.median(paired):>9.2f}{cv_percent(once):>11.2f}{cv_percent(before):>8.2f}"
                f"{cv_percent(paired):>8.2f}{wall:>8.1f}"
            )
    finally:
        if neighbour is not None:
            neighbour.kill()
            neighbour.wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
