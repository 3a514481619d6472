"""The simulator: table look-ups, determinism, its clock, and parity with the live objective's stopping."""

from __future__ import annotations

import csv
import dataclasses
import gzip
import itertools
import json
import math
import tomllib
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState

from search.efficiency.costs import Costs, Latency
from search.efficiency.table import FORMAT, Table, TableError, config_key, read_table, write_table
from search.spec.parse import parse_spec
from search.spec.space import resolve_config
from search.study import objective as objective_mod
from search.study.objective import Objective
from search.study.samplers import make_sampler
from search.tools.simulate import check_table, simulate_study
from tests.harness_utils import cli

optuna.logging.set_verbosity(optuna.logging.WARNING)
DATA = Path(__file__).parent / "data"
STEPS = (50, 100, 150, 200)


def tiny_spec(**early_stopping) -> object:
    """tests/data/tiny_spec.toml with a finite space (2 x 2 x 2 architectures, fixed learning rate)."""
    raw = tomllib.loads((DATA / "tiny_spec.toml").read_text())
    raw["space"] = {
        "arch.num_stages": {"low": 1, "high": 2},
        "arch.embed_dim": {"choices": [8, 16]},
        "arch.focal_levels": {"low": 1, "high": 2},
    }
    raw["constraints"] = {"max_params": 20_000}
    raw["early_stopping"].update(early_stopping)
    return parse_spec(raw, source="tiny")


def synthetic_table(spec, path: Path) -> Table:
    """Every configuration of the tiny finite space, with made-up costs, curves and times."""
    rng = np.random.default_rng(7)
    rows = []

    def row(index, role, name, params, config, cost):
        acc = np.sort(rng.uniform(0.1, 0.6, size=len(STEPS)))  # rising curves, spread across configs
        curve = {"pck_0.05": list(acc / 2), "pck_0.1": list(acc), "pck_0.2": list(acc * 1.2)}
        curve |= {"mpe_px": list(10 - 5 * acc), "nme": list(1 - acc), "loss": list(1 - acc)}
        rows.append(
            {
                "kind": "row", "index": index, "role": role, "name": name, "params": params, "config": config,
                "costs": {"params": cost, "flops": 10 * cost, "latency_ms": cost / 5000, "latency_iqr_ms": 0.01,
                          "baseline_latency_ms": 1.0, "latency_ratio": cost / 5000},
                "cost_s": 1.5, "feasible": cost <= 20_000, "trained": True, "steps": list(STEPS),
                "val": curve, "test": {k: v for k, v in curve.items() if k != "loss"},
                "train_s_per_step": 0.01 * (1 + cost / 5000), "data_s_per_step": 0.001, "eval_s": 0.5,
                "failed": None, "wall_s": 10.0, "cpu_s": 5.0,
            }
        )  # fmt: skip

    base = resolve_config(spec, {}, overrides={"model": {"backbone": "baseline"}})
    row(0, "baseline", "baseline", {}, base, 5000)
    grid = itertools.product((1, 2), (8, 16), (1, 2))
    for i, (ns, ed, fl) in enumerate(grid, 1):
        params = {"arch.num_stages": ns, "arch.embed_dim": ed, "arch.focal_levels": fl}
        row(i, "search", None, params, resolve_config(spec, params), 2000 * ns * ed // 8 + 500 * fl + 100 * i)
    header = {"kind": "header", "format": FORMAT, "spec": spec.to_dict(), "spec_source": "tiny"}
    write_table(path, header, rows)
    return read_table(path)


@pytest.fixture
def table(tmp_path: Path) -> Table:
    return synthetic_table(tiny_spec(), tmp_path / "t.jsonl.gz")


# --- the table ------------------------------------------------------------------------------------


def test_table_round_trip_and_bad_files(tmp_path: Path, table: Table) -> None:
    again = read_table(table.path)
    assert again.rows == table.rows and again.header == table.header
    assert gzip.decompress(table.path.read_bytes()).count(b"\n") == 1 + len(table.rows)
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(table.header) + "\n{not json\n")
    with pytest.raises(TableError, match=r"bad.jsonl: line 2: not JSON"):
        read_table(bad)
    bad.write_text(json.dumps({**table.header, "format": FORMAT + 1}) + "\n")
    with pytest.raises(TableError, match="format"):
        read_table(bad)
    with pytest.raises(TableError, match="no such table"):
        read_table(tmp_path / "missing.jsonl.gz")


def test_lookup_returns_recorded_metrics_at_the_step(table: Table) -> None:
    spec = tiny_spec()
    row, d = table.nearest({"arch.num_stages": 2, "arch.embed_dim": 8, "arch.focal_levels": 1}, spec.space)
    assert d == 0.0 and row["params"]["arch.embed_dim"] == 8 and row["params"]["arch.num_stages"] == 2
    for i, step in enumerate(STEPS):
        assert Table.metric_at(row, "val", "pck_0.1", step) == row["val"]["pck_0.1"][i]
        assert Table.metric_at(row, "test", "nme", step) == row["test"]["nme"][i]
    with pytest.raises(TableError, match="step 75 not recorded"):
        Table.metric_at(row, "val", "pck_0.1", 75)
    # A point between rows goes to the nearest one (one categorical mismatch beats two).
    near, d = table.nearest({"arch.num_stages": 1, "arch.embed_dim": 16, "arch.focal_levels": 2}, spec.space)
    assert d == 0.0
    base = table.fixed(resolve_config(spec, {}, overrides={"model": {"backbone": "baseline"}}))
    assert base is not None and base["role"] == "baseline"


def test_committed_smoke_table_answers_its_spec() -> None:
    from search.spec.parse import load_spec

    spec = load_spec(DATA / "tiny_spec.toml")
    table = read_table(DATA / "tiny_table.jsonl.gz")
    check_table(spec, table)
    h = table.header
    assert h["spec_hash"] == spec.spec_hash and h["data_hash"] and h["code_version"] and h["machine"]["cpu"]
    assert sum(r["trained"] for r in table.rows) >= 12 and table.rows[0]["role"] == "baseline"
    for r in table.rows:
        if r["trained"]:
            assert r["steps"] == list(range(50, 201, 50)) and len(r["test"]["pck_0.1"]) == 4
    assert (DATA / "tiny_table.jsonl.gz").stat().st_size <= 100_000


def test_bundled_table_answers_the_default_spec() -> None:
    """`simulate`'s default table still answers studies/default.toml (a space outside it would not): at least
    8 trained rows of the narrowed space (all it has), every baseline learning rate, the plateau level."""
    from search.spec.parse import load_spec
    from search.tools.simulate import DEFAULT_TABLE

    table = read_table(DEFAULT_TABLE)
    rows = check_table(load_spec(DATA.parents[1] / "studies" / "default.toml"), table)
    trained = [r for r in rows if r["trained"]]
    assert len(trained) >= 8 and all(r["steps"][-1] == 1000 for r in trained)
    assert sum(r["trained"] for r in table.rows) >= 96 and table.constant_val("pck_0.05") is not None
    assert DEFAULT_TABLE.stat().st_size <= 5_000_000


def test_held_out_table_answers_its_spec_with_the_warm_start_rows(tmp_path: Path) -> None:
    """The held-out task (bench/tables/heldout.jsonl.gz): trained sampled rows of the default space at the
    full budget (at least the 48 the README's "Held out" reads), the baseline sweep, and a row for every
    configuration the warm start enqueues."""
    from search.spec.parse import load_spec
    from search.study.warm_start import warm_start_rows

    spec = load_spec(DATA.parents[1] / "bench" / "tables" / "heldout_spec.toml")
    default = load_spec(DATA.parents[1] / "studies" / "default.toml")
    table = read_table(DATA.parents[1] / "bench" / "tables" / "heldout.jsonl.gz")
    rows = check_table(spec, table)
    assert rows == table.sampled_rows() and sum(r["trained"] for r in rows) >= 48
    baselines = [r for r in table.rows if r["role"] == "baseline" and r.get("trained")]
    assert sorted(r["config"]["train"]["lr"] for r in baselines) == sorted(spec.baseline_lrs)
    assert table.header["spec_source"].endswith("heldout_spec.toml") and table.constant_val("pck_0.05")
    # the same study as the default one but for its data: space, model, train, latency, budget, warm start
    for part in ("space", "model", "train", "latency", "constraints", "objectives", "early_stopping"):
        assert spec.to_dict()[part] == default.to_dict()[part], part
    assert (spec.n_trials, spec.timeout_s, spec.jobs, spec.sampler) == (
        default.n_trials,
        default.timeout_s,
        default.jobs,
        default.sampler,
    )
    assert Path(spec.warm_start_path()).resolve() == Path(default.warm_start_path()).resolve()
    # the default table was recorded on the default task's data, so a held-out study enqueues no portfolio;
    # the rows that portfolio would train are in the table (role "warm"), for the README's comparison
    assert warm_start_rows(spec) == [] and warm_start_rows(default)
    for _, params in warm_start_rows(default):
        assert table.fixed(resolve_config(spec, params)) is not None
    from search.tools.simulate import simulate

    kw = {"seeds": 1, "samplers": ("random",), "stoppings": ("none",), "progress": False, "clock": "cpu"}
    head = simulate(spec, table, out_dir=tmp_path, **kw)[0]
    assert "warm start: none (its table was recorded on other data)" in head


def test_latency_is_put_on_the_reference_baselines_scale(tmp_path: Path, table: Table) -> None:
    # Half the rows re-timed in a later, faster session: absolute latencies drop by 30%, ratios to the
    # baseline timed in that session do not. The simulator must see the same latencies as before.
    rows = []
    for r in table.rows:
        c = dict(r["costs"])
        if r["index"] % 2:
            c["latency_ms"], c["baseline_latency_ms"] = 0.7 * c["latency_ms"], 0.7 * c["baseline_latency_ms"]
        rows.append({**r, "costs": c})
    write_table(tmp_path / "drift.jsonl", table.header, rows)
    drift = read_table(tmp_path / "drift.jsonl")
    assert drift.reference_latency_ms() == table.rows[0]["costs"]["latency_ms"]
    for a, b in zip(table.rows, drift.rows, strict=True):
        assert drift.latency_ms(b) == pytest.approx(a["costs"]["latency_ms"])
        assert b["costs"]["latency_ms"] != a["costs"]["latency_ms"] or not a["index"] % 2
    kw = {"sampler": "tpe", "stopping": "hv-asha", "workers": 2, "n_trials": 10, "seed": 1}
    assert simulate_study(tiny_spec(), drift, **kw) == simulate_study(tiny_spec(), table, **kw)


def test_table_for_another_spec_is_refused(table: Table) -> None:
    spec = tiny_spec()
    raw = dict(spec.raw, train={**spec.raw["train"], "steps": 400})
    with pytest.raises(TableError, match="train differs"):
        check_table(parse_spec(raw, source="x"), table)
    raw = dict(spec.raw, early_stopping={**spec.raw["early_stopping"], "rungs": [75]})
    with pytest.raises(TableError, match="rung 75 not recorded"):
        check_table(parse_spec(raw, source="x"), table)


# --- the simulator --------------------------------------------------------------------------------


def test_simulator_is_deterministic_per_seed(table: Table) -> None:
    spec = tiny_spec()
    kw = {"sampler": "tpe", "stopping": "cost-asha", "workers": 2, "n_trials": 12}
    a = simulate_study(spec, table, seed=3, **kw)
    b = simulate_study(spec, table, seed=3, **kw)
    c = simulate_study(spec, table, seed=4, **kw)
    assert a == b
    assert [r["row"] for r in a] != [r["row"] for r in c]
    # over-budget draws are skipped before training and do not count against n_trials
    assert sum(not r["skipped"] for r in a) == 12
    assert all(x["end"] <= y["end"] for x, y in itertools.pairwise(a))
    hv = [r["hypervolume"] for r in a]
    assert hv == sorted(hv) and hv[-1] > 0


@pytest.mark.parametrize(("clock", "scale"), [("wall", 1.0), ("cpu", 0.5)])
def test_clock_follows_the_recorded_times(table: Table, clock: str, scale: float) -> None:
    spec = tiny_spec(enabled=False)
    kw = {"sampler": "random", "stopping": "none", "seed": 0, "workers": 1, "n_trials": 4}
    recs = simulate_study(spec, table, clock=clock, **kw)
    by_index = {r["index"]: r for r in table.rows}
    t = 0.0
    for rec in recs:  # one worker: trials run back to back
        row = by_index[rec["row"]]
        assert rec["start"] == pytest.approx(t)
        if rec["state"] == "COMPLETE" and rec["values"] is None:  # over budget: costs only
            expected = row["cost_s"]
        else:  # costs, 200 steps, evaluations at 50/100/150/200, then the test split
            expected = row["cost_s"] + 200 * (row["train_s_per_step"] + row["data_s_per_step"]) + 5 * 0.5
        # cpu clock: each row ran with 5 CPU seconds in 10 wall seconds, so it counts half
        assert rec["end"] - rec["start"] == pytest.approx(scale * expected)
        t = rec["end"]


def test_cpu_clock_needs_cpu_seconds(tmp_path: Path, table: Table) -> None:
    rows = [{k: v for k, v in r.items() if k != "cpu_s"} for r in table.rows]
    write_table(tmp_path / "old.jsonl", table.header, rows)
    with pytest.raises(TableError, match="no cpu_s"):
        simulate_study(tiny_spec(), read_table(tmp_path / "old.jsonl"), sampler="random", stopping="none",
                       seed=0, workers=1, n_trials=2, clock="cpu")  # fmt: skip


def _live_study(spec, table: Table, monkeypatch: pytest.MonkeyPatch, n_trials: int) -> optuna.Study:
    """The live path: `Objective` under `study.optimize`, with costs and training read from the table."""
    by_model = {json.dumps(r["config"]["model"], sort_keys=True): r for r in table.rows}

    def lookup(model: dict) -> dict:
        return by_model[json.dumps(model, sort_keys=True)]

    def fake_costs(model, *, latency_spec=None, baseline_ms=None, baseline=None):
        c = lookup(model)["costs"]
        lat = Latency(
            c["latency_ms"], c["latency_iqr_ms"], c["latency_ms"], c["latency_ms"], 0, 1, 1, "table"
        )
        return Costs(c["params"], c["flops"], lat, c["baseline_latency_ms"], c["latency_ratio"])

    def fake_train(model, train_cfg, data, *, callback=None, progress=True, desc=""):
        row = lookup(model)
        history = []
        for i, step in enumerate(row["steps"]):
            val = {k: v[i] for k, v in row["val"].items()}
            history.append((step, val))
            if callback is not None:
                callback(step, dict(val))
        test = {k: v[-1] for k, v in row["test"].items()}
        return SimpleNamespace(val=history[-1][1], test=test, history=history, steps_done=200,
                               train_s=0.0, data_s=0.0, eval_s=0.0)  # fmt: skip

    monkeypatch.setattr(objective_mod, "measure_costs", fake_costs)
    monkeypatch.setattr(objective_mod, "train", fake_train)
    study = optuna.create_study(sampler=make_sampler(dataclasses.replace(spec, n_trials=n_trials)),
                                directions=spec.objectives.directions)  # fmt: skip
    study.enqueue_trial({}, user_attrs={"role": "baseline", "name": "baseline",
                                        "fixed_overrides": {"model": {"backbone": "baseline"}}})  # fmt: skip
    data = SimpleNamespace(data_hash="synthetic", num_keypoints=16)
    objective = Objective(spec=spec, data=data, tracker=None, threads=1, progress=False)
    # The table replaces training, so there are no splits to fit a constant predictor on: a level of 0
    # (every recorded run "leaves" it) keeps the plateau bookkeeping out of this comparison.
    objective._constant = {"val": {spec.objectives.accuracy: 0.0}, "margin": 0.0}
    study.optimize(objective, n_trials=n_trials)
    return study


@pytest.mark.parametrize("rule", ["mo-asha", "cost-asha"])
def test_simulated_study_records_what_the_live_path_records(
    table: Table, monkeypatch: pytest.MonkeyPatch, rule: str
) -> None:
    spec = tiny_spec(rule=rule, eta=2)
    n = 12
    live = _live_study(spec, table, monkeypatch, n).get_trials()
    # draws="nearest": the sampler's own points, which this table (every point of the space) holds exactly
    sim = simulate_study(
        spec,
        table,
        sampler=spec.sampler,
        stopping=rule,
        seed=spec.seed,
        workers=1,
        n_trials=n,
        draws="nearest",
    )[: len(live)]  # live `optimize(n_trials)` counts over-budget draws; the study's budget does not
    assert [r["state"] for r in sim] == [t.state.name for t in live]
    assert any(t.state == TrialState.PRUNED for t in live)  # the comparison covers a stopped trial
    for rec, t in zip(sim, live, strict=True):
        assert rec["trial"] == t.number
        assert rec["row"] == next(
            r["index"] for r in table.rows if config_key(r["config"]) == config_key(t.user_attrs["config"])
        )
        assert rec["stop_rung"] == t.user_attrs.get("stop_rung")
        live_rungs = {k: v for k, v in t.user_attrs.items() if k.startswith("rung_")}
        assert live_rungs == rec["rungs"]
        if t.state == TrialState.COMPLETE and t.user_attrs["feasible"]:
            assert tuple(rec["values"]) == pytest.approx(tuple(t.values))


def test_random_search_draws_each_table_row_equally_often(table: Table) -> None:
    """A wider space than the table: widths 24 and 32 were never recorded. Nearest-row mapping hands those
    draws to the earlier (width-8) rows, so they replay 3/4 of the time; uniform table draws give every
    row the same share, as random search over a uniformly sampled table does."""
    spec = tiny_spec(enabled=False)
    space = {**spec.raw["space"], "arch.embed_dim": {"choices": [8, 16, 24, 32]}}
    wide = parse_spec(dict(spec.raw, space=space), source="wide")
    width = {r["index"]: r["params"].get("arch.embed_dim") for r in table.rows}

    def replayed(draws: str) -> list[int]:
        kw = {"sampler": "random", "stopping": "none", "workers": 1, "n_trials": 9, "draws": draws}
        return [
            r["row"]
            for k in range(30)
            for r in simulate_study(wide, table, seed=k, **kw)
            if r["role"] == "search"
        ]

    uniform, nearest = replayed("table"), replayed("nearest")
    assert len(uniform) == len(nearest) == 30 * 8
    counts = np.bincount(uniform, minlength=9)[1:]
    assert counts.min() >= 15 and counts.max() <= 45  # 30 expected per row
    assert abs(np.mean([width[i] == 8 for i in uniform]) - 0.5) < 0.08
    assert np.mean([width[i] == 8 for i in nearest]) > 0.65
    # TPE draws at random until its start-up trials finish: those replay uniform rows (distance 0, though
    # half of the space's points are widths the table lacks); with draws="nearest" they do not
    from search.study.samplers import make_sampler
    from search.tools.simulate import random_phase

    tpe = dataclasses.replace(wide, sampler="tpe", n_trials=9)
    assert random_phase(make_sampler(tpe)) == 4
    assert random_phase(make_sampler(dataclasses.replace(wide, sampler="random"))) == math.inf
    kw = {"sampler": "tpe", "stopping": "none", "workers": 1, "n_trials": 9}

    def first_distances(draws: str) -> list[float]:
        return [
            d
            for k in range(5)
            for d in [
                r["distance"]
                for r in simulate_study(wide, table, draws=draws, seed=k, **kw)
                if r["role"] == "search"
            ][:4]
        ]

    assert first_distances("table") == [0.0] * 20 and max(first_distances("nearest")) > 0
    with pytest.raises(TableError, match="--draws: must be one of table, nearest"):
        simulate_study(wide, table, draws="voronoi", seed=0, **kw)


def test_no_trial_starts_after_the_timeout(table: Table) -> None:
    spec = tiny_spec()
    kw = {"sampler": "random", "stopping": "none", "seed": 0, "workers": 2, "n_trials": 40}
    free = simulate_study(spec, table, **kw)
    deadline = free[len(free) // 3]["end"]
    cut = simulate_study(spec, table, timeout_s=deadline, **kw)
    assert all(r["start"] < deadline for r in cut)
    assert max(r["end"] for r in cut) > deadline  # the trials running at the deadline finish
    assert (
        len(cut) < len(free)
        and cut == free[: len(cut)]
        or [r["trial"] for r in cut] == [r["trial"] for r in free[: len(cut)]]
    )


def test_over_budget_draws_are_skipped_and_not_counted(table: Table) -> None:
    spec = dataclasses.replace(
        tiny_spec(), constraints=dataclasses.replace(tiny_spec().constraints, max_params=4000)
    )
    recs = simulate_study(spec, table, sampler="random", stopping="none", seed=0, workers=1, n_trials=6)
    skipped = [r for r in recs if r["skipped"]]
    assert skipped and sum(not r["skipped"] for r in recs) == 6
    by_index = {r["index"]: r for r in table.rows}
    for r in skipped:  # costs measured, nothing trained
        assert r["end"] - r["start"] == pytest.approx(by_index[r["row"]]["cost_s"]) and r["values"] is None


def test_clock_factor_scales_every_second(table: Table) -> None:
    spec = tiny_spec(enabled=False)
    kw = {"sampler": "random", "stopping": "none", "seed": 0, "workers": 1, "n_trials": 5}
    one, slow = simulate_study(spec, table, **kw), simulate_study(spec, table, speed=1.5, **kw)
    assert [r["row"] for r in one] == [r["row"] for r in slow]
    assert [r["end"] * 1.5 for r in one] == pytest.approx([r["end"] for r in slow])


def test_summary_counts_the_seeds_that_beat_the_baseline(table: Table) -> None:
    from search.tools.simulate import Arm, reference_val, summarise

    spec = tiny_spec()
    ref = reference_val(spec, table)
    rows = check_table(spec, table)

    def rec(end: float, acc: float, role: str = "search", beats: bool | None = None) -> dict:
        return {"end": end, "role": role, "skipped": False, "state": "COMPLETE", "row": int(end),
                "values": (acc, 1.0, 1.0), "hypervolume": 0.0, "beats": acc > ref if beats is None else beats}  # fmt: skip

    arm = Arm("random", "none")
    results = {
        arm: [
            [
                rec(1, ref, role="baseline", beats=False),
                rec(60, ref - 0.1),
                rec(120, ref + 0.05),
            ],  # wins at 2 min
            [
                rec(1, ref, role="baseline", beats=False),
                rec(240, ref + 0.01),
                rec(300, ref + 0.2),
            ],  # at 4 min
            [rec(1, ref, role="baseline", beats=False), rec(60, ref - 0.2)],  # never
        ]
    }
    lines, figures = summarise(spec, table, results, default=arm, rows=rows, budget_s=600.0)
    f = figures["random/none"]
    assert f["beats"] == 2 and f["seeds"] == 3 and f["first_win_min"] == pytest.approx(3.0)
    assert f["trained"] == 2 and "2/3" in lines[1] and "budget 10 min" in lines[-1]


def test_cli_simulate_writes_csv_and_plot(tmp_path: Path) -> None:
    out = tmp_path / "sim"
    r = cli(["simulate", str(DATA / "tiny_spec.toml"), "--table", str(DATA / "tiny_table.jsonl.gz"),
             "--seeds", "2", "--workers", "2", "--out", str(out), "--samplers", "random,tpe"], cwd=tmp_path)  # fmt: skip
    assert r.returncode == 0, r.stderr
    with open(out / "simulate.csv") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == [
        "arm",
        "sampler",
        "stopping",
        "seed",
        "sim_time_s",
        "hypervolume",
        "is_default",
        "hv_share",
    ]
    arms = {(x["sampler"], x["stopping"]) for x in rows}
    assert {s for _, s in arms} >= {"none", "mo-asha"} and {s for s, _ in arms} == {"random", "tpe"}
    assert {x["arm"] for x in rows if x["is_default"] == "1"} == {"tpe/" + tiny_spec().early_stopping.rule}
    assert all(0.0 <= float(x["hv_share"]) <= 1.0 + 1e-9 for x in rows)
    with open(out / "simulate_trials.csv") as f:
        trials = list(csv.DictReader(f))
    assert list(trials[0])[:10] == [
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
    ]
    assert (out / "simulate.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    lines = r.stdout.splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("arm "))
    assert "beats baseline" in lines[head] and "HV share" in lines[head]
    assert sorted(line.split()[0] for line in lines[head + 1 : head + 1 + len(arms)]) == sorted(
        f"{a}/{b}" for a, b in arms
    )
    assert json.loads((out / "simulate_summary.json").read_text())["workers"] == 2


def test_cli_simulate_bad_table_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "t.jsonl"
    bad.write_text("{}\n")
    r = cli(
        ["simulate", str(DATA / "tiny_spec.toml"), "--table", str(bad), "--out", str(tmp_path)], cwd=tmp_path
    )
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "t.jsonl: line 1" in r.stderr
    r = cli(
        ["simulate", "studies/default.toml", "--table", str(DATA / "tiny_table.jsonl.gz")],
        cwd=Path(__file__).parents[1],
    )
    assert r.returncode == 2 and "recorded for a different spec" in r.stderr


def test_clock_factor_scales_every_recorded_second(tmp_path: Path, table: Table) -> None:
    from search.tools.simulate import simulate

    spec = tiny_spec(enabled=False)
    kw = {"seeds": 1, "workers": 1, "threads": 1, "samplers": ("random",), "stoppings": ("none",),
          "timeout_s": None, "n_trials": 6, "progress": False}  # fmt: skip
    ends = {}
    for factor in (1.0, 0.5):
        simulate(spec, table, out_dir=tmp_path / str(factor), clock_factor=factor, **kw)
        summary = json.loads((tmp_path / str(factor) / "simulate_summary.json").read_text())
        assert summary["clock_factor"] == factor and summary["speed"] == factor  # SPEED[(1, 1)] is 1
        with open(tmp_path / str(factor) / "simulate_trials.csv") as f:
            ends[factor] = [float(r["end_s"]) for r in csv.DictReader(f)]
    assert ends[0.5] == pytest.approx([e / 2 for e in ends[1.0]]) and ends[1.0][-1] > 0
    with pytest.raises(TableError, match="--clock-factor: must be > 0"):
        simulate(spec, table, out_dir=tmp_path / "bad", clock_factor=0.0, **kw)
