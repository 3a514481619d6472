"""How often random search replays each table row under nearest-row mapping, against uniform row draws.

    .venv/bin/python bench/draw_shares.py --spec bench/tables/heldout_spec.toml \
        --table bench/tables/heldout.jsonl.gz --draws 5000

Draws points of the spec's space with Optuna's RandomSampler (the real space code), maps each to its
nearest family row as `search simulate --draws nearest` does, and prints the share of draws that land on
the rows whose val beats the reference baseline, next to their share of the family (what uniform row
draws, `--draws table`, give). A row's nearest-row share is the volume of its Voronoi cell.
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--spec", default=str(ROOT / "studies" / "default.toml"))
    ap.add_argument("--table", default=str(ROOT / "bench" / "tables" / "default.jsonl.gz"))
    ap.add_argument("--draws", type=int, default=5000)
    args = ap.parse_args()
    import optuna

    from search.efficiency.table import Table, read_table
    from search.spec.parse import load_spec
    from search.spec.space import sample_params
    from search.tools.simulate import _nearest, check_table, reference_val

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    spec, table = load_spec(args.spec), read_table(args.table)
    rows = check_table(spec, table)
    ref = reference_val(spec, table)
    trained = [r for r in rows if r.get("trained")]
    winners = [r["index"] for r in trained if Table.final(r, spec.objectives.accuracy) > (ref or 0.0)]
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    hits: collections.Counter[int] = collections.Counter()
    for _ in range(args.draws):
        trial = study.ask()
        hits[_nearest(rows, sample_params(trial, spec), spec)[0]["index"]] += 1
        study.tell(trial, 0.0)
    n = args.draws
    print(f"# {args.table} for {args.spec}; {n} random draws; load {os.getloadavg()[0]:.2f}")
    print(
        f"family rows {len(rows)}, trained {len(trained)}, beating the reference baseline (val {ref:.3f}): {winners}"
    )
    print(f"{'':<28}{'nearest row':>12}{'uniform row':>12}")
    print(
        f"{'draws on trained rows':<28}{sum(hits[r['index']] for r in trained) / n:>12.3f}{len(trained) / len(rows):>12.3f}"
    )
    print(
        f"{'draws on winning rows':<28}{sum(hits[i] for i in winners) / n:>12.3f}{len(winners) / len(rows):>12.3f}"
    )
    for i in winners:
        print(f"{f'  row {i}':<28}{hits[i] / n:>12.3f}{1 / len(rows):>12.3f}")
    share = sorted(hits[r["index"]] / n for r in rows)
    print(
        f"{'smallest / largest row share':<28}{f'{share[0]:.3f}/{share[-1]:.3f}':>12}{1 / len(rows):>12.3f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
