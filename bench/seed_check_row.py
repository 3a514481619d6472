"""Retrain one learning-curve table row with another seed: is its single-seed figure seed noise?

    .venv/bin/python bench/seed_check_row.py --row 51 --seed 1 [--table bench/tables/default.jsonl.gz] [--bf16]

The row's recorded config, the spec's data, one thread, the recorded budget; prints val and test at the end.
``--bf16`` trains under bfloat16 autocast instead of the recorded precision (with ``--seed 0``, the row's own
seed: a paired precision check of the recorded figure).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--row", type=int, required=True)
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--table", default=str(ROOT / "bench" / "tables" / "default.jsonl.gz"))
    ap.add_argument("--spec", default=str(ROOT / "studies" / "default.toml"))
    ap.add_argument("--bf16", action="store_true", help="train under bfloat16 autocast")
    args = ap.parse_args()
    import copy

    import torch

    from search.efficiency.table import read_table
    from search.spec.parse import load_spec
    from search.study.setup import spec_data
    from search.task.train import train

    torch.set_num_threads(1)
    row = next(r for r in read_table(args.table).rows if r["index"] == args.row)
    data = spec_data(load_spec(args.spec))
    model = dict(copy.deepcopy(row["config"]["model"]), num_keypoints=data.num_keypoints)
    tcfg = dict(row["config"]["train"], seed=args.seed, threads=1)
    if args.bf16:
        tcfg["bf16"] = True
    t0 = time.perf_counter()
    result = train(model, tcfg, data, progress=False)
    out = {
        "row": args.row,
        "seed": args.seed,
        "bf16": bool(tcfg.get("bf16")),
        "table": Path(args.table).name,
        "val": result.val,
        "test": result.test,
        "wall_s": round(time.perf_counter() - t0, 1),
        "load": os.getloadavg(),
    }
    print(json.dumps(out, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
