"""Where a study's non-training time goes, and how long re-running a finished study takes.

    .venv/bin/python bench/bench_overhead.py [--spec studies/default.toml] [--n-trials 6] \
        [--steps N] [--n-train N]
    .venv/bin/python bench/bench_overhead.py --journal mlruns/optuna.journal   # the study `make study` ran

Runs `python -m search run` on the spec (with the options applied, one baseline, no seed check, no
timeout) in a fresh temporary folder (imports,
dataset, MLflow store, parent run, worker, report), then reads the storage back and splits each trial's
time into training steps, evaluation, and the rest (costs, sampling, MLflow logging), plus the gap
between trials (summary line, MLflow bookkeeping, report refresh) and the start-up and tail of the
process. With `--steps` (a shorter budget, for speed) it also extrapolates the per-trial overhead to
the spec's own budget using the measured seconds per step and per evaluation. Then it runs the same
command again on the finished study (goal: <= 3 s) and prints wall and CPU seconds of both runs.
With `--startup-runs N` it then launches N one-trial studies (new names) into the same, existing store
and prints launch -> first trial for each: the start-up a user sees on every `run` but the first.
With `--journal` it only reads an existing study of the spec (the real one, at its own budget).
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # harness_utils imports its sibling `zygote` as pytest does

from harness_utils import toml_dumps  # noqa: E402  (the tests' TOML writer; no TOML writer is a dependency)


def _run(cmd: list[str], cwd: Path) -> tuple[float, float, float, str]:
    """(start epoch, wall s, child CPU s, output) of one child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t_epoch, t0 = time.time(), time.perf_counter()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    p = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if p.returncode:
        sys.exit(f"child failed ({p.returncode}):\n{p.stdout[-2000:]}\n{p.stderr[-2000:]}")
    return t_epoch, wall, cpu, p.stdout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--spec", default=str(ROOT / "studies" / "default.toml"))
    ap.add_argument("--n-trials", type=int, default=6)
    ap.add_argument("--steps", type=int, default=None, help="shorter budget; figures are extrapolated")
    ap.add_argument("--n-train", type=int, default=None)
    ap.add_argument(
        "--journal",
        default=None,
        help="read an existing study's journal (e.g. mlruns/optuna.journal after `make study`) instead of running",
    )
    ap.add_argument(
        "--startup-runs", type=int, default=0, help="then time N more launches into the existing store"
    )
    args = ap.parse_args()

    raw = tomllib.loads(Path(args.spec).read_text())
    full_steps = int(raw.get("train", {}).get("steps", 400))
    full_every = int(raw.get("train", {}).get("eval_every", 100))
    full_rungs = list(raw.get("early_stopping", {}).get("rungs", []))
    raw["study"]["n_trials"] = args.n_trials
    for key in ("timeout_min", "baseline_lrs", "verify_seeds"):  # one baseline, no seed check: trials only
        raw["study"].pop(key, None)
    if args.steps:
        raw["train"]["steps"] = args.steps
        raw["train"]["eval_every"] = max(1, round(full_every * args.steps / full_steps))
        raw["train"]["warmup_steps"] = min(raw["train"].get("warmup_steps", 0), args.steps // 4)
        es = raw.setdefault("early_stopping", {})
        es["rungs"] = sorted({max(1, round(r * args.steps / full_steps)) for r in full_rungs})
    if args.n_train:
        raw["data"]["n_train"] = args.n_train
    if args.journal:  # the real study at its own budget: nothing to extrapolate, no start-up/tail to time
        print(f"uptime: {os.getloadavg()} (1/5/15-min load), {os.cpu_count()} cores; reading {args.journal}")
        report(Path(args.journal), raw, None, None, full_steps, full_every, full_rungs)
        return
    print(f"uptime: {os.getloadavg()} (1/5/15-min load), {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory(prefix="bench-overhead-") as tmp:
        work = Path(tmp)
        (work / "spec.toml").write_text(toml_dumps(raw))
        cmd = [sys.executable, "-m", "search", "run", "spec.toml", "--no-progress"]
        t_launch, wall, cpu, out = _run(cmd, work)
        t_end = t_launch + wall
        _, wall2, cpu2, out2 = _run(cmd, work)
        report(work / "mlruns" / "optuna.journal", raw, t_launch, t_end, full_steps, full_every, full_rungs)
        print(f"\nfirst run: {wall:.1f}s wall, {cpu:.1f}s CPU")
        print(f"re-run of the finished study: {wall2:.2f}s wall, {cpu2:.2f}s CPU (goal <= 3 s wall)")
        print("  " + out2.strip().splitlines()[-1])
        if args.startup_runs:
            startup(work, raw, args.startup_runs)


def startup(work: Path, raw: dict, runs: int) -> None:
    """Launch -> first trial of `runs` one-trial studies started into the existing store of `work`."""
    import optuna

    from search.storage.connect import make_storage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    firsts = []
    for i in range(runs):
        name = f"{raw['study']['name']}-startup{i}"
        spec = {**raw, "study": {**raw["study"], "name": name, "n_trials": 1}}
        (work / "startup.toml").write_text(toml_dumps(spec))
        t_launch, wall, _, _ = _run(
            [sys.executable, "-m", "search", "run", "startup.toml", "--no-progress"], work
        )
        storage = make_storage(f"journal:{work / 'mlruns' / 'optuna.journal'}", heartbeat=False)
        trials = optuna.load_study(study_name=name, storage=storage).get_trials()
        firsts.append(min(t.datetime_start.timestamp() for t in trials) - t_launch)
        print(f"startup run {i}: launch -> first trial {firsts[-1]:.1f}s ({wall:.1f}s in all)")
    firsts.sort()
    print(
        f"start-up into an existing store, {runs} runs: median {firsts[len(firsts) // 2]:.1f}s, "
        f"range {firsts[0]:.1f}-{firsts[-1]:.1f}s; uptime {os.getloadavg()}"
    )


def report(
    journal: Path,
    raw: dict,
    t_launch: float | None,
    t_end: float | None,
    full_steps: int,
    full_every: int,
    full_rungs: list,
) -> None:
    import optuna

    from search.storage.connect import make_storage
    from search.task.train_config import TrainConfig

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = make_storage(f"journal:{journal}", heartbeat=False)
    study = optuna.load_study(study_name=raw["study"]["name"], storage=storage)
    # Finished trials only (a study read while it runs has one RUNNING); the seed check is not search work.
    trials = sorted(
        (t for t in study.get_trials() if t.datetime_complete is not None), key=lambda t: t.datetime_start
    )
    steps = int(raw["train"]["steps"])
    n_evals = len(TrainConfig(steps=steps, warmup_steps=0, eval_every=int(raw["train"]["eval_every"]),
                              eval_steps=tuple(raw["early_stopping"].get("rungs", []))).evaluation_steps())  # fmt: skip
    full_evals = len(
        TrainConfig(
            steps=full_steps, warmup_steps=0, eval_every=full_every, eval_steps=tuple(full_rungs)
        ).evaluation_steps()
    )
    print(
        f"\n{'trial':>5} {'state':<9} {'wall s':>7} {'train':>7} {'eval':>6} {'costs':>6} {'other':>6} {'gap':>6}  overhead"
    )
    fixed_sum = dur_sum = ext_sum = ext_total = all_fixed = all_dur = 0.0
    for i, t in enumerate(trials):
        tm = t.user_attrs.get("timing") or {}
        start, end = t.datetime_start.timestamp(), t.datetime_complete.timestamp()
        nxt = trials[i + 1] if i + 1 < len(trials) else None
        # The next trial by another process (a later `run`, another worker) starts after that process's
        # own start-up, or in parallel: not this trial's overhead.
        same = nxt is not None and nxt.user_attrs.get("worker") == t.user_attrs.get("worker")
        dur, gap = end - start, (nxt.datetime_start.timestamp() - end) if same else 0.0
        work_s = tm.get("train_s", 0.0) + tm.get("data_s", 0.0)
        eval_s, cost_s = tm.get("eval_s", 0.0), tm.get("cost_s", 0.0)
        other = dur - work_s - eval_s - cost_s
        over = (dur + gap - work_s - eval_s) / (dur + gap) if dur + gap > 0 else 0.0
        print(
            f"{t.number:>5} {t.state.name:<9} {dur:>7.1f} {work_s:>7.1f} {eval_s:>6.1f} {cost_s:>6.1f} {other:>6.1f} {gap:>6.1f}  "
            + (f"{over:.1%}" if tm else f"- ({t.user_attrs.get('skipped') or 'no timing'})")
        )
        all_fixed, all_dur = all_fixed + dur + gap - work_s - eval_s, all_dur + dur + gap
        if t.user_attrs.get("role") == "search" and work_s > 0 and t.state.name == "COMPLETE":
            fixed = dur + gap - work_s - eval_s
            fixed_sum, dur_sum = fixed_sum + fixed, dur_sum + dur + gap
            at_full = full_steps / steps * work_s + full_evals / n_evals * eval_s  # same config, full budget
            ext_sum, ext_total = ext_sum + fixed, ext_total + fixed + at_full
    if t_launch is not None and t_end is not None:
        first = trials[0].datetime_start.timestamp() - t_launch
        tail = t_end - trials[-1].datetime_complete.timestamp()
        print(
            f"start-up (launch -> first trial): {first:.1f}s; tail (last trial -> exit, final report): {tail:.1f}s"
        )
    if dur_sum:
        print(
            f"per-trial overhead (costs, sampling, logging, gap; not training or evaluation), trained search "
            f"trials: {fixed_sum / dur_sum:.1%} of trial wall time at {steps} steps"
        )
        print(
            f"  every finished trial (stopped and skipped ones too, {len(trials)}): {all_fixed / all_dur:.1%} of "
            f"their {all_dur:.0f} s"
        )
        if steps != full_steps:
            print(
                f"  extrapolated to the spec's {full_steps} steps ({full_evals} evaluations): {ext_sum / ext_total:.1%}"
            )


if __name__ == "__main__":
    main()
