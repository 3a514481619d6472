"""Replay studies against a learning-curve table, on the shipped study's own clock and budget.

``python -m search simulate SPEC --table FILE --seeds N --out DIR`` runs, for every arm (sampler ×
stopping rule × warm start) and seed, a whole study in seconds: the real Optuna sampler (`make_sampler`
with the arm's sampler and seed), the real space code (`sample_params`), the real cost and constraint
handling (`record_costs` → ``trial.set_constraint``), the real warm-start portfolio
(`search.study.warm_start.portfolio`) and the real stopping call (`stop_at_rung`, what the live
objective calls in its ``on_eval``) on an in-memory Optuna storage. Only two things are replaced:
measuring costs and training, by look-ups in the table, and the wall clock, by a simulated clock.

The budget is the study's as it ships: ``n_trials`` (over-budget draws do not count, as live), the
spec's ``timeout_min`` (no trial starts after it; the running ones finish, as live), ``study.jobs``
workers, each at the thread count `search run` gives it. The clock is that study's wall clock: the
table's one-thread seconds (``--clock cpu``: as on an idle machine, `time_scales`) times the measured
step-time factor of that many workers and threads on this machine class (:data:`SPEED`,
``bench/bench_parallel.py``). Per-trial fixed costs the table does not hold (sampling, logging, the
dataset load) are left out.

Which row a search trial replays. The family is every sampled row whose configuration this spec
resolves its parameters to (:func:`family_rows`), so a table recorded on a wider space answers a spec
narrowed inside it. The table's rows are independent uniform draws of the space, so random search is
replayed exactly by drawing a family row uniformly at random (``draws="table"``, the default): the trial
is enqueued with that row's parameters, so the real space code still samples it. TPE draws at random
too until its start-up trials have finished (:func:`random_phase`), and is replayed the same way until
then. A model-based sampler's own points come from the history, so such a trial gets the family row
nearest to its point (``draws="nearest"`` does this for every trial; `search.efficiency.table.param_distance`:
categorical mismatches count 1, numeric differences are normalised to [0, 1]); the table is then a
1-nearest-neighbour surrogate (as Syne Tune does for tabulated benchmarks). Nearest-row mapping is not
uniform over the rows: a row's share of draws is the volume of its Voronoi cell, which on the held-out
table gave its four winners 4.3% of random draws against their 5.7% of the rows (README, "Simulated
studies"). Either way the price is repeats, printed per arm. Fixed and warm-start trials replay the row
recorded with exactly their configuration (nearest otherwise, with its distance).

What a simulated study reports: the hypervolume of the trials inside the region of interest (off the
plateau, val at or above the floor, as the live report judges them), as a share of the table's best
(every row of the family and the baseline inside the region), and whether and when a search trial whose
val beats the reference baseline's completed.
"""

from __future__ import annotations

import csv
import dataclasses
import heapq
import itertools
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.trial import TrialState

from search.efficiency.costs import Costs, Latency, constraint_values
from search.efficiency.pareto import hypervolume
from search.efficiency.stopping import pruner_for, stop_at_rung
from search.efficiency.table import MEASURED, Table, TableError, config_key, measured_parts, param_distance
from search.report.budget import MAX_SKIPPED_PER_TRIAL
from search.report.plots import simulation_plot
from search.spec.space import contains, fixed_trials, resolve_config, sample_params
from search.study.objective import METRIC_KEYS, objective_values, record_costs
from search.study.samplers import is_search_trial, make_sampler
from search.study.warm_start import WARM_ATTR, warm_start_rows
from search.task.train_config import TrainConfig

__all__ = [
    "SAMPLERS",
    "SPEED",
    "Arm",
    "Budget",
    "check_table",
    "schedule",
    "family_rows",
    "time_scales",
    "simulate_study",
    "simulate",
    "random_phase",
    "summarise",
    "DEFAULT_TABLE",
]

SAMPLERS = ("random", "tpe", "nsga2")
#: How a random draw picks its row: uniformly over the family (``table``), or the row nearest to it.
DRAWS = ("table", "nearest")
#: Trial user attr of a search trial enqueued with a uniformly drawn family row's parameters.
DRAWN_ATTR = "table_row_drawn"
DEFAULT_TABLE = Path(__file__).resolve().parents[2] / "bench" / "tables" / "default.jsonl.gz"
#: Step-time factor on the table's idle one-thread seconds, by (workers, threads per worker), on the
#: 2-core machine class the tables were recorded on: median over the FocalNets of `bench/bench_parallel.py`
#: (README, "Workers and threads"; raw: bench/results/bench_parallel.json, load 1.4-1.7). Two one-thread
#: workers each run 4% slower than one alone; one two-thread worker takes 0.64 of the time per step, so two
#: workers train 1.2-1.5x the trials per hour.
SPEED: dict[tuple[int, int], float] = {(1, 1): 1.0, (2, 1): 1.04, (1, 2): 0.64}
#: Cores of the machine class the tables and :data:`SPEED` were measured on.
MACHINE_CORES = 2
#: A table whose family holds fewer trained rows than this cannot stand in for a space.
MIN_FAMILY_ROWS = 8


@dataclasses.dataclass(frozen=True)
class Arm:
    """One way of running the study: sampler, stopping rule (``"none"`` or a rule), warm start on/off."""

    sampler: str
    stopping: str
    warm: bool = False

    @property
    def name(self) -> str:
        return f"{self.sampler}/{self.stopping}" + ("+warm" if self.warm else "")


@dataclasses.dataclass(frozen=True)
class Budget:
    """What one simulated study may spend: trials, the deadline for starting one, workers, clock factor."""

    n_trials: int | None
    timeout_s: float | None
    workers: int = 1
    speed: float = 1.0
    draws: str = "table"


def speed_for(workers: int, threads: int) -> float:
    """:data:`SPEED` for this many workers and threads (1.0, with no measurement, for other layouts)."""
    return SPEED.get((workers, threads), 1.0)


def _clipped(spec: Any, params: dict[str, Any]) -> dict[str, Any]:
    """Numeric values clamped into their dimension's range (a recorded row just outside a narrowed range
    is still the nearest neighbour of the points next to it)."""
    out = dict(params)
    for name, dim in spec.space.items():
        if name in out and dim.kind != "categorical" and isinstance(out[name], int | float):
            out[name] = type(out[name])(min(max(out[name], dim.low), dim.top()))
    return out


def family_rows(spec: Any, table: Table) -> list[dict[str, Any]]:
    """The table's sampled rows that are points of ``spec``'s family: the parameters of this spec's space
    (numeric ones clamped into range) resolve to exactly the row's configuration. The whole sampled part
    when the table was recorded for this space."""
    rows = []
    for r in table.sampled_rows():
        params = {k: v for k, v in r.get("params", {}).items() if k in spec.space}
        if not contains(spec, _clipped(spec, params)):
            continue
        try:
            same = config_key(resolve_config(spec, params)) == config_key(r["config"])
        except Exception:  # a configuration this spec cannot build is not in its family
            continue
        if same:
            rows.append(r)
    return rows


def check_table(spec: Any, table: Table) -> list[dict[str, Any]]:
    """Refuse a table that cannot answer this spec's study (one line naming the first problem); return
    the spec's family of rows (:func:`family_rows`).

    The data, latency protocol, training config and baseline must be the recording's; the space and the
    model may be narrower than the table's, as long as at least :data:`MIN_FAMILY_ROWS` trained rows are
    points of this spec's family.

    Raises:
        TableError: different data/latency/budget/optimiser, too few rows of this spec's family, a rung or
            metric not recorded, a fixed trial without a row, or an untrained row that this spec's
            constraints would train.
    """
    where = f"--table {table.path}"
    recorded, mine = measured_parts(table.header.get("spec") or {}), measured_parts(spec.to_dict())
    for key in MEASURED:
        if key not in ("space", "model") and recorded[key] != mine[key]:
            what = " (budget or optimiser)" if key == "train" else ""
            raise TableError(
                f"{where}: recorded for a different spec: {key} differs{what} "
                f"(table spec {table.header.get('spec_source')})"
            )
    rows = family_rows(spec, table)
    trained = sum(bool(r.get("trained")) for r in rows)
    if trained < MIN_FAMILY_ROWS:
        raise TableError(
            f"{where}: only {trained} trained rows are points of this spec's space (at least "
            f"{MIN_FAMILY_ROWS} needed; table spec {table.header.get('spec_source')})"
        )
    _check_rows(spec, table, rows)
    for fixed in fixed_trials(spec):
        if fixed["role"] != "baseline":
            raise TableError(
                f"{where}: study.variants: the simulator replays the baseline and sampled trials only"
            )
        if table.fixed(resolve_config(spec, {}, overrides=fixed["overrides"])) is None:
            raise TableError(f"{where}: no row for the fixed trial {fixed['name']!r}")
    return rows


def _check_rows(spec: Any, table: Table, rows: list[dict[str, Any]]) -> None:
    where = f"--table {table.path}"
    acc = spec.objectives.accuracy
    for r in rows:
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


def schedule(spec: Any, row: dict[str, Any], t0: float, scale: float) -> list[tuple[float, str, int]]:
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


@dataclasses.dataclass
class _Run:
    """One simulated trial: its live Optuna trial, its table row and where it is in time."""

    trial: optuna.Trial
    role: str
    row: dict[str, Any]
    distance: float
    cost_attrs: dict[str, Any]
    start: float
    events: list[tuple[float, str, int]]  # (time, "skip" | "rung" | "fail" | "end", step), in time order


class _Replay:
    """One study replayed against a table (see the module docstring); :meth:`run` returns its records."""

    def __init__(
        self, spec: Any, table: Table, *, arm: Arm, seed: int, budget: Budget, rows: list[dict[str, Any]],
        scales: dict[int, float], warm: list[tuple[dict[str, Any], dict[str, Any]]],
    ) -> None:  # fmt: skip
        self.spec, self.table, self.rows, self.budget = spec, table, rows, budget
        self.random_until = 0.0  # search trials finished before the sampler stops drawing at random
        self.rng = np.random.default_rng(seed)  # the uniform row draws that replay random draws
        self.by_index = {r["index"]: r for r in rows}
        self.scales = {k: v * budget.speed for k, v in scales.items()}
        arm_spec = dataclasses.replace(spec, sampler=arm.sampler, seed=seed, n_trials=budget.n_trials)
        self.study = optuna.create_study(
            storage=optuna.storages.InMemoryStorage(),
            sampler=make_sampler(arm_spec),
            directions=spec.objectives.directions,
        )
        if budget.draws == "table":
            self.random_until = random_phase(self.study.sampler)
        for fixed in fixed_trials(spec):  # as `search.study.setup.open_study` enqueues them
            attrs = {"role": fixed["role"], "name": fixed["name"], "fixed_overrides": fixed["overrides"]}
            self.study.enqueue_trial({}, user_attrs=attrs)
        for row, params in warm if arm.warm else []:  # as `search.study.warm_start.enqueue_warm_start`
            self.study.enqueue_trial(params, user_attrs={WARM_ATTR: f"row{row['index']}"})
        self.pruner = pruner_for(
            spec, enabled=arm.stopping != "none", rule=None if arm.stopping == "none" else arm.stopping
        )
        names = ["accuracy", *spec.objectives.minimize]
        self.reference = [spec.hypervolume_reference[n] for n in names]
        self.ref_val = reference_val(spec, table)
        self.regions = table.regions(spec.objectives, self.ref_val)
        self.heap: list[tuple[float, int, _Run]] = []
        self.order = itertools.count()
        self.started = self.skipped = 0
        self.points: list[tuple[float, ...]] = []
        self.out: list[dict[str, Any]] = []

    def run(self) -> list[dict[str, Any]]:
        for _ in range(self.budget.workers):
            self._start(0.0)
        while self.heap:
            t, _, run = heapq.heappop(self.heap)
            _, kind, step = run.events.pop(0)
            if kind == "rung" and self._rung(run, t, step):
                heapq.heappush(self.heap, (run.events[0][0], next(self.order), run))
                continue
            if kind == "skip":
                values = objective_values(self.spec, 0.0, run.cost_attrs)
                self._finish(run, t, TrialState.COMPLETE, values, feasible=False)
            elif kind == "fail":
                run.trial.set_user_attr("fail_reason", run.row["failed"]["reason"])
                self._finish(run, t, TrialState.FAIL, None, feasible=False)
            elif kind == "end":
                self._end(run, t, step)
            self._start(t)
        return self.out

    def _can_start(self, t: float) -> bool:
        b = self.budget
        if b.timeout_s is not None and t >= b.timeout_s:
            return False  # no trial starts after the deadline; the running ones finish
        if b.n_trials is None:
            return True
        return self.started < b.n_trials and self.skipped < MAX_SKIPPED_PER_TRIAL * b.n_trials

    def _row(self, trial: optuna.Trial, role: str) -> tuple[dict[str, Any], float]:
        spec = self.spec
        if role == "search":
            params = sample_params(trial, spec)
            if (drawn := trial.user_attrs.get(DRAWN_ATTR)) is not None:
                return self.by_index[drawn], 0.0
            if trial.user_attrs.get(WARM_ATTR) and (row := self.table.fixed(resolve_config(spec, params))):
                return row, 0.0  # a warm-start trial replays the row recorded with its configuration
            return _nearest(self.rows, params, spec)
        config = resolve_config(spec, {}, overrides=trial.user_attrs.get("fixed_overrides") or {})
        return self.table.fixed(config), 0.0  # type: ignore[return-value]  (check_table: it exists)

    def _start(self, t: float) -> None:
        """One worker is free at ``t``: draw (or take from the queue) its next trial, if the budget allows."""
        if self._can_start(t):
            if self._draws_at_random() and not self.study.get_trials(
                deepcopy=False, states=(TrialState.WAITING,)
            ):
                row = self.rows[int(self.rng.integers(len(self.rows)))]
                # a family row recorded just outside a narrowed numeric range stands for the nearest point
                params = _clipped(self.spec, {k: v for k, v in row["params"].items() if k in self.spec.space})
                self.study.enqueue_trial(params, user_attrs={DRAWN_ATTR: row["index"]})
            trial = self.study.ask()
            role = trial.user_attrs.get("role", "search")
            if "role" not in trial.user_attrs:
                trial.set_user_attr("role", role)
            row, distance = self._row(trial, role)
            trial.set_user_attr("table_row", row["index"])
            costs = _costs(self.table, row)
            cost_attrs, violations, feasible = record_costs(
                trial, self.spec, costs, costs.baseline_latency_ms
            )
            scale = self.scales.get(row["index"], 1.0)
            if not feasible and role == "search":  # over budget: skipped before training, not counted
                trial.set_user_attr("skipped", "over budget")
                self.skipped += 1
                events = [(t + scale * float(row.get("cost_s") or 0.0), "skip", 0)]
            else:
                self.started += 1
                events = schedule(self.spec, row, t, scale=scale)
            run = _Run(trial, role, row, distance, cost_attrs, t, events)
            heapq.heappush(self.heap, (events[0][0], next(self.order), run))

    def _draws_at_random(self) -> bool:
        """Whether the sampler's next draw is a random one (so a uniformly drawn row replays it exactly)."""
        if self.random_until in (0.0, math.inf):
            return self.random_until == math.inf
        done = self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
        return sum(is_search_trial(t) for t in done) < self.random_until

    def _rung(self, run: _Run, t: float, step: int) -> bool:
        """Report the rung to the stopping rule; False (and the trial finished) if it stops it."""
        acc = Table.metric_at(run.row, "val", self.spec.objectives.accuracy, step)
        try:
            stop_at_rung(
                self.pruner, self.study, run.trial, step, objective_values(self.spec, acc, run.cost_attrs)
            )
        except optuna.TrialPruned:
            self._finish(run, t, TrialState.PRUNED, None, feasible=False)
            return False
        return True

    def _end(self, run: _Run, t: float, step: int) -> None:
        key = self.spec.objectives.accuracy
        acc = Table.metric_at(run.row, "val", key, step)
        if not math.isfinite(acc):
            run.trial.set_user_attr("fail_reason", f"val {key} is {acc}")
            self._finish(run, t, TrialState.FAIL, None, feasible=False)
            return
        for split in ("val", "test"):
            metrics = {
                k: Table.metric_at(run.row, split, k, step) for k in METRIC_KEYS if k in run.row[split]
            }
            run.trial.set_user_attr(split, metrics)
        feasible = bool(run.trial.user_attrs.get("feasible", True))
        self._finish(run, t, TrialState.COMPLETE, objective_values(self.spec, acc, run.cost_attrs), feasible)

    def _finish(
        self, run: _Run, t: float, state: TrialState, values: tuple[float, ...] | None, feasible: bool
    ) -> None:
        self.study.tell(run.trial, values=values, state=state)
        complete = state == TrialState.COMPLETE and feasible and values is not None
        region = self.regions.get(run.row["index"]) if complete else None
        if complete and region == "in":
            self.points.append(values)  # type: ignore[arg-type]
        hv = (
            hypervolume(np.array(self.points), self.spec.objectives.directions, self.reference)
            if self.points
            else 0.0
        )
        ua = run.trial.user_attrs
        self.out.append({
            "trial": run.trial.number, "role": run.role, "row": run.row["index"], "distance": run.distance,
            "state": state.name, "stop_rung": ua.get("stop_rung"), "start": run.start, "end": t,
            "values": values if complete else None, "hypervolume": hv, "region": region,
            "warm": bool(ua.get(WARM_ATTR)), "skipped": bool(ua.get("skipped")),
            "beats": bool(complete and run.role == "search" and self.ref_val is not None and values[0] > self.ref_val),
            "rungs": {k: v for k, v in ua.items() if k.startswith("rung_")},
        })  # fmt: skip


def random_phase(sampler: optuna.samplers.BaseSampler) -> float:
    """How many finished search trials ``sampler`` (as `make_sampler` builds it) draws at random before its
    model starts: every one for random search, TPE's start-up trials (it counts finished search trials,
    as here), none for the others (NSGA-II's first generation is random too, but it is not counted
    that way)."""
    inner = getattr(sampler, "sampler", sampler)  # SearchTrialsSampler wraps the real one
    if isinstance(inner, optuna.samplers.RandomSampler):
        return math.inf
    if isinstance(inner, optuna.samplers.TPESampler):
        return float(getattr(inner, "_n_startup_trials", 0))  # Optuna keeps it private
    return 0.0


def _nearest(rows: list[dict[str, Any]], params: dict[str, Any], spec: Any) -> tuple[dict[str, Any], float]:
    """The family row closest to ``params``; ties go to the earlier row."""
    best, best_d = rows[0], math.inf
    for r in rows:
        d = param_distance(params, {k: v for k, v in r["params"].items() if k in spec.space}, spec.space)
        if d < best_d:
            best, best_d = r, d
    return best, best_d


def reference_val(spec: Any, table: Table) -> float | None:
    """The reference baseline's val: the best final val among the rows of the spec's baseline trials."""
    vals = []
    for fixed in fixed_trials(spec):
        row = table.fixed(resolve_config(spec, {}, overrides=fixed["overrides"]))
        if fixed["role"] == "baseline" and row is not None and row.get("trained"):
            vals.append(Table.final(row, spec.objectives.accuracy))
    vals = [v for v in vals if math.isfinite(v)]
    return max(vals) if vals else None


def simulate_study(
    spec: Any,
    table: Table,
    *,
    sampler: str,
    stopping: str,
    seed: int,
    workers: int,
    n_trials: int | None,
    clock: str = "wall",
    timeout_s: float | None = None,
    speed: float = 1.0,
    warm: bool = False,
    draws: str = "table",
    portfolio: list[tuple[dict[str, Any], dict[str, Any]]] | None = None,
) -> list[dict[str, Any]]:
    """Run one study against ``table``; return one record per finished trial, in finishing order.

    Args:
        spec: the StudySpec (checked against the table with :func:`check_table`).
        table: the learning-curve table.
        sampler: ``"random"``, ``"tpe"``, ``"nsga2"`` (or any sampler the spec allows).
        stopping: ``"none"`` or a rule of `search.efficiency.stopping.RULES`.
        seed: the sampler seed.
        workers: asynchronous workers (each one trial at a time).
        n_trials: trials that count against the budget (fixed trials included, over-budget draws not).
        clock: ``"wall"`` (the recorded seconds) or ``"cpu"`` (see :func:`time_scales`).
        timeout_s: no trial starts at or after this simulated time (None: no deadline).
        speed: factor on every recorded second (:data:`SPEED` for the workers and threads simulated).
        warm: enqueue the spec's warm-start portfolio (``study.warm_start``) after the fixed trials.
        portfolio: that portfolio, when the caller has it already (:func:`warm_portfolio`; `simulate`
            computes it once for all its studies).
        draws: ``"table"`` (a random draw — random search, TPE's start-up — replays a uniformly drawn family
            row; a model's draw its nearest row) or ``"nearest"`` (every draw replays its nearest row).

    Returns:
        dicts with ``trial``, ``role``, ``row``, ``distance``, ``state``, ``stop_rung``, ``start``,
        ``end``, ``values`` (None unless COMPLETE and feasible), ``hypervolume`` (of every feasible
        COMPLETE trial inside the region of interest so far), ``region``, ``warm``, ``skipped``, ``beats``
        (a search trial whose val beats the reference baseline's) and ``rungs``.
    """
    rows = check_table(spec, table)
    if draws not in DRAWS:
        raise TableError(f"--draws: must be one of {', '.join(DRAWS)}, got {draws!r}")
    warm_rows = (warm_portfolio(spec, table) if portfolio is None else portfolio) if warm else []
    budget = Budget(n_trials=n_trials, timeout_s=timeout_s, workers=workers, speed=speed, draws=draws)
    replay = _Replay(
        spec, table, arm=Arm(sampler, stopping, warm), seed=seed, rows=rows, scales=time_scales(table, clock),
        budget=budget, warm=warm_rows,
    )  # fmt: skip
    return replay.run()


def warm_portfolio(spec: Any, table: Table) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """The spec's warm-start portfolio (from ``study.warm_start``), as a live study on the replayed table's
    data would enqueue it: empty when the warm-start table was recorded on other data."""
    if not spec.warm_start:
        raise TableError("--warm: the spec has no study.warm_start table to choose a portfolio from")
    return warm_start_rows(spec, data_hash=table.header.get("data_hash"))


def table_best(spec: Any, table: Table, rows: list[dict[str, Any]]) -> tuple[float, float]:
    """(hypervolume, best search val) of everything the table holds for this spec: its family rows, the
    spec's baseline rows and the warm-start rows, feasible and inside the region of interest — what a
    study that trained the whole table would reach. The yardsticks of :func:`summarise`."""
    ref_val = reference_val(spec, table)
    regions = table.regions(spec.objectives, ref_val)
    fixed = [table.fixed(resolve_config(spec, {}, overrides=f["overrides"])) for f in fixed_trials(spec)]
    extra = [r for r in table.rows if r.get("role") == "warm"]
    points, best = [], -math.inf
    for r in [*rows, *extra, *(f for f in fixed if f is not None)]:
        if not r.get("trained") or regions.get(r["index"]) != "in":
            continue
        costs = _costs(table, r)
        if any(v > 0 for v in constraint_values(costs, spec.constraints).values()):
            continue
        acc = Table.final(r, spec.objectives.accuracy)
        cost = {"params": costs.params, "flops": costs.flops, "latency_ms": costs.latency.median_ms}
        points.append([acc, *(float(cost[m]) for m in spec.objectives.minimize)])
        if r.get("role") != "baseline":
            best = max(best, acc)
    reference = [spec.hypervolume_reference[n] for n in ["accuracy", *spec.objectives.minimize]]
    hv = hypervolume(np.array(points), spec.objectives.directions, reference) if points else 0.0
    return hv, best


def _per_seed(recs: list[dict[str, Any]], best_hv: float) -> dict[str, Any]:
    """One simulated study in numbers (see :func:`summarise`)."""
    search = [r for r in recs if r["role"] == "search" and not r["skipped"]]
    wins = [r["end"] for r in recs if r["beats"]]
    vals = [r["values"][0] for r in search if r["values"] is not None]
    rows = [r["row"] for r in search]
    return {
        "win_s": min(wins) if wins else None,
        "best_val": max(vals) if vals else math.nan,
        "hv_share": recs[-1]["hypervolume"] / best_hv if recs and best_hv > 0 else math.nan,
        "trained": len(search),
        "skipped": sum(r["skipped"] for r in recs),
        "pruned": sum(r["state"] == "PRUNED" for r in search),
        "repeats": len(rows) - len(set(rows)),
        "end_s": recs[-1]["end"] if recs else 0.0,
    }


def summarise(
    spec: Any,
    table: Table,
    results: dict[Arm, list[list[dict[str, Any]]]],
    *,
    default: Arm,
    rows: list[dict[str, Any]],
    budget_s: float | None,
) -> tuple[list[str], dict[str, dict[str, Any]]]:
    """A table, one line per arm, over its seeds; and the same figures as a dict per arm name.

    Columns: seeds in which a search trial whose val beats the reference baseline's completed (within the
    budget: no trial starts after the deadline), the median time to the first such trial (over the seeds
    that have one); the median best search val and the seeds whose best is within 0.01 of the table's
    best row; the final hypervolume of the region of interest as a share of the table's best (median,
    IQR); median search trials trained and over-budget draws skipped; the share of trained trials
    stopped early and of trials that landed on a row already used; the median study time.
    """
    best_hv, best_val = table_best(spec, table, rows)
    lines = [
        f"{'arm':<24} {'beats baseline':>14} {'first (min)':>11} {'best val':>8} {'~best':>6} "
        f"{'HV share':>8} {'IQR':>11} {'trained':>7} {'skipped':>7} {'pruned':>6} {'repeats':>7} {'min':>5}"
    ]
    figures: dict[str, dict[str, Any]] = {}
    for arm, per_seed in results.items():
        seeds = [_per_seed(recs, best_hv) for recs in per_seed]
        wins = [s["win_s"] / 60 for s in seeds if s["win_s"] is not None]
        near = sum(s["best_val"] >= best_val - 0.01 for s in seeds)
        hv = np.array([s["hv_share"] for s in seeds])
        trained = sum(s["trained"] for s in seeds)
        f = {
            "seeds": len(seeds), "beats": len(wins), "first_win_min": float(np.median(wins)) if wins else None,
            "best_val": float(np.nanmedian([s["best_val"] for s in seeds])), "near_best": near,
            "hv_share": float(np.nanmedian(hv)), "hv_iqr": [float(x) for x in np.nanquantile(hv, [0.25, 0.75])],
            "trained": float(np.median([s["trained"] for s in seeds])),
            "skipped": float(np.median([s["skipped"] for s in seeds])),
            "pruned": sum(s["pruned"] for s in seeds) / max(1, trained),
            "repeats": sum(s["repeats"] for s in seeds) / max(1, trained),
            "minutes": float(np.median([s["end_s"] for s in seeds])) / 60,
        }  # fmt: skip
        figures[arm.name] = f
        name = arm.name + (" (default)" if arm == default else "")
        first = f"{f['first_win_min']:.0f}" if wins else "never"
        lines.append(
            f"{name:<24} {f'{len(wins)}/{len(seeds)}':>14} {first:>11} {f['best_val']:>8.3f} "
            f"{f'{near}/{len(seeds)}':>6} {f['hv_share']:>8.3f} {f['hv_iqr'][0]:>5.3f}-{f['hv_iqr'][1]:<5.3f} "
            f"{f['trained']:>7.0f} {f['skipped']:>7.0f} {f['pruned']:>6.0%} {f['repeats']:>7.0%} {f['minutes']:>5.0f}"
        )
    budget = f"{budget_s / 60:.0f} min" if budget_s else "no deadline"
    lines.append(
        f"table: {sum(bool(r.get('trained')) for r in rows)} trained rows of this space; reference baseline val "
        f"{reference_val(spec, table) or math.nan:.3f}; best row val {best_val:.3f}; budget {budget}"
    )
    return lines, figures


def simulate(
    spec: Any,
    table: Table,
    *,
    seeds: int,
    out_dir: str | Path,
    workers: int | None = None,
    threads: int | None = None,
    n_trials: int | None = None,
    timeout_s: float | None = -1.0,
    samplers: tuple[str, ...] = SAMPLERS,
    stoppings: tuple[str, ...] | None = None,
    warm: tuple[bool, ...] | None = None,
    progress: bool = True,
    clock: str = "wall",
    draws: str = "table",
    clock_factor: float = 1.0,
) -> list[str]:
    """Every arm × seed; writes ``simulate.csv``, ``simulate_trials.csv``, ``simulate.png`` under ``out_dir``.

    Args:
        spec: the StudySpec.
        table: its learning-curve table.
        seeds: studies per arm (sampler seeds ``spec.seed + 0 .. seeds - 1``).
        out_dir: output folder (created).
        workers: asynchronous workers per study (default: the spec's ``study.jobs``).
        threads: torch threads per worker (default: what `search run` gives each of ``workers`` on the
            2-core machine class of the tables, 2 // workers); with ``workers`` it picks :data:`SPEED`.
        n_trials: trials per study (default ``spec.n_trials``).
        timeout_s: deadline for starting trials (default -1: the spec's ``timeout_min``; None: none).
        samplers: samplers to compare.
        stoppings: ``"none"`` and rules (default: none, mo-asha and the spec's rule).
        warm: warm start off/on arms (default: both when the spec names a warm-start table, else off).
        progress: print one line per finished arm.
        clock: ``"wall"`` or ``"cpu"`` (:func:`time_scales`).
        draws: how random draws pick their rows (:func:`simulate_study`).
        clock_factor: a further factor on every recorded second, for a what-if (a training step that
            is measured to be faster or slower than the table's; accuracy stays the table's).

    Returns:
        The summary lines (:func:`summarise`).
    """
    rows = check_table(spec, table)
    time_scales(table, clock)  # refuse a clock the table cannot give before simulating anything
    workers = workers or spec.jobs
    threads = threads or max(1, MACHINE_CORES // workers)
    n_trials = n_trials or spec.n_trials
    timeout_s = spec.timeout_s if timeout_s == -1.0 else timeout_s
    if not n_trials and not timeout_s:
        raise TableError("--n-trials: the spec sets no study.n_trials or timeout_min; give --n-trials")
    es = spec.early_stopping
    rule = es.rule if es.enabled and es.rungs else "none"
    stoppings = stoppings or tuple(dict.fromkeys(("none", "mo-asha", rule)))
    warm = warm if warm is not None else ((False, True) if spec.warm_start else (False,))
    default = Arm(spec.sampler, rule, bool(spec.warm_start))
    if not clock_factor > 0:
        raise TableError(f"--clock-factor: must be > 0, got {clock_factor}")
    speed = speed_for(workers, threads) * clock_factor
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    portfolio = warm_portfolio(spec, table) if True in warm else []  # once, for every warm study
    results: dict[Arm, list[list[dict[str, Any]]]] = {}
    for arm in (Arm(s, r, w) for s in samplers for r in stoppings for w in warm):
        results[arm] = [
            simulate_study(
                spec,
                table,
                sampler=arm.sampler,
                stopping=arm.stopping,
                seed=spec.seed + k,
                workers=workers,
                n_trials=n_trials,
                clock=clock,
                timeout_s=timeout_s,
                speed=speed,
                warm=arm.warm,
                portfolio=portfolio,
                draws=draws,
            )  # fmt: skip
            for k in range(seeds)
        ]
        if progress:
            print(f"simulated {arm.name}: {seeds} studies", flush=True)
    lines, figures = summarise(spec, table, results, default=default, rows=rows, budget_s=timeout_s)
    summary = {
        "workers": workers, "threads": threads, "speed": speed, "n_trials": n_trials, "timeout_s": timeout_s,
        "seeds": seeds, "clock": clock, "draws": draws, "clock_factor": clock_factor, "default": default.name,
        "arms": figures,
    }  # fmt: skip
    _write_outputs(spec, table, results, default, out, rows=rows, budget_s=timeout_s, summary=summary)
    head = f"{workers} worker(s) x {threads} thread(s), clock factor {speed:.2f}, {n_trials} trials; " + (
        "random draws replay uniformly drawn table rows"
        if draws == "table"
        else "every draw replays its nearest row"
    )
    if True in warm and not portfolio:
        head += (
            "; warm start: none (its table was recorded on other data), so the +warm arms equal the others"
        )
    return [head, *lines]


def _write_outputs(
    spec: Any, table: Table, results: dict[Arm, list[list[dict[str, Any]]]], default: Arm, out: Path, *,
    rows: list[dict[str, Any]], budget_s: float | None, summary: dict[str, Any],
) -> None:  # fmt: skip
    """``simulate.csv``, ``simulate_trials.csv``, ``simulate.png`` (HV share over time) and
    ``simulate_summary.json`` under ``out``."""
    best_hv, _ = table_best(spec, table, rows)
    _write_csvs(spec, results, default, out, best_hv)
    curves = {
        arm.name: [
            [(r["end"], r["hypervolume"] / best_hv if best_hv > 0 else 0.0) for r in recs]
            for recs in per_seed
        ]
        for arm, per_seed in results.items()
    }
    simulation_plot(curves, out / "simulate.png", default=default.name, budget_s=budget_s)
    (out / "simulate_summary.json").write_text(json.dumps(summary, indent=1))


def _write_csvs(
    spec: Any, results: dict[Arm, list[list[dict[str, Any]]]], default: Arm, out: Path, best_hv: float
) -> None:
    names = ["accuracy", *spec.objectives.minimize]
    with (
        open(out / "simulate.csv", "w", newline="") as f,
        open(out / "simulate_trials.csv", "w", newline="") as g,
    ):
        w, wt = csv.writer(f), csv.writer(g)
        w.writerow(
            ["arm", "sampler", "stopping", "seed", "sim_time_s", "hypervolume", "is_default", "hv_share"]
        )
        wt.writerow(["arm", "seed", "trial", "role", "row", "distance", "state", "stop_rung", "start_s", "end_s",
                     *names, "region", "warm", "skipped", "beats"])  # fmt: skip
        for arm, per_seed in results.items():
            for k, recs in enumerate(per_seed):
                for r in recs:
                    if r["state"] in ("COMPLETE", "PRUNED"):
                        w.writerow([arm.name, arm.sampler, arm.stopping, spec.seed + k, f"{r['end']:.3f}",
                                    f"{r['hypervolume']:.6g}", int(arm == default),
                                    f"{r['hypervolume'] / best_hv if best_hv > 0 else 0:.4f}"])  # fmt: skip
                    wt.writerow([arm.name, spec.seed + k, r["trial"], r["role"], r["row"], f"{r['distance']:.3f}",
                                 r["state"], r["stop_rung"] or "", f"{r['start']:.3f}", f"{r['end']:.3f}",
                                 *(r["values"] or [""] * len(names)), r["region"] or "", int(r["warm"]),
                                 int(r["skipped"]), int(r["beats"])])  # fmt: skip
