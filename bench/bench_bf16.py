"""bf16 autocast against fp32: step-time ratio of recorded table rows, interleaved in one process.

    .venv/bin/python bench/bench_bf16.py [--reps 5] [--steps 3] [--rows "heldout:2,49 default:3"] [--out FILE]

For every trained row of the held-out table and every row of the shipped space in the default table
(plus each table's reference baseline), one thread: a real training step (batch 64, AdamW, the recorded
model, the harness's masked coordinate loss through `search.task.train._optimiser_step`) timed under fp32
and under bf16 autocast in turns (fp32, bf16, fp32, bf16, ...; ``--reps`` rounds of ``--steps`` steps after
2 warm-up steps each). Prints per row the fp32 / bf16 ratio of the medians (above 1: bf16 is faster) and
the median and quartiles over rows, with the load average. The accuracy side is
`bench/bf16_parity.sh` (bench/results/bf16_parity.jsonl).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def rows_to_time(only: dict[str, set[int]] | None = None) -> list[tuple[str, dict]]:
    """(table name, row) of each table's reference baseline and its family's trained rows, or of
    ``only`` (table name -> row indices)."""
    from search.efficiency.table import read_table
    from search.spec.parse import load_spec
    from search.tools.simulate import check_table, reference_val

    out = []
    for name, spec_path in (
        ("heldout", "bench/tables/heldout_spec.toml"),
        ("default", "studies/default.toml"),
    ):
        spec, table = load_spec(ROOT / spec_path), read_table(ROOT / "bench" / "tables" / f"{name}.jsonl.gz")
        if only is not None:
            out += [(name, r) for r in table.rows if r["index"] in only.get(name, set())]
            continue
        ref = reference_val(spec, table)
        base = [r for r in table.rows if r["role"] == "baseline" and r.get("trained")]
        out += [(name, r) for r in base if r["val"][spec.objectives.accuracy][-1] == ref]
        out += [(name, r) for r in check_table(spec, table) if r.get("trained")]
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--out", default=None, help="also write the per-row figures as JSON")
    ap.add_argument(
        "--rows",
        default=None,
        help="only these rows, e.g. heldout:2,49 default:3,97 (default: all, see above)",
    )
    args = ap.parse_args()
    only = None
    if args.rows:
        only = {t: {int(i) for i in ids.split(",")} for t, ids in (x.split(":") for x in args.rows.split())}
    import torch

    from focalnet import ModelConfig, build_model
    from search.task.train import _optimiser_step, _Run, param_groups
    from search.task.train_config import TrainConfig

    torch.set_num_threads(1)
    results = []
    print(f"# {time.strftime('%FT%TZ', time.gmtime())} load {os.getloadavg()}", flush=True)
    for table, row in rows_to_time(only):
        mcfg = ModelConfig.from_dict(row["config"]["model"])
        runs = {}
        for bf16 in (False, True):
            torch.manual_seed(0)
            model = build_model(mcfg)
            opt = torch.optim.AdamW(param_groups(model, 0.05), lr=1e-3)
            sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
            cfg = TrainConfig(steps=100, bf16=bf16)
            runs[bf16] = _Run(cfg=cfg, model=model, opt=opt, sched=sched, device=torch.device("cpu"))
        x = torch.rand(64, 3, 64, 64)
        y, m = torch.rand(64, mcfg.num_keypoints, 2), torch.ones(64, mcfg.num_keypoints, dtype=torch.bool)
        times: dict[bool, list[float]] = {False: [], True: []}
        for bf16 in (False, True):
            for _ in range(2):
                _optimiser_step(runs[bf16], 1, x, y, m)
        for _ in range(args.reps):
            for bf16 in (False, True):
                t0 = time.perf_counter()
                for _ in range(args.steps):
                    _optimiser_step(runs[bf16], 1, x, y, m)
                times[bf16].append((time.perf_counter() - t0) / args.steps)
        fp32, bf = statistics.median(times[False]), statistics.median(times[True])
        rec = {"table": table, "row": row["index"], "role": row["role"], "fp32_s": fp32, "bf16_s": bf,
               "ratio": fp32 / bf, "load": os.getloadavg()[0]}  # fmt: skip
        results.append(rec)
        print(f"{table:<8} row {row['index']:>4} {row['role']:<8} fp32 {fp32:.3f} s  bf16 {bf:.3f} s  "
              f"ratio {fp32 / bf:.2f}  load {rec['load']:.2f}", flush=True)  # fmt: skip
    for table in ("heldout", "default", None):
        r = sorted(x["ratio"] for x in results if table in (None, x["table"]))
        q = statistics.quantiles(r, n=4) if len(r) > 1 else [r[0]] * 3
        print(f"{table or 'all':<8} {len(r)} rows: ratio median {statistics.median(r):.2f}, "
              f"quartiles {q[0]:.2f}-{q[2]:.2f}, range {r[0]:.2f}-{r[-1]:.2f}")  # fmt: skip
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
