"""Tests for search.report.plots: PNGs are valid images, the Pareto table is right for hand-made records."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from PIL import Image

from search.report.plots import (
    compute_importances,
    dominates,
    hypervolume_plot,
    importance_plot,
    pareto_plots,
    pareto_table,
)


def _rec(number, role, name, acc, params, lat, flops, *, feasible=True, pareto=False, state="COMPLETE"):
    return {
        "number": number,
        "state": state,
        "role": role,
        "name": name,
        "values": None
        if state != "COMPLETE"
        else {"accuracy": acc, "params": params, "latency_ms": lat, "flops": flops},
        "feasible": feasible,
        "pareto": pareto,
        "params_flat": {"arch.backbone": "baseline" if role == "baseline" else "focalnet", "train.lr": 0.002}
        | ({} if role == "baseline" else {"arch.embed_dim": 16 * (number + 1)}),
    }


RECORDS = [
    _rec(0, "baseline", "baseline", 0.60, 500_000, 2.0, 9_000_000),
    _rec(1, "variant", "tiny", 0.55, 50_000, 0.8, 1_000_000, pareto=True),
    _rec(2, "search", "t002", 0.80, 200_000, 1.5, 5_000_000, pareto=True),  # dominates baseline
    _rec(3, "search", "t003", 0.70, 900_000, 3.0, 20_000_000),  # dominated by 2
    _rec(4, "search", "t004", 0.90, 2_000_000, 4.0, 40_000_000, feasible=False),
    _rec(5, "search", "t005", None, None, None, None, state="PRUNED"),
    _rec(6, "search", "t006", None, None, None, None, state="FAIL"),
    _rec(7, "cell", "ctx-par", 0.85, 300_000, 1.2, 6_000_000, pareto=True),
]


def _valid_png(path: Path) -> None:
    assert path.is_file() and path.stat().st_size > 0
    with Image.open(path) as img:
        img.verify()
    with Image.open(path) as img:
        assert img.format == "PNG" and img.size[0] > 100 and img.size[1] > 100


def test_pareto_plots(tmp_path: Path) -> None:
    paths = pareto_plots(RECORDS, accuracy_name="val pck_0.1", out_dir=tmp_path / "plots")
    assert [p.name for p in paths] == ["pareto_accuracy_vs_params.png", "pareto_accuracy_vs_latency.png"]
    for path in paths:
        _valid_png(path)


def test_pareto_plots_without_completed_trials(tmp_path: Path) -> None:
    for path in pareto_plots(RECORDS[5:7], accuracy_name="acc", out_dir=tmp_path):
        _valid_png(path)


def test_pareto_table(tmp_path: Path) -> None:
    path = pareto_table(RECORDS, tmp_path / "pareto.csv")
    with path.open() as fh:
        reader = csv.DictReader(fh)
        rows = list(reader)
        header = reader.fieldnames
    assert header[:11] == [
        "number", "role", "name", "accuracy", "params", "flops", "latency_ms",
        "latency_ratio", "feasible", "pareto", "dominates_baseline",
    ]  # fmt: skip
    assert {"arch.embed_dim", "arch.backbone", "train.lr"} <= set(header)
    # completed only, accuracy descending
    assert [int(r["number"]) for r in rows] == [4, 7, 2, 3, 0, 1]
    by_number = {int(r["number"]): r for r in rows}
    base = by_number[0]
    assert base["role"] == "baseline" and base["name"] == "baseline"
    assert base["latency_ratio"] == "1" and base["dominates_baseline"] == "false"
    assert base["arch.embed_dim"] == ""
    assert {n for n, r in by_number.items() if r["pareto"] == "true"} == {1, 2, 7}
    assert {n for n, r in by_number.items() if r["dominates_baseline"] == "true"} == {2, 7}
    assert by_number[4]["feasible"] == "false"
    assert float(by_number[2]["latency_ratio"]) == pytest.approx(0.75)


def test_dominates() -> None:
    base, two, three = RECORDS[0], RECORDS[2], RECORDS[3]
    assert dominates(two, base) and not dominates(base, two)
    assert not dominates(three, base) and not dominates(base, base)
    assert dominates(RECORDS[4], base, objectives=["accuracy"])


def test_hypervolume_plot(tmp_path: Path) -> None:
    _valid_png(hypervolume_plot([(0, 0.0), (1, 0.2), (3, 0.35), (7, 0.5)], tmp_path / "hv.png"))
    _valid_png(hypervolume_plot([], tmp_path / "hv_empty.png", x_label="elapsed (s)"))


def test_importance_plot(tmp_path: Path) -> None:
    imp = {"accuracy": {"arch.embed_dim": 0.6, "train.lr": 0.4}, "params": {"arch.embed_dim": 1.0}}
    _valid_png(importance_plot(imp, tmp_path / "imp.png"))
    _valid_png(importance_plot({}, tmp_path / "imp_empty.png"))


def test_compute_importances() -> None:
    optuna = pytest.importorskip("optuna")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        directions=["maximize", "minimize"], sampler=optuna.samplers.RandomSampler(seed=0)
    )
    assert compute_importances(study, ["accuracy", "params"]) == {}  # no trials yet

    def objective(trial):
        x = trial.suggest_float("x", 0, 1)
        y = trial.suggest_int("y", 1, 8)
        return x, y * 10.0

    study.optimize(objective, n_trials=12)
    imp = compute_importances(study, ["accuracy", "params"])
    assert set(imp) == {"accuracy", "params"}
    assert set(imp["params"]) == {"x", "y"}
    assert imp["params"]["y"] > imp["params"]["x"]
