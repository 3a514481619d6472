"""Warm start: the portfolio a table gives, enqueued exactly once, refused for a table of another space."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import optuna
import pytest

from search.efficiency.pareto import pareto_mask
from search.efficiency.table import Table, TableError, read_table
from search.study.warm_start import WARM_ATTR, enqueue_warm_start, other_data, portfolio, warm_start_rows
from tests.test_simulate import DATA, synthetic_table, tiny_spec

optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.fixture
def setup(tmp_path: Path) -> tuple[object, Table]:
    table = synthetic_table(tiny_spec(), tmp_path / "t.jsonl.gz")
    return dataclasses.replace(tiny_spec(), warm_start=str(table.path), warm_start_trials=3), table


def _objectives(spec, table: Table, row: dict) -> list[float]:
    return [Table.final(row, spec.objectives.accuracy), row["costs"]["params"], table.latency_ms(row)]


def test_portfolio_covers_the_tables_front_in_the_region(setup) -> None:
    spec, table = setup
    chosen = portfolio(spec, table)
    assert 1 <= len(chosen) <= 3
    regions = table.regions(spec.objectives)
    inside = [r for r in table.sampled_rows() if regions.get(r["index"]) == "in"]
    assert all(regions[r["index"]] == "in" for r, _ in chosen)
    # every chosen row is on the front of the in-region rows plus the baseline (a dominated row adds no volume)
    base = table.rows[0]
    pts = np.array([_objectives(spec, table, r) for r in [base, *inside]])
    front = {
        r["index"]
        for r, m in zip([base, *inside], pareto_mask(pts, spec.objectives.directions), strict=True)
        if m
    }
    assert {r["index"] for r, _ in chosen} <= front
    # the parameters are the row's own point of the space
    for row, params in chosen:
        assert params == {k: v for k, v in row["params"].items() if k in spec.space}
    # greedy: the first pick is at least as good as any single other row (here: the most volume alone)
    assert len(portfolio(spec, table, size=1)) == 1 and portfolio(spec, table, size=1)[0] == chosen[0]


def test_enqueues_exactly_the_portfolio_once(setup) -> None:
    spec, table = setup
    study = optuna.create_study(directions=spec.objectives.directions)
    study.enqueue_trial({}, user_attrs={"role": "baseline", "name": "baseline"})  # a fixed trial first
    rows = enqueue_warm_start(study, spec)
    expected = portfolio(spec, table)
    assert rows == [r["index"] for r, _ in expected]
    waiting = study.get_trials(states=(optuna.trial.TrialState.WAITING,))
    assert waiting[0].user_attrs["role"] == "baseline"  # the fixed trials stay first
    warm = waiting[1:]
    assert [t.system_attrs["fixed_params"] for t in warm] == [p for _, p in expected]
    assert [t.user_attrs[WARM_ATTR] for t in warm] == [f"t.jsonl.gz#row{r['index']}" for r, _ in expected]
    assert study.user_attrs[WARM_ATTR]["rows"] == rows
    # a resumed study (or a second worker) enqueues nothing more
    assert enqueue_warm_start(study, spec) == []
    assert len(study.get_trials()) == 1 + len(expected)


def test_resumed_study_in_storage_is_not_warm_started_twice(setup, tmp_path: Path) -> None:
    from search.study.setup import open_study

    spec, _ = setup
    spec = dataclasses.replace(spec, source=str(tmp_path / "s.toml"))
    url = f"journal:{tmp_path / 'optuna.journal'}"
    first = open_study(spec, url, create=True)
    n = len(first.get_trials())
    again = open_study(spec, url, create=True)
    assert len(again.get_trials()) == n and n == 1 + len(portfolio(spec, read_table(spec.warm_start)))


def test_table_recorded_on_other_data_enqueues_nothing_and_says_why(setup, capsys) -> None:
    from search.spec.parse import parse_spec

    spec, table = setup
    # the same space on another task: the portfolio would be a bet on the table's task, so none is queued
    raw = dict(spec.raw, data={**spec.raw["data"], "seed": spec.raw["data"].get("seed", 0) + 1})
    other = dataclasses.replace(parse_spec(raw, source="o"), warm_start=str(table.path))
    assert portfolio(other, table)  # the space matches: only the data differs
    assert "recorded on other data" in (other_data(other, table) or "")
    assert warm_start_rows(other) == []
    study = optuna.create_study(directions=spec.objectives.directions)
    assert enqueue_warm_start(study, other) == [] and study.get_trials() == []
    assert "recorded on other data" in study.user_attrs[WARM_ATTR]["skipped"]
    assert study.user_attrs[WARM_ATTR]["rows"] == []
    # the same [data] but a dataset that hashes differently (a data file changed since the recording)
    hashed = read_table(table.path)
    hashed.header["data_hash"] = "a" * 64
    assert other_data(spec, hashed) is None and other_data(spec, hashed, "a" * 64) is None
    assert "hashing to aaaaaaaaaaaa, this study's is bbbbbbbbbbbb" in other_data(spec, hashed, "b" * 64)
    # the same data: the portfolio, and no "skipped"
    assert other_data(spec, table) is None and warm_start_rows(spec) == portfolio(spec, table)
    study = optuna.create_study(directions=spec.objectives.directions)
    assert enqueue_warm_start(study, spec) and "skipped" not in study.user_attrs[WARM_ATTR]


def test_table_of_another_space_is_refused(setup) -> None:
    spec, _ = setup
    other = read_table(DATA / "tiny_table.jsonl.gz")  # recorded for a space of other embed widths and lrs
    with pytest.raises(TableError, match="no trained row is a point of this spec's space"):
        portfolio(spec, other)


def test_spec_keys(tmp_path: Path) -> None:
    from search.spec.parse import SpecError, parse_spec

    raw = dict(tiny_spec().raw)
    spec = parse_spec(
        {**raw, "study": {**raw["study"], "warm_start": "t.jsonl.gz"}}, source=str(tmp_path / "s.toml")
    )
    assert spec.warm_start_path() == str(tmp_path / "t.jsonl.gz") and spec.warm_start_trials == 3
    assert spec.spec_hash != tiny_spec().spec_hash  # it changes which trials run
    with pytest.raises(SpecError, match="study.warm_start_trials: needs study.warm_start"):
        parse_spec({**raw, "study": {**raw["study"], "warm_start_trials": 2}}, source="s.toml")


def test_open_study_on_other_data_says_so_and_queues_only_the_fixed_trials(
    setup, tmp_path: Path, capsys
) -> None:
    from search.study.setup import open_study

    spec, table = setup
    spec = dataclasses.replace(spec, source=str(tmp_path / "s.toml"))
    url = f"journal:{tmp_path / 'optuna.journal'}"
    study = open_study(spec, url, create=True, data_hash="f" * 64)  # the table header has no data_hash
    assert len(study.get_trials()) == 1 + len(portfolio(spec, table))
    hashed = read_table(table.path)
    hashed.header["data_hash"] = "e" * 64
    from search.efficiency.table import write_table

    write_table(tmp_path / "h.jsonl.gz", hashed.header, hashed.rows)
    other = dataclasses.replace(spec, warm_start=str(tmp_path / "h.jsonl.gz"), name="other")
    capsys.readouterr()
    study = open_study(other, url, create=True, data_hash="f" * 64)
    out = capsys.readouterr().out
    assert "warm start: none: h.jsonl.gz was recorded on data hashing to eeeeeeeeeeee" in out
    assert [t.user_attrs.get("role") for t in study.get_trials()] == ["baseline"]
