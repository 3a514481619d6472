"""Re-time a finished study's trials with the paired latency protocol, in one quiet process.

    .venv/bin/python bench/retime_latency.py --journal mlruns/optuna.journal --study focalnet-default \
        [--spec studies/default.toml] [--runs 3]

For each completed baseline and search trial: the latency and ratio the study recorded, and the model
timed in turns with the baseline (`search.efficiency.costs.measure_latency_pair`) `--runs` times: the
median latency, the baseline's, and the ratio's median and range.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--journal", required=True)
    ap.add_argument("--study", required=True)
    ap.add_argument("--spec", default=str(ROOT / "studies" / "default.toml"))
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    from search.efficiency.costs import measure_costs
    from search.spec.parse import load_spec
    from search.study.objective import baseline_model_config

    spec = load_spec(args.spec)
    storage = JournalStorage(JournalFileBackend(args.journal))
    study = optuna.load_study(study_name=args.study, storage=storage)
    trials = [
        t
        for t in study.get_trials()
        if t.state.name == "COMPLETE" and t.user_attrs.get("role") in ("baseline", "search")
    ]
    print(f"load average {os.getloadavg()}; {args.runs} paired runs per trial")
    print(
        f"{'#':>3} {'role':<8} {'lat ms':>7} {'xbase':>6} {'base ms':>7} | paired: {'lat ms':>7} {'base ms':>7} {'xbase (range)':>20}"
    )
    for t in trials:
        model = t.user_attrs["config"]["model"]
        baseline = baseline_model_config(spec, model["num_keypoints"])
        runs = [measure_costs(model, latency_spec=spec.latency, baseline=baseline) for _ in range(args.runs)]
        ratios = [c.latency_ratio for c in runs]
        ua = t.user_attrs
        print(
            f"{t.number:>3} {ua['role']:<8} {ua['latency_ms']:>7.2f} {ua['latency_ratio']:>6.2f} "
            f"{ua['baseline_latency_ms']:>7.2f} | paired: {statistics.median(c.latency.median_ms for c in runs):>7.2f} "
            f"{statistics.median(c.baseline_latency_ms for c in runs):>7.2f} "
            f"{statistics.median(ratios):>6.2f} ({min(ratios):.2f}-{max(ratios):.2f})"
        )
    print(f"load average {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
