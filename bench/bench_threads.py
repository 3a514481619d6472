"""Train-step time vs torch threads on an idle and a loaded machine, with active and passive OpenMP waiting.

    .venv/bin/python bench/bench_threads.py [--reps 3] [--steps 20] [--load 4] [--models fn,baseline]

Each measurement is a fresh process (OpenMP reads OMP_WAIT_POLICY when torch loads): it builds a model,
runs 3 warm-up train steps (batch 64, AdamW) and reports the median of `--steps` timed steps. Arms are
threads ∈ {1, 2} × OMP_WAIT_POLICY ∈ {unset (libgomp's default spin-then-sleep), PASSIVE}, interleaved in a
shuffled order within each repetition, first with no extra load, then with `--load` busy-loop processes
(each bounded by a deadline) competing for the cores. `uptime`'s load average is printed beside every
figure; the machine is shared, so read ratios, not absolute times.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

MODELS = {
    # d32 1-1-3-1, patch 4: the ablation's FocalNet; and the conv baseline
    "fn": {"backbone": "focalnet", "focalnet": {"embed_dim": 32, "depths": [1, 1, 3, 1], "patch_size": 4}},
    "baseline": {"backbone": "baseline"},
}

CHILD = r"""
import json, statistics, sys, time
import torch
from focalnet import build_model
threads, steps, model_cfg = int(sys.argv[1]), int(sys.argv[2]), json.loads(sys.argv[3])
torch.set_num_threads(threads)
torch.manual_seed(0)
model = build_model(model_cfg)
opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
x, y = torch.rand(64, 3, 64, 64), torch.rand(64, 16, 2)
times = []
for i in range(3 + steps):
    t0 = time.perf_counter()
    loss = torch.nn.functional.smooth_l1_loss(model(x), y)
    opt.zero_grad(); loss.backward(); opt.step()
    if i >= 3:
        times.append(time.perf_counter() - t0)
print(json.dumps({"median_ms": 1000 * statistics.median(times)}))
"""

BUSY = "import time\nt = time.time() + float({s})\nwhile time.time() < t:\n    pass\n"


def measure(threads: int, passive: bool, steps: int, model: str) -> float:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": str(threads)}
    env.pop("OMP_WAIT_POLICY", None)
    if passive:
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(threads), str(steps), json.dumps(MODELS[model])],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=1800,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])["median_ms"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--load", type=int, default=4, help="busy-loop processes in the loaded condition")
    p.add_argument("--models", default="fn,baseline")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--load-max-s", type=float, default=1200, help="deadline of each busy loop")
    args = p.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the clean-up below
    rng = random.Random(args.seed)
    arms = [(m, t, passive) for m in args.models.split(",") for t in (1, 2) for passive in (False, True)]
    results: dict[tuple, list[float]] = {}
    print(
        f"cores {len(os.sched_getaffinity(0))}; {args.reps} reps x {len(arms)} arms x (idle, load {args.load})"
    )
    for rep in range(args.reps):
        for loaded in (False, True):
            busy = []
            if loaded:
                busy = [  # each ends by itself after --load-max-s even if this script is killed
                    subprocess.Popen([sys.executable, "-c", BUSY.format(s=args.load_max_s)])
                    for _ in range(args.load)
                ]
                time.sleep(2)  # let the load average notice them
            try:
                order = arms[:]
                rng.shuffle(order)
                for model, threads, passive in order:
                    ms = measure(threads, passive, args.steps, model)
                    key = (model, "loaded" if loaded else "idle", threads, passive)
                    results.setdefault(key, []).append(ms)
                    load1 = os.getloadavg()[0]
                    print(f"rep {rep} {key[1]:<6} {model:<8} threads={threads} "
                          f"{'PASSIVE' if passive else 'default'}: {ms:8.1f} ms/step  (load1 {load1:.2f})", flush=True)  # fmt: skip
            finally:
                for b in busy:
                    b.kill()
                    b.wait()
    print(
        "\nmedian ms/step [min, max] over reps; ratio = vs threads=1 default wait, same model and condition"
    )
    for model in args.models.split(","):
        for cond in ("idle", "loaded"):
            ref = statistics.median(results[(model, cond, 1, False)])
            for threads in (1, 2):
                for passive in (False, True):
                    v = results[(model, cond, threads, passive)]
                    med = statistics.median(v)
                    print(f"{model:<8} {cond:<6} threads={threads} {'PASSIVE' if passive else 'default':<7} "
                          f"{med:8.1f} [{min(v):.1f}, {max(v):.1f}]  ratio {med / ref:.2f}")  # fmt: skip
    print(f"uptime at end: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")


if __name__ == "__main__":
    main()
