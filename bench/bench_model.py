"""Benchmark train-step time and batch-1 inference latency of named keypoint-model configs.

    python bench/bench_model.py [--threads 2] [--repeats 5] [--configs t-srf baseline] [--bf16]

Train step: forward + backward + AdamW on a batch of 64 random 64x64 images (smooth L1 loss).
Latency: eval forward of one image under ``torch.inference_mode``. Both are medians over
``--repeats`` timed runs after one warm-up. ``--bf16`` also times bf16 autocast + channels_last.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from any directory
from focalnet import build_model, count_flops, count_params  # noqa: E402

CONFIGS = {
    "t-srf": {"backbone": "focalnet", "focalnet": {}},
    "deep-thin": {"backbone": "focalnet", "focalnet": {"embed_dim": 64, "depths": [3, 3, 16, 3]}},
    "2222-d32": {"backbone": "focalnet", "focalnet": {"embed_dim": 32, "depths": [2, 2, 2, 2]}},
    "baseline": {"backbone": "baseline"},
}


def _median_s(fn, repeats: int) -> float:
    fn()  # warm-up (allocator, oneDNN primitive caches)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench(name: str, batch: int, repeats: int, bf16: bool) -> dict[str, float | str]:
    torch.manual_seed(0)
    model = build_model(CONFIGS[name])
    img = model.backbone.config.img_size
    params, flops = count_params(model), count_flops(model, img)
    if bf16:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05)
    x = torch.rand(batch, 3, img, img)
    y = torch.rand(batch, model.num_keypoints, 2)
    x1 = x[:1].clone()
    if bf16:
        x, x1 = (
            x.contiguous(memory_format=torch.channels_last),
            x1.contiguous(memory_format=torch.channels_last),
        )

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = F.smooth_l1_loss(model(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def infer() -> None:
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            model(x1)

    model.train()
    train_s = _median_s(step, repeats)
    model.eval()
    infer_s = _median_s(infer, max(repeats, 10))
    return {"config": name + (" bf16+cl" if bf16 else ""), "params": params, "flops": flops,
            "train_ms": train_s * 1e3, "img_s": batch / train_s, "infer_ms": infer_s * 1e3}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--threads", type=int, default=2, help="torch intra-op threads (fixed for comparability)"
    )
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--bf16", action="store_true", help="also time bf16 autocast + channels_last")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, threads={torch.get_num_threads()}, batch {args.batch_size}, "
          f"repeats {args.repeats} (median), 64x64 inputs, K=16, head (256,)")  # fmt: skip
    header = f"{'config':<18} {'params':>11} {'MFLOPs':>8} {'train step ms':>14} {'train img/s':>12} {'b1 latency ms':>14}"
    print(header)
    print("-" * len(header))
    for name in args.configs:
        for bf16 in (False, True) if args.bf16 else (False,):
            r = bench(name, args.batch_size, args.repeats, bf16)
            print(f"{r['config']:<18} {r['params']:>11,} {r['flops'] / 1e6:>8.1f} {r['train_ms']:>14.1f} "
                  f"{r['img_s']:>12.1f} {r['infer_ms']:>14.2f}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
