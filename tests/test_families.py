"""Two model families in one study: each family's front and hypervolume, and who leads at which cost."""

from __future__ import annotations

import pytest

from search.report.families import cost_ranges, family_fronts, family_hypervolumes, family_lines
from tests.test_verdicts import make_spec


def rec(
    n: int, backbone: str, acc: float, flops: float, params: float = 1e5, lat: float = 1.0, region="in"
) -> dict:
    return {"number": n, "region": region, "config": {"model": {"backbone": backbone}},
            "values": {"accuracy": acc, "flops": flops, "params": params, "latency_ms": lat}}  # fmt: skip


def test_each_family_gets_its_own_front_and_hypervolume() -> None:
    spec = make_spec()
    records = [
        rec(0, "baseline", 0.70, 8e6, params=5e5, lat=0.5),
        rec(1, "baseline", 0.75, 30e6, params=2e6, lat=1.0),
        rec(2, "focalnet", 0.78, 80e6, params=4e5, lat=4.0),
        rec(3, "focalnet", 0.60, 90e6, params=9e5, lat=5.0),  # dominated within its family
        rec(4, "focalnet", 0.90, 10e6, params=1e4, lat=0.1, region="plateau"),  # outside: never a member
    ]
    fronts = family_fronts(records, spec)
    assert {f: sorted(r["number"] for r in rs) for f, rs in fronts.items()} == {
        "baseline": [0, 1],
        "focalnet": [2],
    }
    assert [r["family_pareto"] for r in records] == [True, True, True, False, False]
    hv = family_hypervolumes(records, spec)
    assert set(hv) == {"baseline", "focalnet"} and all(v > 0 for v in hv.values())


def test_cost_ranges_name_the_leader_at_each_cost() -> None:
    records = [
        rec(0, "baseline", 0.70, 8e6),
        rec(1, "baseline", 0.75, 30e6),
        rec(2, "focalnet", 0.72, 20e6),
        rec(3, "focalnet", 0.80, 80e6),
    ]
    ranges = cost_ranges(records, "flops")
    assert [(lo, hi, who) for lo, hi, who, _ in ranges] == [
        (8e6, 20e6, "only baseline"),
        (20e6, 30e6, "focalnet"),
        (30e6, 80e6, "baseline"),
        (80e6, float("inf"), "focalnet"),
    ]
    assert [m for *_, m in ranges] == pytest.approx([0.0, 0.02, 0.03, 0.05])
    text = "\n".join(family_lines(records, make_spec()))
    assert "by MFLOPs: 8-20: only baseline; 20-30: focalnet (+0.020)" in text
    assert cost_ranges(records[:2], "flops") == []  # one family: nothing to compare
    # a trial that changes neither family's best so far does not split a range
    ranges = cost_ranges([*records, rec(4, "focalnet", 0.60, 50e6)], "flops")
    assert [(lo, hi, who) for lo, hi, who, _ in ranges][2] == (30e6, 80e6, "baseline")


# --- the conv extractor as a family -----------------------------------------------------------------


def _families_spec():
    from pathlib import Path

    from search.spec.parse import load_spec

    return load_spec(Path(__file__).parents[1] / "studies" / "families.toml")


def test_conditional_sampling_keeps_each_family_to_its_own_dimensions() -> None:
    import optuna

    from search.spec.space import resolve_config, sample_params

    spec = _families_spec()
    seen = set()
    for sampler in (
        optuna.samplers.RandomSampler(seed=0),
        optuna.samplers.TPESampler(seed=0, n_startup_trials=5),
    ):
        study = optuna.create_study(sampler=sampler)
        for i in range(40):
            trial = study.ask()
            params = sample_params(trial, spec)
            backbone = params["model.backbone"]
            seen.add(backbone)
            model = resolve_config(spec, params)["model"]
            assert model["backbone"] == backbone
            if backbone == "baseline":
                assert not any(k.startswith("arch.") for k in params)
                width, blocks = params["baseline.width"], params["baseline.blocks"]
                assert model["baseline"]["channels"] == [width * 2**j for j in range(blocks)]
                assert -blocks <= params["head.stage"] <= blocks - 1
            else:
                assert not any(k.startswith("baseline.") for k in params)
                assert -params["arch.num_stages"] <= params["head.stage"] <= params["arch.num_stages"] - 1
            study.tell(trial, float(i % 7))
    assert seen == {"focalnet", "baseline"}


def test_every_searched_extractor_builds_counts_flops_and_trains_with_every_head() -> None:
    import torch

    from focalnet import build_model, count_flops, count_params
    from search.spec.space import resolve_config

    spec = _families_spec()
    widths, blocks = (
        spec.space["baseline.width"].choices,
        range(spec.space["baseline.blocks"].low, spec.space["baseline.blocks"].high + 1),
    )
    for w in widths:
        for b in blocks:
            for kind in spec.space["head.kind"].choices:
                for stage in (0, -1):
                    params = {"model.backbone": "baseline", "baseline.width": w, "baseline.blocks": b,
                              "head.kind": kind, "head.stage": stage, "model.coord_channels": True, "train.lr": 4e-3}  # fmt: skip
                    cfg = dict(resolve_config(spec, params)["model"], num_keypoints=4)
                    model = build_model(cfg)
                    assert count_params(model) > 0 and count_flops(model, 64) > 0
                    out = model(torch.rand(2, 3, 64, 64))  # forward and backward: every parameter learns
                    assert out.shape == (2, 4, 2)
                    out.sum().backward()
                    assert all(p.grad is not None for p in model.parameters())


def test_families_spec_validates_and_reports_both_families(tmp_path) -> None:
    spec = _families_spec()
    assert spec.space["model.backbone"].choices == ("focalnet", "baseline")
    assert list(spec.space)[:1] == ["model.backbone"]  # the family is drawn first
    # the report of a two-family study: family column, family fronts, who leads at which cost
    records = [
        rec(0, "baseline", 0.70, 8e6, lat=0.5),
        rec(1, "focalnet", 0.78, 80e6, lat=4.0),
        rec(2, "baseline", 0.74, 60e6, lat=2.0),
    ]
    for r in records:
        r.update(state="COMPLETE", role="search", name=f"t{r['number']}", feasible=True, pareto=False)
    from search.report.plots import pareto_table

    family_fronts(records, spec)
    import csv

    with open(pareto_table(records, tmp_path / "p.csv")) as f:
        rows = {r["number"]: r for r in csv.DictReader(f)}
    assert rows["1"]["family"] == "focalnet" and rows["2"]["family_pareto"] == "true"
    text = "\n".join(family_lines(records, spec))
    assert "baseline  front 2 trials" in text and "focalnet  front 1 trials" in text and "by ms" in text


def test_family_fronts_are_drawn_only_when_both_families_are_searched() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from search.report.plots import _family_fronts

    def drawn(records: list[dict]) -> list[str]:
        fig, ax = plt.subplots()
        _family_fronts(ax, records, "flops")
        labels = [line.get_label() for line in ax.get_lines()]
        plt.close(fig)
        return labels

    searched = [
        {**rec(0, "baseline", 0.70, 8e6), "role": "search"},
        {**rec(1, "baseline", 0.75, 30e6), "role": "search"},
        {**rec(2, "focalnet", 0.78, 80e6), "role": "search"},
    ]
    assert drawn(searched) == ["baseline family's front", "focalnet family's front"]
    # the default study: the extractor only as its fixed reference trials, FocalNets searched
    reference_only = [{**searched[0], "role": "baseline"}, *searched[2:]]
    assert drawn(reference_only) == []


def test_trial_points_are_told_apart_by_family_only_when_both_are_searched() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from search.report.plots import _pareto_axes

    def labels(records: list[dict]) -> list[str]:
        fig, ax = plt.subplots()
        _pareto_axes(ax, records, x_key="flops", x_label="FLOPs", y_label="val")
        out = [c.get_label() for c in ax.collections]
        plt.close(fig)
        return out

    searched = [
        {**rec(0, "baseline", 0.70, 8e6), "role": "search", "state": "COMPLETE"},
        {**rec(1, "focalnet", 0.78, 80e6), "role": "search", "state": "COMPLETE"},
        {**rec(2, "focalnet", 0.60, 40e6), "role": "search", "state": "COMPLETE", "plateau": "never"},
    ]
    got = labels(searched)
    assert "baseline family trials" in got and "focalnet family trials" in got and "trials" not in got
    assert "focalnet family trials (never left the plateau)" in got
    one_family = [{**r, "config": {"model": {"backbone": "focalnet"}}} for r in searched]
    got = labels(one_family)
    assert "trials" in got and not any("family" in label for label in got)


# --- the verdict at matched costs: seed-checked members of both families ----------------------------


def _checked_records(spec) -> list[dict]:
    """Two baseline-family and two FocalNet members (search records) and their fresh-seed runs."""
    acc, costs = spec.objectives.accuracy, spec.objectives.minimize

    def member(n, backbone, val, cost, role="search"):
        r = rec(n, backbone, val, 0.0)
        r["values"] = {"accuracy": val, **{c: cost for c in costs}}
        return r | {"name": f"t{n}", "role": role, "state": "COMPLETE", "val": {acc: val}, "verifies": None}

    def runs(n, tests):
        return [
            {"number": 100 + 10 * n + s, "name": f"verify-t{n}-seed{s}", "role": "verify", "state": "COMPLETE",
             "region": None, "values": None, "config": {}, "verifies": n, "seed": s,
             "val": {acc: t}, "test": {acc: t}}
            for s, t in enumerate(tests, start=1)
        ]  # fmt: skip

    return [
        member(0, "baseline", 0.70, 1.0, role="baseline"),  # the reference
        member(1, "baseline", 0.74, 4.0),
        member(2, "focalnet", 0.72, 2.0),
        member(3, "focalnet", 0.80, 8.0),
        *runs(0, [0.70, 0.71, 0.69]),
        *runs(1, [0.75, 0.74, 0.76]),
        *runs(2, [0.60, 0.62, 0.61]),
        *runs(3, [0.80, 0.82, 0.81]),
    ]


def test_matched_rows_compare_each_familys_best_at_or_below_a_cost() -> None:
    from search.report.families import matched_lines, matched_rows

    spec = make_spec()
    records = _checked_records(spec)
    rows = matched_rows(records, spec)
    cost = spec.objectives.minimize[0]
    first = [r for r in rows if r["cost"] == cost]
    # budgets: the cost of each family's best-by-search-val member (4 for baseline #1, 8 for focalnet #3)
    assert [r["budget"] for r in first] == [4.0, 8.0]
    at4, at8 = first
    assert (at4["a_number"], at4["b_number"]) == (1, 2)  # focalnet's best at cost <= 4 is #2, not #3
    assert at4["diff"] == pytest.approx(0.61 - 0.75) and at4["hi"] < 0
    assert at4["verdict"] == "baseline more accurate beyond seed noise"
    assert (at8["a_number"], at8["b_number"]) == (1, 3)
    assert at8["diff"] == pytest.approx(0.81 - 0.75) and at8["lo"] > 0
    assert at8["verdict"] == "focalnet more accurate beyond seed noise"
    text = "\n".join(matched_lines(records, spec))
    assert "Families at matched costs" in text and "focalnet - baseline" in text
    # chosen by search val, not by the fresh seeds: a member that did better on them is not picked
    for r in records:
        if r.get("verifies") == 2:
            r["test"] = {spec.objectives.accuracy: 0.99}
    assert matched_rows(records, spec)[0]["b_number"] == 2
    # one family without seed-checked members: no comparison at all
    only_base = [r for r in records if r["config"].get("model", {}).get("backbone") != "focalnet"
                 and r.get("verifies") not in (2, 3)]  # fmt: skip
    assert matched_rows(only_base, spec) == []


def test_matched_csv_keeps_a_missing_side_empty(tmp_path) -> None:
    import csv

    from search.report.families import matched_rows, write_matched_csv

    spec = make_spec()
    records = [r for r in _checked_records(spec) if r.get("verifies") != 2 and r["number"] != 2]
    rows = matched_rows(records, spec)
    cheap = rows[0]  # at the baseline's cost (4) focalnet has no seed-checked member that cheap
    assert cheap["b_number"] is None and cheap["verdict"].startswith("only baseline")
    with write_matched_csv(rows, tmp_path / "m.csv").open() as fh:
        out = list(csv.DictReader(fh))
    assert len(out) == len(rows) and out[0]["b_number"] == "" and out[0]["diff"] == ""
    assert out[1]["b_family"] == "focalnet" and float(out[1]["diff"]) == pytest.approx(0.81 - 0.75)
