"""Record a learning-curve table: train configurations drawn from a spec's search space to the full budget.

    .venv/bin/python bench/record_curves.py [--spec studies/default.toml] [--n 96] \
        [--out bench/tables/default.jsonl.gz] [--threads 2] [--steps S] [--eval-every 50]

Configurations come from the real space code (`search.spec.space.sample_params` / `resolve_config`) through an
Optuna RandomSampler with a fixed seed, so the table is a uniform sample of the space; the spec's fixed
trials (the baseline) come first. Each one is trained like a live trial (same data, seed, threads) with
val *and* test metrics recorded every `--eval-every` steps, its costs measured as the objective measures
them (the baseline timed in the same process), and its step, evaluation and cost-measurement times.
Over-budget configurations get costs only, as a live study would skip them; `--n` counts trained rows.
Latency is timed with the thread clock by default (`--latency-clock`; CPU time of the timing thread,
which a busy machine does not inflate; the spec's threads must be 1), so a recording that runs for
hours beside other work keeps comparable latencies.

Resumable: every finished configuration rewrites the table atomically, so a crash or Ctrl-C loses at most
the one being trained, and re-running the same command continues at the next missing index (it refuses
a table made from another spec, dataset, sampler seed, evaluation interval or thread count).

Parallel on W cores: run W processes with `--shard K/W --threads 1`, each with its own `--out` (shard K
trains the indices i with i % W == K and stops at its share of `--n`), then join them with
`--merge A B ... --out TABLE`. Which indices a shard reaches depends only on earlier configurations, never
on the one at an index, so the merged table is still a uniform sample of the space.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import platform
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DEFAULT_OUT = ROOT / "bench" / "tables" / "default.jsonl.gz"
SAMPLE_SEED = 0
METRICS = ("pck_0.05", "pck_0.1", "pck_0.2", "mpe_px", "nme", "loss")


def _round(x: float) -> float | None:
    """6 significant digits: PCK over thousands of joints is exact at this precision; NaN → None."""
    x = float(x)
    return None if x != x or x in (float("inf"), float("-inf")) else float(f"{x:.6g}")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine(threads: int) -> dict[str, Any]:
    import torch

    from search.study.setup import cpu_count

    return {
        "cpu": _cpu_model(),
        "cores": cpu_count(),
        "torch": torch.__version__,
        "threads": threads,
        "platform": platform.platform(),
        "python": platform.python_version(),
    }


def load(spec_path: str, steps: int | None) -> Any:
    """The spec, with `--steps` applied (rungs at or beyond the new budget dropped, warm-up and
    evaluation interval shortened to fit)."""
    from search.spec.parse import load_spec, parse_spec

    if steps is None:
        return load_spec(spec_path)
    try:
        raw = tomllib.loads(Path(spec_path).read_text())
    except (OSError, tomllib.TOMLDecodeError) as e:
        from search.spec.parse import SpecError

        raise SpecError(f"{spec_path}: cannot read the spec: {e}") from None
    train = raw.setdefault("train", {})
    train["steps"] = steps
    for key, cap in (("warmup_steps", steps // 4), ("eval_every", steps)):  # keep the shortened spec valid
        if key in train:
            train[key] = min(int(train[key]), cap)
    es = raw.setdefault("early_stopping", {})
    es["rungs"] = [r for r in es.get("rungs", []) if r < steps]
    return parse_spec(raw, source=spec_path)


#: Index of the first warm-start row: apart from the sampled indices, so adding a warm start to a spec
#: mid-recording moves no sampled row (a resume compares rows by index).
WARM_INDEX = 100_000


def plan(spec: Any, seed: int):
    """Yield (index, role, name, params, config): the spec's fixed trials, its warm-start portfolio (role
    ``warm``, indices from `WARM_INDEX`: the configurations a warm-started study enqueues, so `simulate`
    replays them exactly on this table), then sampled points, forever."""
    import optuna

    from search.spec.space import fixed_trials, resolve_config, sample_params
    from search.study.warm_start import warm_start_rows

    index = 0
    for fixed in fixed_trials(spec):
        yield index, fixed["role"], fixed["name"], {}, resolve_config(spec, {}, overrides=fixed["overrides"])
        index += 1
    for i, (source, params) in enumerate(warm_start_rows(spec)):
        name = f"warm-{Path(spec.warm_start).name}#row{source['index']}"
        yield WARM_INDEX + i, "warm", name, params, resolve_config(spec, params)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        sampler=optuna.samplers.RandomSampler(seed=seed), directions=spec.objectives.directions
    )
    while True:  # RandomSampler ignores history: the i-th point is the same on every run
        trial = study.ask()
        params = sample_params(trial, spec)
        yield index, "search", None, params, resolve_config(spec, params)
        index += 1


def record_one(
    spec: Any, data: Any, config: dict[str, Any], *, threads: int, eval_every: int, baseline: Any, clock: str
) -> dict[str, Any]:
    """Costs, then (if within budget) a full training run with val/test every `eval_every` steps."""
    import copy

    from search.efficiency.costs import constraint_values, measure_costs
    from search.study.setup import code_version
    from search.task.train import TrainingDiverged, train

    model = copy.deepcopy(config["model"])
    model["num_keypoints"] = data.num_keypoints  # as the objective does: the dataset decides K
    t0 = time.perf_counter()
    if model.get("backbone") == "baseline":
        costs = baseline
    else:
        costs = measure_costs(
            model, latency_spec=latency_protocol(spec, clock), baseline_ms=baseline.latency.median_ms
        )
    cost_s = time.perf_counter() - t0
    feasible = all(v <= 0 for v in constraint_values(costs, spec.constraints).values())
    row: dict[str, Any] = {
        "costs": {
            "params": costs.params,
            "flops": costs.flops,
            "latency_ms": _round(costs.latency.median_ms),
            "latency_iqr_ms": _round(costs.latency.iqr_ms),
            "baseline_latency_ms": _round(baseline.latency.median_ms),
            "latency_ratio": _round(costs.latency_ratio),
        },
        "cost_s": _round(cost_s),
        "feasible": feasible,
        "trained": False,
        "code_version": code_version(),
    }
    if not feasible and config["model"].get("backbone") != "baseline":
        return row
    tcfg = dict(config["train"], eval_every=eval_every, threads=threads)
    val_curve: list[tuple[int, dict[str, float]]] = []
    failed = None
    t1, c1 = time.perf_counter(), time.process_time()
    try:
        result = train(
            model, tcfg, data, callback=lambda s, m: val_curve.append((s, m)), progress=False, track_test=True
        )
    except TrainingDiverged as e:
        result, failed = None, {"step": e.step, "reason": str(e)}
    wall, cpu = time.perf_counter() - t1, time.process_time() - c1
    steps = [s for s, _ in val_curve]
    test_curve = dict(result.test_history) if result is not None else {}
    row.update(
        trained=True,
        steps=steps,
        val={k: [_round(m.get(k, float("nan"))) for _, m in val_curve] for k in METRICS},
        test={k: [_round(test_curve[s].get(k, float("nan"))) for s in steps] for k in METRICS[:-1]}
        if result is not None
        else {},
        failed=failed,
        wall_s=_round(wall),
        cpu_s=_round(cpu),  # CPU seconds of the run: on a busy machine, wall_s / cpu_s shows the contention
    )
    if result is not None:
        row.update(
            train_s_per_step=_round(result.train_s / result.steps_done),
            data_s_per_step=_round(result.data_s / result.steps_done),
            eval_s=_round(result.eval_s / max(1, len(steps))),
            test_eval_s=_round(result.test_eval_s / max(1, len(steps))),
        )
    return row


def latency_protocol(spec: Any, clock: str) -> dict[str, Any]:
    """The spec's latency protocol with the recording's clock (`search.efficiency.costs.measure_latency`)."""
    return {**spec.latency.to_dict(), "clock": clock}


def _hms(s: float) -> str:
    s = int(s)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--spec", default=str(ROOT / "studies" / "default.toml"))
    p.add_argument("--n", type=int, default=96, help="trained configurations in the finished table")
    p.add_argument("--out", default=str(DEFAULT_OUT), help="table file (.jsonl or .jsonl.gz)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = all cores)")
    p.add_argument("--steps", type=int, default=None, help="override train.steps (tiny smoke runs)")
    p.add_argument("--eval-every", type=int, default=50, help="record val/test every this many steps")
    p.add_argument(
        "--latency-clock",
        choices=("thread", "wall"),
        default="thread",
        help="thread (default): CPU time of the timing thread, stable over hours on a shared machine; "
        "wall: what a live study records",
    )
    p.add_argument(
        "--shard", default="0/1", help="K/W: train only indices i with i %% W == K (parallel recording)"
    )
    p.add_argument("--merge", nargs="+", metavar="TABLE", help="join shard tables into --out and exit")
    args = p.parse_args(argv)
    try:
        if args.merge:
            return merge(args.merge, Path(args.out))
        return record(args, argv if argv is not None else sys.argv[1:])
    except KeyboardInterrupt:
        print(
            "\ninterrupted: the table holds every finished configuration; re-run to continue", file=sys.stderr
        )
        return 130
    except ValueError as e:  # SpecError, DataError, TableError: one line, exit 2
        print(f"error: {str(e).splitlines()[0]}", file=sys.stderr)
        return 2


#: Header fields two tables must share to be resumed or merged: they change what a row measures (and
#: the spec's measured parts, `search.efficiency.table.measured_parts`: a new stopping rule or budget is no new table).
SAME = ("data_hash", "sample_seed", "eval_every", "threads", "latency_clock")


def _same_recording(old: dict[str, Any], new: dict[str, Any]) -> str | None:
    """The first header field that differs between two recordings, or None."""
    from search.efficiency.table import measured_parts

    if measured_parts(old.get("spec") or {}) != measured_parts(new.get("spec") or {}):
        return "spec"
    return next((key for key in SAME if old.get(key) != new.get(key)), None)


def parse_shard(text: str) -> tuple[int, int]:
    """'K/W' -> (K, W) with 0 <= K < W."""
    from search.efficiency.table import TableError

    try:
        k, w = (int(x) for x in text.split("/"))
    except ValueError:
        k, w = -1, 0
    if not 0 <= k < w:
        raise TableError(f"--shard: expected K/W with 0 <= K < W (e.g. 0/2), got {text!r}")
    return k, w


def _constant_of(header: dict[str, Any]) -> dict[str, Any]:
    """The constant predictor's metrics on the data a table's header names (`search.task.plateau`)."""
    from search.spec.parse import parse_spec
    from search.study.setup import spec_data
    from search.task.plateau import constant_metrics

    spec = parse_spec((header.get("spec") or {}).get("raw") or {}, source=str(header.get("spec_source")))
    data = spec_data(spec)
    if data.data_hash != header.get("data_hash"):
        from search.efficiency.table import TableError

        raise TableError("--merge: the header's data no longer hashes the same; cannot add its constant")
    return constant_metrics(data)


def merge(paths: list[str], out: Path) -> int:
    """Join shard tables: the union of their rows by index (identical rows may repeat across shards)."""
    from search.efficiency.table import TableError, config_key, read_table, write_table

    tables = [read_table(p) for p in paths]
    header = dict(tables[0].header)
    rows: dict[int, dict[str, Any]] = {}
    sessions: list[dict[str, Any]] = []
    for t in tables:
        if key := _same_recording(header, t.header):
            raise TableError(
                f"--merge: {t.path} differs from {tables[0].path} in {key}; "
                "only shards of one recording can be merged"
            )
        sessions += [s for s in t.header.get("sessions", []) if s not in sessions]
        for r in t.rows:
            seen = rows.setdefault(r["index"], r)
            if config_key(seen["config"]) != config_key(r["config"]):
                raise TableError(f"--merge: row {r['index']} has another config in {t.path}")
    header["sessions"] = sessions
    if "constant" not in header:  # tables recorded before the header stored the plateau level
        header["constant"] = _constant_of(header)
    merged = [rows[i] for i in sorted(rows)]
    write_table(out, header, merged)
    trained = sum(r.get("trained", False) for r in merged)
    print(f"table {out}: {len(merged)} rows, {trained} trained, merged from {len(tables)} tables")
    return 0


def record(args: argparse.Namespace, argv: list[str]) -> int:
    import torch

    from search.efficiency.costs import measure_costs
    from search.efficiency.table import FORMAT, TableError, config_key, read_table, write_table
    from search.spec.space import resolve_config
    from search.study.setup import code_version, cpu_count, spec_data
    from search.task.plateau import constant_metrics

    for name in ("n", "eval_every"):
        if getattr(args, name) < 1:
            raise TableError(f"--{name.replace('_', '-')}: must be >= 1, got {getattr(args, name)}")
    if args.steps is not None and args.steps < 1:
        raise TableError(f"--steps: must be >= 1, got {args.steps}")
    shard, shards = parse_shard(args.shard)
    spec = load(args.spec, args.steps)
    threads = args.threads or cpu_count()
    torch.set_num_threads(threads)
    data = spec_data(spec)
    out = Path(args.out)
    now = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    session = {
        "command": " ".join(["bench/record_curves.py", *argv]),
        "code_version": code_version(),
        "at": now,
    }
    header: dict[str, Any] = {
        "kind": "header",
        "format": FORMAT,
        "command": session["command"],
        "code_version": session["code_version"],
        "created_at": now,
        "data_hash": data.data_hash,
        "machine": machine(threads),
        "spec_hash": spec.spec_hash,
        "spec_source": str(args.spec),
        "spec": spec.to_dict(),
        "sample_seed": SAMPLE_SEED,
        "eval_every": args.eval_every,
        "threads": threads,
        "latency_clock": args.latency_clock,
        "sessions": [session],
        "constant": constant_metrics(data),  # the plateau level: `Table.regions` judges rows against it
    }
    rows: list[dict[str, Any]] = []
    if out.exists():
        table = read_table(out)
        old = table.header
        if key := _same_recording(old, header):
            differs = (
                "its spec's space, model, data, latency or train differ"
                if key == "spec"
                else f"it was recorded with {key}={old.get(key)!r}, this run has {header[key]!r}"
            )
            raise TableError(f"--out: {out}: {differs}; use another --out")
        header, rows = old, table.rows
        header["sessions"] = [*header.get("sessions", []), session]
        header.setdefault("constant", constant_metrics(data))  # tables recorded before it was stored
    done = {r["index"]: r for r in rows}
    target = -(-args.n // shards)  # this shard's share of --n
    # `--n` counts fixed and sampled rows; warm-start rows come on top of them.
    trained = sum(
        r.get("trained", False) for r in rows if r["index"] % shards == shard and r["role"] != "warm"
    )
    print(
        f"table {out}: {len(rows)} rows ({trained} trained) of {target}"
        + (f" (shard {shard}/{shards} of --n {args.n})" if shards > 1 else "")
        + f"; spec {args.spec} "
        f"(steps {spec.train.get('steps')}), {threads} threads, data {data.data_hash[:12]}",
        flush=True,
    )
    base_cfg = resolve_config(spec, {}, overrides={"model": {"backbone": "baseline"}})
    base_model = dict(base_cfg["model"], num_keypoints=data.num_keypoints)
    base = measure_costs(
        base_model, latency_spec=latency_protocol(spec, args.latency_clock), baseline_ms=None
    )
    base = dataclasses.replace(base, baseline_latency_ms=base.latency.median_ms, latency_ratio=1.0)
    t_start, this_run = time.time(), 0
    for index, role, name, params, config in plan(spec, SAMPLE_SEED):
        if trained >= target:
            break
        if index % shards != shard:
            continue
        if index in done:
            if config_key(done[index]["config"]) != config_key(
                config
            ):  # the code resolves configs differently now
                raise TableError(
                    f"--out: {out} row {index} was recorded with another config for the same point "
                    f"(code {done[index].get('code_version')} vs {code_version()}); use another --out"
                )
            continue
        row = {"kind": "row", "index": index, "role": role, "name": name, "params": params, "config": config}
        row |= record_one(
            spec,
            data,
            config,
            threads=threads,
            eval_every=args.eval_every,
            baseline=base,
            clock=args.latency_clock,
        )
        row["finished_at"] = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
        rows.append(row)
        write_table(out, header, rows)
        trained += row["trained"] and role != "warm"
        this_run += row["trained"] and role != "warm"
        elapsed = time.time() - t_start
        eta = elapsed / max(1, this_run) * (target - trained)
        c = row["costs"]
        what = "over budget, costs only"
        if row["trained"]:
            acc = row["val"][spec.objectives.accuracy][-1] if row["steps"] else float("nan")
            what = (
                f"val {spec.objectives.accuracy}={acc:.3f} in {row['wall_s']:.0f}s"
                + (f" FAILED at {row['failed']['step']}" if row["failed"] else "")
                + (
                    f" ({row.get('train_s_per_step', 0) * 1000:.0f} ms/step)"
                    if row.get("train_s_per_step")
                    else ""
                )
            )
        print(
            f"[{trained}/{target} trained, {_hms(elapsed)}, ETA {_hms(eta)}] row {index} {name or role}: "
            f"params={c['params']:,} MFLOPs={c['flops'] / 1e6:.1f} latency={c['latency_ms']:.2f}ms "
            f"({c['latency_ratio']:.2f}x) {what}",
            flush=True,
        )
    size = out.stat().st_size if out.exists() else 0
    print(f"table {out}: {len(rows)} rows, {trained} trained, {size / 1024:.0f} KiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
