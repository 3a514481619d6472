"""Per-trial figures of an ablation study as CSV: the raw results behind its report (one row per cell × seed).

Usage: python bench/ablation_trials.py STUDY_NAME [--storage journal:mlruns/optuna.journal] > trials.csv
"""

from __future__ import annotations

import argparse
import csv
import sys

from search.report.records import study_records
from search.storage.connect import load_stored_study


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("study")
    ap.add_argument("--storage", default="journal:mlruns/optuna.journal")
    args = ap.parse_args()
    study, spec = load_stored_study(args.study, args.storage)
    out = csv.writer(sys.stdout)
    metrics = ("pck_0.05", "pck_0.1", "mpe_px")
    out.writerow(["number", "name", "state", "plateau", *(f"val_{m}" for m in metrics),
                  *(f"test_{m}" for m in metrics), "params", "flops", "latency_ms", "wall_s"])  # fmt: skip
    for r in sorted(study_records(study, spec), key=lambda r: r["number"]):
        val, test, costs = r.get("val") or {}, r.get("test") or {}, r.get("values") or {}
        out.writerow([r["number"], r["name"], r["state"], r.get("plateau"), *(val.get(m) for m in metrics),
                      *(test.get(m) for m in metrics), costs.get("params"), costs.get("flops"),
                      costs.get("latency_ms"), r.get("wall_s")])  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
