"""Two one-thread workers or one two-thread worker? Step time of the default space's models in each layout.

    .venv/bin/python bench/bench_parallel.py [--reps 5] [--steps 15] [--rows 97,48,123] [--out FILE]

For each model (rows of the default learning-curve table that are points of `studies/default.toml`'s
space, plus the team's baseline), three arms, interleaved in a shuffled order within each repetition, each
a fresh process (OMP_WAIT_POLICY=PASSIVE, as every harness process sets it):

- ``1x1``: one process, one thread, alone (the table's clock: how its rows were recorded, CPU-scaled);
- ``2x1``: two processes, one thread each, at the same time (`search run --jobs 2` on 2 cores);
- ``1x2``: one process, two threads (`search run` with one worker on 2 cores).

A step is a real training step (batch 64, AdamW, the model's coordinate loss on random data), median of
``--steps`` after 3 warm-up steps. Reported per model: ``2x1 / 1x1`` and ``1x2 / 1x1`` (step-time factors on
the table's one-thread seconds: `search.tools.simulate.SPEED`), and the throughput of each layout in
trials per unit of one-thread time (2 / factor for two workers, 1 / factor for one). Needs both cores
free of other work to mean anything: stop other jobs first; `uptime` is printed beside every repetition.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CHILD = r"""
import json, statistics, sys, time
import torch
from focalnet import build_model
threads, steps, model_cfg = int(sys.argv[1]), int(sys.argv[2]), json.loads(sys.argv[3])
torch.set_num_threads(threads)
torch.manual_seed(0)
model = build_model(model_cfg)
opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
k = model_cfg["num_keypoints"]
x, y = torch.rand(64, 3, 64, 64), torch.rand(64, k, 2) * 64
def step():
    loss = torch.nn.functional.smooth_l1_loss(model(x), y)
    opt.zero_grad(); loss.backward(); opt.step()
for _ in range(3):
    step()
print("ready", flush=True)
sys.stdin.readline()  # both processes of a 2x1 arm start timing together
times = []
for _ in range(steps):
    t0 = time.perf_counter()
    step()
    times.append(time.perf_counter() - t0)
print(json.dumps({"median_s": statistics.median(times)}), flush=True)
"""


def _start(model: dict, threads: int, steps: int) -> subprocess.Popen:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "OMP_NUM_THREADS": str(threads),
        "OMP_WAIT_POLICY": "PASSIVE",
    }
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, str(threads), str(steps), json.dumps(model)],
        env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip


def arm(model: dict, layout: str, steps: int) -> float:
    """Median step seconds of one arm (for 2x1, the mean of the two processes' medians, timed together)."""
    procs = [_start(model, 2 if layout == "1x2" else 1, steps) for _ in range(2 if layout == "2x1" else 1)]
    for p in procs:  # warmed up (torch imported, 3 steps run)
        assert p.stdout.readline().strip() == "ready"
    for p in procs:
        p.stdin.write("go\n")
        p.stdin.flush()
    medians = [json.loads(p.stdout.readline())["median_s"] for p in procs]
    for p in procs:
        p.wait(60)
    return statistics.mean(medians)


def models(rows: list[int]) -> dict[str, dict]:
    from search.efficiency.table import read_table
    from search.spec.parse import load_spec
    from search.spec.space import BASELINE_OVERRIDES, resolve_config

    spec = load_spec(ROOT / "studies" / "default.toml")
    table = read_table(ROOT / "bench" / "tables" / "default.jsonl.gz")
    out = {}
    for r in table.rows:
        if r["index"] in rows:
            out[f"row{r['index']}"] = dict(r["config"]["model"], num_keypoints=16)
    out["baseline"] = dict(
        resolve_config(spec, {}, overrides={"model": dict(BASELINE_OVERRIDES)})["model"], num_keypoints=16
    )
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--steps", type=int, default=15)
    p.add_argument("--rows", default="97,48,123", help="default-table rows (points of the default space)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="write the raw per-repetition figures as JSON")
    args = p.parse_args()
    rng = random.Random(args.seed)
    cfgs = models([int(x) for x in args.rows.split(",")])
    raw: dict[str, dict[str, list[float]]] = {m: {"1x1": [], "2x1": [], "1x2": []} for m in cfgs}
    loads = []
    for rep in range(args.reps):
        order = [(m, a) for m in cfgs for a in ("1x1", "2x1", "1x2")]
        rng.shuffle(order)
        for m, layout in order:
            raw[m][layout].append(arm(cfgs[m], layout, args.steps))
        loads.append(os.getloadavg()[0])
        print(f"rep {rep}: load1 {loads[-1]:.2f} ({time.strftime('%H:%M:%S')})", flush=True)
    print("\nmodel       1x1 ms/step   2x1/1x1 [min, max]   1x2/1x1 [min, max]   trials/time 2x1 vs 1x2")
    summary = {}
    for m, arms in raw.items():
        r21 = [a / b for a, b in zip(arms["2x1"], arms["1x1"], strict=True)]  # per repetition: interleaved
        r12 = [a / b for a, b in zip(arms["1x2"], arms["1x1"], strict=True)]
        f21, f12 = statistics.median(r21), statistics.median(r12)
        summary[m] = {"2x1": f21, "1x2": f12, "throughput_2x1_over_1x2": (2 / f21) / (1 / f12)}
        print(f"{m:<10} {1000 * statistics.median(arms['1x1']):10.1f}   {f21:.2f} [{min(r21):.2f}, {max(r21):.2f}]"
              f"     {f12:.2f} [{min(r12):.2f}, {max(r12):.2f}]     x{summary[m]['throughput_2x1_over_1x2']:.2f}")  # fmt: skip
    fn = [m for m in summary if m != "baseline"]
    print(f"FocalNet medians: 2x1 {statistics.median(summary[m]['2x1'] for m in fn):.2f}, "
          f"1x2 {statistics.median(summary[m]['1x2'] for m in fn):.2f}; load1 {min(loads):.2f}-{max(loads):.2f}")  # fmt: skip
    print(f"uptime: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")
    if args.out:
        Path(args.out).write_text(
            json.dumps({"raw_s": raw, "summary": summary, "load1": loads, "args": vars(args)}, indent=1)
        )


if __name__ == "__main__":
    main()
