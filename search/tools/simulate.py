"""Replay studies against a learning-curve table with a simulated clock and asynchronous workers.

``python -m search simulate SPEC --table FILE --seeds N --workers W --out DIR`` runs, for every arm
(sampler × stopping rule) and seed, a whole study in seconds: the real Optuna sampler (`make_sampler`
with the arm's sampler and seed), the real space code (`sample_params`), the real cost and constraint
handling (`record_costs` → ``trial.set_constraint``) and the real stopping call (`stop_at_rung`, what
the live objective calls in its ``on_eval``) on an in-memory Optuna storage. Only two things are
replaced: measuring costs and training, by look-ups in the table, and the wall clock, by a simulated
clock that advances by the table's recorded times.

Mapping a sampled point to a table row: the sampler samples the real space (so TPE and NSGA-II model
the real dimensions, patch size, width, learning rate...), and the trial gets the row nearest to that
point (`search.tools.table.param_distance`: categorical mismatches count 1, numeric differences are
normalised to [0, 1]; identical points are at distance 0). The table is a uniform random sample of the
space, so for random search this is random search over the table; for a model-based sampler the table
is a 1-nearest-neighbour surrogate (what Syne Tune does for tabulated benchmarks with continuous
dimensions). Restricting sampling to a categorical over row ids was rejected: it would throw away the
structure TPE and NSGA-II exploit, so it would compare samplers on a problem they never meet. The price
is repeats: two nearby samples can land on the same row; the share of such trials is printed per arm.

Timing: a trial takes the table's cost-measurement time, then per step its recorded train time, plus
the recorded evaluation time at every step the live run would evaluate (``eval_every``, the rungs, the
end). ``--clock cpu`` scales each row's seconds by its CPU share when it was recorded, for tables
recorded beside other work (`time_scales`). Each of the W workers is one such machine; the spec's ``timeout_min`` is ignored (the budget is
``n_trials``), and so are per-trial fixed costs the table does not hold (sampling, logging).
"""

from __future__ import annotations

import csv
import dataclasses
import heapq
import itertools
import math
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.trial import TrialState

from search.efficiency.costs import Costs, Latency, constraint_values
from search.efficiency.pareto import hypervolume
from search.efficiency.stopping import pruner_for, stop_at_rung
from search.spec.space import fixed_trials, resolve_config, sample_params
from search.study.objective import METRIC_KEYS, objective_values, record_costs
from search.study.samplers import make_sampler
from search.task.train import TrainConfig
from search.tools.table import MEASURED, Table, TableError, measured_parts

__all__ = [
    "SAMPLERS",
    "check_table",
    "time_scales",
    "simulate_study",
    "simulate",
    "summarise",
    "DEFAULT_TABLE",
]

SAMPLERS = ("random", "tpe", "nsga2")
DEFAULT_TABLE = Path(__file__).resolve().parents[2] / "bench" / "tables" / "default.jsonl.gz"


def check_table(spec: Any, table: Table) -> None:
    """Refuse a table that cannot answer this spec's study (one line naming the first problem).

    Raises:
        TableError: different space/model/data/budget, a rung or metric not recorded, a fixed trial
            without a row, or an untrained row that this spec's constraints would train.
    """
    where = f"--table {table.path}"
    recorded, mine = measured_parts(table.header.get("spec") or {}), measured_parts(spec.to_dict())
    for key in MEASURED:
        if recorded[key] != mine[key]:
            what = " (budget or optimiser)" if key == "train" else ""
            raise TableError(
                f"{where}: recorded for a different spec: {key} differs{what} "
                f"(table spec {table.header.get('spec_source')})"
            )
    if not table.sampled_rows():
        raise TableError(f"{where}: no sampled rows")
    acc = spec.objectives.accuracy
    for r in table.rows:
        if not r.get("trained"):
            costs = _costs(table, r)
            if all(v <= 0 for v in constraint_values(costs, spec.constraints).values()):
                raise TableError(
                    f"{where}: row {r['index']} was not trained (over the recording's budget) but is "
                    "within this spec's constraints; loosen nothing the table did not train"
                )
            continue
        if acc not in r["val"]:
            raise TableError(f"{where}: row {r['index']} has no val metric {acc}")
        last = r["steps"][-1] if r["steps"] else 0
        for rung in spec.early_stopping.rungs:
            if rung <= last and rung not in r["steps"] and not r.get("failed"):
                raise TableError(
                    f"{where}: early_stopping.rungs: rung {rung} not recorded (row {r['index']} has steps "
                    f"{r['steps'][:4]}...); rungs must be multiples of the recording's eval_every"
                )
    for fixed in fixed_trials(spec):
        if fixed["role"] != "baseline":
            raise TableError(
                f"{where}: study.variants: the simulator replays the baseline and sampled trials only"
            )
        if table.fixed(resolve_config(spec, {}, overrides=fixed["overrides"])) is None:
            raise TableError(f"{where}: no row for the fixed trial {fixed['name']!r}")


def _costs(table: Table, row: dict[str, Any]) -> Costs:
    c = row["costs"]
    ms = table.latency_ms(row)
    latency = Latency(
        median_ms=ms, iqr_ms=float(c.get("latency_iqr_ms") or 0.0), p10_ms=ms, p90_ms=ms,
        repeats=0, batch_size=1, threads=1, device="table",
    )  # fmt: skip
    return Costs(
        params=int(c["params"]),
        flops=int(c["flops"]),
        latency=latency,
        baseline_latency_ms=table.reference_latency_ms() or c.get("baseline_latency_ms"),
        latency_ratio=c.get("latency_ratio"),
    )


@dataclasses.dataclass
class _Run:
    """One simulated trial: its live Optuna trial, its table row and where it is in time."""

    trial: optuna.Trial
    role: str
    row: dict[str, Any]
    distance: float
    cost_attrs: dict[str, Any]
    start: float
    events: list[tuple[float, str, int]]  # (time, "rung" | "fail" | "end", step), in time order


def time_scales(table: Table, clock: str) -> dict[int, float]:
    """Row index → factor on its recorded seconds: 1 for ``"wall"``; for ``"cpu"`` the row's CPU seconds
    per thread over its wall seconds, i.e. its time on an idle machine when it was recorded on a busy one
    (rows without a training run, the over-budget ones, get the median factor).

    Raises:
        TableError: ``"cpu"`` on a table whose trained rows have no ``cpu_s``.
    """
    if clock == "wall":
        return {r["index"]: 1.0 for r in table.rows}
    if clock != "cpu":
        raise TableError(f"--clock: must be wall or cpu, got {clock!r}")
    threads = max(1, int(table.header.get("threads") or 1))
    factors = {}
    for r in table.rows:
        if r.get("trained"):
            if not r.get("cpu_s") or not r.get("wall_s"):
                raise TableError(
                    f"--clock cpu: row {r['index']} of {table.path} has no cpu_s; use --clock wall"
                )
            factors[r["index"]] = min(1.0, r["cpu_s"] / (r["wall_s"] * threads))
    typical = float(np.median(list(factors.values()))) if factors else 1.0
    return {r["index"]: factors.get(r["index"], typical) for r in table.rows}


def _schedule(spec: Any, row: dict[str, Any], t0: float, scale: float) -> list[tuple[float, str, int]]:
    """Times at which the trial reaches its rungs, fails, or ends, as the live run would (the baseline
    reaches its rungs too: it records its rung values there and is never stopped)."""
    train = row["config"]["train"]
    live = TrainConfig(
        steps=train["steps"],
        eval_every=int(spec.train.get("eval_every", train["eval_every"])),
        eval_steps=tuple(r for r in spec.early_stopping.rungs if r < train["steps"]),
    ).evaluation_steps()
    step_s = scale * (float(row.get("train_s_per_step") or 0.0) + float(row.get("data_s_per_step") or 0.0))
    eval_s = scale * float(row.get("eval_s") or 0.0)
    t = t0 + scale * float(row.get("cost_s") or 0.0)

    def at(step: int, evals_upto: int) -> float:  # training through `step`, evaluations through `evals_upto`
        return t + step * step_s + eval_s * sum(1 for s in live if s <= evals_upto)

    steps = int(train["steps"])
    fail = (row.get("failed") or {}).get("step")
    events = []
    rungs = [r for r in spec.early_stopping.rungs if r < steps and (fail is None or r < fail)]
    events += [(at(r, r), "rung", r) for r in rungs]
    if fail is not None:  # diverged during step `fail`, before its evaluation
        events.append((at(fail, fail - 1), "fail", fail))
    else:  # the last evaluation, then the test split
        events.append((at(steps, steps) + eval_s, "end", steps))
    return events


def simulate_study(
    spec: Any,
    table: Table,
    *,
    sampler: str,
    stopping: str,
    seed: int,
    workers: int,
    n_trials: int,
    clock: str = "wall",
) -> list[dict[str, Any]]:
    """Run one study against ``table``; return one record per finished trial, in finishing order.

    Args:
        spec: the StudySpec (checked against the table with :func:`check_table` beforehand).
        table: the learning-curve table.
        sampler: ``"random"``, ``"tpe"``, ``"nsga2"`` (or any sampler the spec allows).
        stopping: ``"none"`` or a rule of `search.efficiency.stopping.RULES`.
        seed: the sampler seed.
        workers: asynchronous workers (each one trial at a time).
        n_trials: trials in the study, fixed trials included (as ``study.n_trials``).
        clock: ``"wall"`` (the recorded seconds) or ``"cpu"`` (see :func:`time_scales`).

    Returns:
        dicts with ``trial``, ``role``, ``row``, ``distance``, ``state``, ``stop_rung``, ``start``,
        ``end``, ``values`` (None unless COMPLETE and feasible), ``hypervolume`` (of every feasible
        COMPLETE trial so far, against the spec's reference point) and ``rungs`` (its ``rung_<step>``
        user attrs).
    """
    arm_spec = dataclasses.replace(spec, sampler=sampler, seed=seed, n_trials=n_trials)
    study = optuna.create_study(
        storage=optuna.storages.InMemoryStorage(),
        sampler=make_sampler(arm_spec),
        directions=spec.objectives.directions,
    )
    for fixed in fixed_trials(spec):  # as `search.study.workers.open_study` enqueues them
        attrs = {"role": fixed["role"], "name": fixed["name"], "fixed_overrides": fixed["overrides"]}
        study.enqueue_trial({}, user_attrs=attrs)
    pruner = pruner_for(spec, enabled=stopping != "none", rule=None if stopping == "none" else stopping)
    names = ["accuracy", *spec.objectives.minimize]
    reference = [spec.hypervolume_reference[n] for n in names]
    acc_key = spec.objectives.accuracy
    scales = time_scales(table, clock)
    heap: list[tuple[float, int, _Run]] = []
    order = itertools.count()
    started = 0
    points: list[tuple[float, ...]] = []
    out: list[dict[str, Any]] = []

    def start(t: float) -> None:
        nonlocal started
        if started >= n_trials:
            return
        started += 1
        trial = study.ask()
        role = trial.user_attrs.get("role", "search")
        if "role" not in trial.user_attrs:
            trial.set_user_attr("role", role)
        if role == "search":
            row, distance = table.nearest(sample_params(trial, spec), spec.space)
        else:
            row = table.fixed(
                resolve_config(spec, {}, overrides=trial.user_attrs.get("fixed_overrides") or {})
            )
            distance = 0.0
        trial.set_user_attr("table_row", row["index"])
        costs = _costs(table, row)
        cost_attrs, violations, feasible = record_costs(trial, spec, costs, costs.baseline_latency_ms)
        if not feasible and role == "search":  # over budget: skipped without training, as live
            over = ", ".join(k for k, v in violations.items() if v > 0)
            trial.set_user_attr("skipped", f"over budget: {over}")
            events = [(t + scales[row["index"]] * float(row.get("cost_s") or 0.0), "skip", 0)]
        else:
            events = _schedule(spec, row, t, scale=scales[row["index"]])
        run = _Run(trial, role, row, distance, cost_attrs, t, events)
        heapq.heappush(heap, (events[0][0], next(order), run))

    def finish(
        run: _Run, t: float, state: TrialState, values: tuple[float, ...] | None, feasible: bool
    ) -> None:
        study.tell(run.trial, values=values, state=state)
        if state == TrialState.COMPLETE and feasible and values is not None:
            points.append(values)
        hv = hypervolume(np.array(points), spec.objectives.directions, reference) if points else 0.0
        ua = run.trial.user_attrs
        out.append(
            {
                "trial": run.trial.number, "role": run.role, "row": run.row["index"], "distance": run.distance,
                "state": state.name, "stop_rung": ua.get("stop_rung"), "start": run.start, "end": t,
                "values": values if state == TrialState.COMPLETE and feasible else None, "hypervolume": hv,
                "rungs": {k: v for k, v in ua.items() if k.startswith("rung_")},
            }
        )  # fmt: skip

    for _ in range(workers):
        start(0.0)
    while heap:
        t, _, run = heapq.heappop(heap)
        _, kind, step = run.events.pop(0)
        if kind == "skip":
            finish(run, t, TrialState.COMPLETE, objective_values(spec, 0.0, run.cost_attrs), feasible=False)
        elif kind == "fail":
            run.trial.set_user_attr("fail_reason", run.row["failed"]["reason"])
            finish(run, t, TrialState.FAIL, None, feasible=False)
        elif kind == "rung":
            acc = Table.metric_at(run.row, "val", acc_key, step)
            try:
                stop_at_rung(pruner, study, run.trial, step, objective_values(spec, acc, run.cost_attrs))
            except optuna.TrialPruned:
                finish(run, t, TrialState.PRUNED, None, feasible=False)
            else:
                heapq.heappush(heap, (run.events[0][0], next(order), run))
                continue
        else:
            acc = Table.metric_at(run.row, "val", acc_key, step)
            if not math.isfinite(acc):
                run.trial.set_user_attr("fail_reason", f"val {acc_key} is {acc}")
                finish(run, t, TrialState.FAIL, None, feasible=False)
            else:
                for split in ("val", "test"):
                    run.trial.set_user_attr(
                        split,
                        {
                            k: Table.metric_at(run.row, split, k, step)
                            for k in METRIC_KEYS
                            if k in run.row[split]
                        },
                    )
                feasible = bool(run.trial.user_attrs.get("feasible", True))
                finish(run, t, TrialState.COMPLETE, objective_values(spec, acc, run.cost_attrs), feasible)
        start(t)
    return out


_NEVER = 1e9


def _arm(sampler: str, stopping: str) -> str:
    return f"{sampler}/{stopping}"


def _hv_at(records: list[dict[str, Any]], t: float) -> float:
    """Hypervolume of a study at simulated time ``t`` (0 before its first result)."""
    hv = 0.0
    for r in records:
        if r["end"] > t:
            break
        hv = r["hypervolume"]
    return hv


def _quartiles(fracs: list[float]) -> list[str]:
    """Median and quartiles of time fractions; "never" (inf) stays "never" instead of becoming NaN."""
    if not fracs:
        return ["n/a"] * 3
    q = np.quantile(np.minimum(fracs, _NEVER), [0.5, 0.25, 0.75], method="inverted_cdf")  # observed values
    return ["never" if x >= _NEVER / 2 else f"{x:.2f}" for x in q]


def _baseline_hv(spec: Any, recs: list[dict[str, Any]]) -> float:
    """Hypervolume of the baseline's result alone (0 without a feasible baseline)."""
    base = [r["values"] for r in recs if r["role"] == "baseline" and r["values"] is not None]
    if not base:
        return 0.0
    reference = [spec.hypervolume_reference[n] for n in ["accuracy", *spec.objectives.minimize]]
    return hypervolume(np.array(base), spec.objectives.directions, reference)


def summarise(
    spec: Any, results: dict[tuple[str, str], list[list[dict[str, Any]]]], *, default: tuple[str, str]
) -> list[str]:
    """A table, one line per arm, against its sampler's no-stopping arm with the same seed.

    Columns: the median (and IQR) share of the no-stopping arm's time needed to reach 95% of its final
    hypervolume; the same for 95% of what the search adds to the baseline's hypervolume (the baseline
    runs first in every arm and can hold most of the volume alone, which makes the first figure
    trivially small); final hypervolume and the time the whole budget took, relative to no stopping,
    and hypervolume against no stopping at the time this arm finished (what stopping buys in a study
    limited by time); trials stopped; trials that landed on
    a row already used in the same study; and hypervolume against random search without stopping at
    the same simulated time (median ratio, seeds where higher), then the same for the gain over the
    baseline's hypervolume (the ratio the baseline's share does not squash towards 1).

    Args:
        spec: the StudySpec (hypervolume reference).
        results: (sampler, stopping) → per-seed finishing records of :func:`simulate_study`.
        default: the (sampler, stopping) arm the spec's defaults would run.
    """
    lines = [
        f"{'arm':<26} {'95% of HV':>9} {'IQR':>11} {'never':>5}  {'95% of gain':>11} {'IQR':>11} "
        f"{'never':>5}  {'final HV':>8} {'time':>5} {'HV@time':>7} {'pruned':>6} {'repeats':>7}  "
        "vs random/none at equal time: HV, gain",
    ]
    shares = []
    for (sampler, stopping), per_seed in results.items():
        full = results.get((sampler, "none"))
        rand = results.get(("random", "none"))
        fracs, gains, finals, used, ratios, wins, own = [], [], [], [], [], 0, []
        gain_ratios, gain_wins = [], 0
        pruned = repeats = total = 0
        for k, recs in enumerate(per_seed):
            total += len(recs)
            pruned += sum(r["state"] == "PRUNED" for r in recs)
            seen: set[int] = set()
            for r in recs:
                repeats += r["role"] == "search" and r["row"] in seen
                seen.add(r["row"])
            if full is not None and full[k][-1]["hypervolume"] > 0:  # else nothing feasible to reach
                ref, t_full = full[k][-1]["hypervolume"], full[k][-1]["end"]
                base = _baseline_hv(spec, full[k])
                if stopping == "none":
                    shares.append(base / ref)
                for out, bar in ((fracs, 0.95 * ref), (gains, base + 0.95 * (ref - base))):
                    t95 = next((r["end"] for r in recs if r["hypervolume"] >= bar), math.inf)
                    out.append(t95 / t_full if t_full > 0 else math.inf)
                finals.append(recs[-1]["hypervolume"] / ref)
                used.append(recs[-1]["end"] / t_full)
                own.append(recs[-1]["hypervolume"] / max(_hv_at(full[k], recs[-1]["end"]), 1e-300))
            if rand is not None:
                mine, theirs = recs[-1]["hypervolume"], _hv_at(rand[k], recs[-1]["end"])
                wins += mine > theirs
                ratios.append(mine / theirs if theirs > 0 else math.inf)
                base = _baseline_hv(spec, recs)
                gain_wins += mine - base > theirs - base
                gain_ratios.append((mine - base) / (theirs - base) if theirs > base else math.inf)
        f, g = _quartiles(fracs), _quartiles(gains)
        name = _arm(sampler, stopping) + (" (default)" if (sampler, stopping) == default else "")
        lines.append(
            f"{name:<26} {f[0]:>9} {f[1] + '-' + f[2]:>11} {sum(map(math.isinf, fracs)):>5}  "
            f"{g[0]:>11} {g[1] + '-' + g[2]:>11} {sum(map(math.isinf, gains)):>5}  "
            f"{(f'{np.median(finals):.3f}' if finals else 'n/a'):>8} "
            f"{(f'{np.median(used):.2f}' if used else 'n/a'):>5} {(f'{np.median(own):.3f}' if own else 'n/a'):>7} "
            f"{pruned / max(1, total):>6.0%} "
            f"{repeats / max(1, total):>7.0%}  x{np.median(ratios):.3f}, higher in {wins}/{len(per_seed)}; "
            f"x{np.median(gain_ratios):.2f}, higher in {gain_wins}/{len(per_seed)}"
        )
    if shares:
        lines.append(
            f"the baseline alone holds a median {np.median(shares):.0%} of the no-stopping final hypervolume"
        )
    return lines + _head_to_head(spec, results, default)


def _head_to_head(
    spec: Any, results: dict[tuple[str, str], list[list[dict[str, Any]]]], default: tuple[str, str]
) -> list[str]:
    """The default arm against every other arm with the same stopping rule, seed by seed, on the gain
    over the baseline at the earlier of the two finishing times: which sampler to default to."""
    mine = results.get(default)
    if mine is None:
        return []
    lines = []
    for (sampler, stopping), per_seed in results.items():
        if stopping != default[1] or (sampler, stopping) == default:
            continue
        wins, ratios = 0, []
        for a, b in zip(mine, per_seed, strict=True):
            t, base = min(a[-1]["end"], b[-1]["end"]), _baseline_hv(spec, a)
            ga, gb = _hv_at(a, t) - base, _hv_at(b, t) - base
            wins += ga > gb
            ratios.append(ga / gb if gb > 0 else math.inf)
        lines.append(
            f"default {_arm(*default)} vs {_arm(sampler, stopping)} at equal time (gain over the baseline): "
            f"x{np.median(ratios):.2f}, higher in {wins}/{len(mine)}"
        )
    return lines


def simulate(
    spec: Any,
    table: Table,
    *,
    seeds: int,
    workers: int,
    out_dir: str | Path,
    n_trials: int | None = None,
    samplers: tuple[str, ...] = SAMPLERS,
    stoppings: tuple[str, ...] | None = None,
    progress: bool = True,
    clock: str = "wall",
) -> list[str]:
    """Every arm × seed; writes ``simulate.csv``, ``simulate_trials.csv``, ``simulate.png`` under ``out_dir``.

    Args:
        spec: the StudySpec.
        table: its learning-curve table.
        seeds: studies per arm (sampler seeds ``spec.seed + 0 .. seeds - 1``).
        workers: asynchronous workers per study.
        out_dir: output folder (created).
        n_trials: trials per study (default ``spec.n_trials``).
        samplers: samplers to compare.
        stoppings: ``"none"`` and rules (default: none, mo-asha and the spec's default rule).
        progress: print one line per finished arm.
        clock: ``"wall"`` or ``"cpu"`` (:func:`time_scales`).

    Returns:
        The summary lines (:func:`summarise`).
    """
    from search.report.plots import simulation_plot
    from search.spec.schema import DEFAULT_STOPPING_RULE

    check_table(spec, table)
    time_scales(table, clock)  # refuse a clock the table cannot give before simulating anything
    n_trials = n_trials or spec.n_trials
    if not n_trials:
        raise TableError("--n-trials: the spec sets no study.n_trials; give --n-trials")
    stoppings = stoppings or tuple(dict.fromkeys(("none", "mo-asha", DEFAULT_STOPPING_RULE)))
    es = spec.early_stopping
    default = (spec.sampler, es.rule if es.enabled and es.rungs else "none")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    results: dict[tuple[str, str], list[list[dict[str, Any]]]] = {}
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for sampler in samplers:
        for stopping in stoppings:
            results[(sampler, stopping)] = [
                simulate_study(
                    spec,
                    table,
                    sampler=sampler,
                    stopping=stopping,
                    seed=spec.seed + k,
                    workers=workers,
                    n_trials=n_trials,
                    clock=clock,
                )  # fmt: skip
                for k in range(seeds)
            ]
            if progress:
                print(f"simulated {_arm(sampler, stopping)}: {seeds} studies", flush=True)
    names = ["accuracy", *spec.objectives.minimize]
    with (
        open(out / "simulate.csv", "w", newline="") as f,
        open(out / "simulate_trials.csv", "w", newline="") as g,
    ):
        w = csv.writer(f)
        w.writerow(["arm", "sampler", "stopping", "seed", "sim_time_s", "hypervolume", "is_default"])
        wt = csv.writer(g)
        wt.writerow(
            [
                "arm",
                "seed",
                "trial",
                "role",
                "row",
                "distance",
                "state",
                "stop_rung",
                "start_s",
                "end_s",
                *names,
            ]
        )
        for (sampler, stopping), per_seed in results.items():
            is_default = int((sampler, stopping) == default)
            for k, recs in enumerate(per_seed):
                for r in recs:
                    if r["state"] in ("COMPLETE", "PRUNED"):
                        w.writerow([_arm(sampler, stopping), sampler, stopping, spec.seed + k,
                                    f"{r['end']:.3f}", f"{r['hypervolume']:.6g}", is_default])  # fmt: skip
                    wt.writerow([_arm(sampler, stopping), spec.seed + k, r["trial"], r["role"], r["row"],
                                 f"{r['distance']:.3f}", r["state"], r["stop_rung"] or "", f"{r['start']:.3f}",
                                 f"{r['end']:.3f}", *(r["values"] or [""] * len(names))])  # fmt: skip
    curves = {
        _arm(*arm): [[(r["end"], r["hypervolume"]) for r in recs] for recs in per_seed]
        for arm, per_seed in results.items()
    }
    floors = [_baseline_hv(spec, recs) for per_seed in results.values() for recs in per_seed]
    floor = float(np.median(floors)) if floors else None
    simulation_plot(curves, out / "simulate.png", default=_arm(*default), floor=floor)
    return summarise(spec, results, default=default)
