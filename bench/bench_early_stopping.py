"""Early stopping pays off? The same study with and without Pareto-aware ASHA, hypervolume vs wall time.

Goal: with early stopping, reach >= 95% of the full-budget (no early stopping) hypervolume in <= 1/3 of its
wall time. Also reports the per-trial overhead: the share of study wall time not spent in training steps.

    .venv/bin/python bench/bench_early_stopping.py [--spec studies/default.toml] [--n-trials 16] [--steps 200]

Runs each arm in its own temp dir (journal storage, MLflow SQLite) so the two never share state.
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import sys
import tempfile
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def run_arm(raw: dict, *, early_stopping: bool, workdir: Path) -> dict:
    from search.report.records import objective_points, study_records
    from search.spec.parse import parse_spec
    from search.study.run import run_study

    raw = copy.deepcopy(raw)
    raw["study"]["name"] = f"bench-es-{'on' if early_stopping else 'off'}"
    raw.setdefault("early_stopping", {})["enabled"] = early_stopping
    # Absolute per-arm store: MLflow caches its SQLite engine by URI, and both arms run in this process.
    raw["study"]["tracking_uri"] = f"sqlite:///{workdir / 'mlflow.db'}"
    spec = parse_spec(raw, source="bench")
    cwd = os.getcwd()
    os.chdir(workdir)  # the default journal path is relative: read the results before leaving
    try:
        t0 = time.time()
        study = run_study(spec, progress=False)
        wall = time.time() - t0
        records = study_records(study, spec)
        trials = study.get_trials()
        created = study.user_attrs["created_at"]
    finally:
        os.chdir(cwd)
    from search.efficiency.pareto import hypervolume

    names = ["accuracy", *spec.objectives.minimize]
    ref = [spec.hypervolume_reference[n] for n in names]
    done = sorted(
        (r for r in records if r["values"] is not None and r["feasible"]), key=lambda r: r["complete_time"]
    )
    history = []
    for i in range(1, len(done) + 1):
        hv = hypervolume(objective_points(done[:i], names), list(spec.objectives.directions), ref)
        history.append((done[i - 1]["complete_time"] - created, hv))
    train_s = sum((t.user_attrs.get("timing") or {}).get("train_s", 0.0) for t in trials)
    steps = spec.train.get("steps", 400)
    return {
        "wall_s": wall,
        "history": history,
        "final_hv": history[-1][1] if history else 0.0,
        "n_trials": len(records),
        "n_pruned": sum(r["state"] == "PRUNED" for r in records),
        "train_s": train_s,
        "steps": steps,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--spec", default=str(ROOT / "studies" / "default.toml"))
    p.add_argument("--n-trials", type=int, default=16)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--n-train", type=int, default=4000)
    args = p.parse_args()
    raw = tomllib.loads(Path(args.spec).read_text())
    raw["study"]["n_trials"] = args.n_trials
    raw["study"].pop("timeout_min", None)
    raw["train"]["steps"] = args.steps
    raw["data"]["n_train"] = args.n_train
    rungs = [args.steps // 4, args.steps // 2]
    raw.setdefault("early_stopping", {})["rungs"] = rungs
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; torch threads = cores"
    )
    print(
        f"study: {args.spec} with n_trials={args.n_trials}, steps={args.steps}, n_train={args.n_train}, rungs={rungs}"
    )
    results = {}
    for es in (False, True):
        with tempfile.TemporaryDirectory() as d:
            results[es] = run_arm(raw, early_stopping=es, workdir=Path(d))
    full, fast = results[False], results[True]
    target = 0.95 * full["final_hv"]
    t_full = full["wall_s"]
    t_reach = next((t for t, hv in fast["history"] if hv >= target), None)
    print(f"\n{'arm':<22} {'trials':>6} {'pruned':>6} {'wall s':>8} {'final HV':>12} {'train share':>11}")
    for name, r in (("no early stopping", full), ("Pareto-ASHA", fast)):
        print(
            f"{name:<22} {r['n_trials']:>6} {r['n_pruned']:>6} {r['wall_s']:>8.0f} {r['final_hv']:>12.4g} {r['train_s'] / r['wall_s']:>10.0%}"
        )
    if t_reach is None:
        print(
            f"\nPareto-ASHA never reached 95% of the full-budget hypervolume ({fast['final_hv'] / max(full['final_hv'], 1e-12):.0%} at the end)"
        )
    else:
        print(
            f"\nPareto-ASHA reached 95% of the full-budget hypervolume after {t_reach:.0f}s = {t_reach / t_full:.0%} of the full run's wall time (goal <= 33%)"
        )
    print(
        "per-trial overhead (everything but training steps incl. evaluation, costs, logging, sampling): "
        f"{1 - full['train_s'] / full['wall_s']:.0%} of study wall time without early stopping"
    )


if __name__ == "__main__":
    main()
