"""Synthetic-data throughput: patches/s of the generator (medium preset, 64 px) on 2 threads.

Usage: python bench/bench_data.py [--n 20000] [--threads 2] [--preset medium]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from search.task.synthetic import make_params, render  # noqa: E402


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--preset", default="medium")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument(
        "--wait-steps", type=int, default=100, help="training steps for the data-wait fraction (0 = skip)"
    )
    args = ap.parse_args()
    params = make_params(args.preset)
    render(512, params, 99, threads=args.threads)  # warm-up
    best, best_cpu = float("inf"), float("inf")
    for r in range(args.repeats):
        t, c = time.perf_counter(), time.process_time()
        render(args.n, params, r, threads=args.threads)
        best, best_cpu = min(best, time.perf_counter() - t), min(best_cpu, time.process_time() - c)
    print(
        f"cpu: {cpu_model()} ({len(os.sched_getaffinity(0))} usable cores, load average {os.getloadavg()[0]:.1f})"
    )
    print(f"preset={args.preset} threads={args.threads} n={args.n}: {args.n / best:,.0f} patches/s wall, "
          f"{args.n / best_cpu:,.0f} patches per CPU-second (best of {args.repeats})")  # fmt: skip
    if args.wait_steps:
        data_wait(args.wait_steps, args.threads)


def data_wait(steps: int, threads: int) -> None:
    """Share of each training step spent fetching the batch (index, uint8→float, copy): goal <= 5%."""
    from search.task.data import load_dataset
    from search.task.train import train

    data = load_dataset("synthetic:medium", n_train=4000, n_val=256, n_test=0, seed=0)
    for name, model in (
        ("baseline", {"backbone": "baseline"}),
        (
            "focalnet d32 1-1-3-1 p4",
            {"backbone": "focalnet", "focalnet": {"embed_dim": 32, "depths": [1, 1, 3, 1]}},
        ),
    ):
        r = train(
            model,
            {"steps": steps, "eval_every": steps, "warmup_steps": 5, "threads": threads},
            data,
            progress=False,
        )
        print(f"data wait {name:<26} {r.data_s / (r.data_s + r.train_s):6.2%} of step time "
              f"({(r.data_s + r.train_s) / steps * 1e3:.1f} ms/step, bs 64, {threads} threads)")  # fmt: skip


if __name__ == "__main__":
    main()
