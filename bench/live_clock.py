"""A live study's training seconds per step against the table's for the same configurations (the
warm-start rows and the baselines): how fast the machine that ran the study is, relative to the one the
table was recorded on, on the clock `simulate --clock cpu` uses (README, "The main study").

    .venv/bin/python bench/live_clock.py JOURNAL [--study focalnet-default] [--table bench/tables/default.jsonl.gz]

Prints per trial live s/step (two workers), the row's recorded s/step scaled to idle CPU time, and their
ratio; the simulator already applies 1.04 for two one-thread workers, so machine factor = ratio / 1.04.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("journal")
    ap.add_argument("--study", default="focalnet-default")
    ap.add_argument("--table", default=str(ROOT / "bench" / "tables" / "default.jsonl.gz"))
    args = ap.parse_args()
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    from search.efficiency.table import config_key, read_table
    from search.tools.simulate import SPEED, time_scales

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=args.study, storage=JournalStorage(JournalFileBackend(args.journal)))
    table = read_table(args.table)
    scales = time_scales(table, "cpu")
    rows = {config_key(r["config"]): r for r in table.rows if r.get("trained")}
    print("trial  role      row   live s/step  table s/step  ratio  machine factor")
    ratios = []
    for t in study.trials:
        row = rows.get(config_key(t.user_attrs.get("config", {}))) if t.state.name == "COMPLETE" else None
        if row is None:
            continue
        live = t.user_attrs["timing"]["train_s"] / row["config"]["train"]["steps"]
        recorded = row["train_s_per_step"] * scales[row["index"]]
        ratios.append(live / recorded)
        print(f"{t.number:5d}  {t.user_attrs.get('role', 'search'):<8} {row['index']:4d}  {live:11.4f}  "
              f"{recorded:12.4f}  {live / recorded:5.2f}  {live / recorded / SPEED[(2, 1)]:14.2f}")  # fmt: skip
    print(f"median ratio {statistics.median(ratios):.2f} over {len(ratios)} trials")
    return 0


if __name__ == "__main__":
    sys.exit(main())
