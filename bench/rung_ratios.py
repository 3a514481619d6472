"""Each trained search row's val at steps 250 and 500 as a share of the reference baseline's at the same
step, with its final val as a share of the baseline's: the evidence behind `behind-baseline`'s rung and
fraction (README, "Early stopping"; set on the default table's wide space, checked on the held-out one).

    .venv/bin/python bench/rung_ratios.py > bench/results/rung_ratios.txt
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TABLES = (
    ("default (wide space)", "bench/tables/default_spec.toml", "bench/tables/default.jsonl.gz"),
    ("default (shipped space)", "studies/default.toml", "bench/tables/default.jsonl.gz"),
    ("heldout", "bench/tables/heldout_spec.toml", "bench/tables/heldout.jsonl.gz"),
)


def main() -> int:
    from search.efficiency.table import read_table
    from search.spec.parse import load_spec
    from search.tools.simulate import check_table, reference_val

    print(f"# {time.strftime('%FT%TZ', time.gmtime())} load {os.getloadavg()[0]:.2f}")
    for name, spec_path, table_path in TABLES:
        spec, table = load_spec(ROOT / spec_path), read_table(ROOT / table_path)
        acc, ref = spec.objectives.accuracy, reference_val(spec, table)
        base = next(
            r for r in table.rows if r["role"] == "baseline" and r.get("trained") and r["val"][acc][-1] == ref
        )
        bc = dict(zip(base["steps"], base["val"][acc], strict=True))
        print(f"## {name}: reference baseline val {ref:.3f}; at step 250 {bc[250]:.3f}, at 500 {bc[500]:.3f}")
        print("final/ref  @250/ref  @500/ref  cpu_s  row")
        out = []
        for r in check_table(spec, table):
            c = dict(zip(r.get("steps", []), r.get("val", {}).get(acc, []), strict=False))
            if r.get("trained") and r["role"] == "search" and 500 in c:
                out.append((c[max(c)] / ref, c[250] / bc[250], c[500] / bc[500], r["cpu_s"], r["index"]))
        for final, at250, at500, cpu_s, index in sorted(out, reverse=True):
            print(f"{final:9.2f}  {at250:8.2f}  {at500:8.2f}  {cpu_s:5.0f}  {index}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
