"""Tests for search.efficiency.costs: params, FLOPs, latency protocol and constraint values (tiny models)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from focalnet import build_model
from search.efficiency.costs import (
    Costs,
    Latency,
    LatencyProtocol,
    constraint_values,
    measure_costs,
    measure_latency,
    measure_latency_pair,
)

FAST = {"warmup": 1, "repeats": 3, "min_repeat_ms": 0.5}
TINY_FOCAL = {
    "backbone": "focalnet",
    "num_keypoints": 4,
    "focalnet": {"img_size": 32, "embed_dim": 8, "depths": [1, 1], "patch_size": 4},
    "head_hidden": [16],
}


def baseline_cfg(img_size: int) -> dict:
    return {
        "backbone": "baseline",
        "num_keypoints": 4,
        "baseline": {"img_size": img_size, "channels": [4, 8, 8]},
    }


def test_params_equal_numel_sum_and_flops_positive() -> None:
    costs = measure_costs(TINY_FOCAL, latency_spec=FAST, baseline_ms=None)
    torch.manual_seed(0)
    model = build_model(TINY_FOCAL)
    assert costs.params == sum(p.numel() for p in model.parameters())
    assert costs.flops > 0
    assert costs.latency_ratio is None and costs.baseline_latency_ms is None
    assert costs.to_dict()["latency_ms"] == costs.latency.median_ms


def test_flops_scale_with_image_area_for_conv_baseline() -> None:
    f32 = measure_costs(baseline_cfg(32), latency_spec=FAST).flops
    f64 = measure_costs(baseline_cfg(64), latency_spec=FAST).flops
    # Convs scale exactly with area; the linear head grows too (4x features), so also ~4x.
    assert 3.5 < f64 / f32 < 4.5


def test_latency_struct_and_threads_restored() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    model.train()
    before = torch.get_num_threads()
    wanted = 2 if before == 1 else 1
    lat = measure_latency(model, img_size=16, threads=wanted, warmup=1, repeats=3, min_repeat_ms=0.5)
    assert torch.get_num_threads() == before
    assert model.training  # mode restored
    assert isinstance(lat, Latency)
    assert lat.p10_ms <= lat.median_ms <= lat.p90_ms
    assert lat.median_ms > 0 and lat.iqr_ms >= 0
    assert (lat.repeats, lat.batch_size, lat.threads, lat.device) == (3, 1, wanted, "cpu")
    assert lat.inner >= 1


def test_threads_restored_after_error() -> None:
    before = torch.get_num_threads()

    class Boom(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        measure_latency(Boom(), img_size=8, threads=1 if before != 1 else 2, warmup=1, repeats=1)
    assert torch.get_num_threads() == before


def test_ratio_and_spec_object() -> None:
    spec = SimpleNamespace(
        device="cpu", batch_size=2, threads=1, warmup=1, repeats=3
    )  # like spec.LatencySpec
    costs = measure_costs(baseline_cfg(32), latency_spec=spec, baseline_ms=2.0)
    assert costs.latency.batch_size == 2
    assert costs.latency_ratio == pytest.approx(costs.latency.median_ms / 2.0)
    with pytest.raises(ValueError, match="^latency_spec"):
        LatencyProtocol.coerce({"repeat": 3})


def test_measure_costs_does_not_touch_global_rng() -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    measure_costs(baseline_cfg(32), latency_spec=FAST)
    assert torch.equal(torch.rand(3), expected)


def _costs(params: int = 1000, flops: int = 10_000, ms: float = 2.0, ratio: float | None = 1.5) -> Costs:
    lat = Latency(ms, 0.1, ms * 0.9, ms * 1.1, 3, 1, 1, "cpu")
    return Costs(params, flops, lat, None if ratio is None else ms / ratio, ratio)


def test_constraint_values() -> None:
    c = _costs()
    v = constraint_values(c, {"max_params": 2000, "max_latency_ms": 1.0, "max_flops": None})
    assert v == pytest.approx({"params": -0.5, "latency_ms": 1.0})
    # Objects with attributes (search.spec.parse.ConstraintSpec) work the same way.
    spec = SimpleNamespace(max_params=1000, max_latency_ms=None, max_flops=5000)
    assert constraint_values(c, spec) == pytest.approx({"params": 0.0, "flops": 1.0})
    assert constraint_values(c, {"max_latency_ratio": 3.0}) == pytest.approx({"latency_ratio": -0.5})
    assert constraint_values(c, None) == {}
    with pytest.raises(ValueError, match="^constraints"):
        constraint_values(c, {"max_param": 1})
    with pytest.raises(ValueError, match="^constraints"):
        constraint_values(_costs(ratio=None), {"max_latency_ratio": 1.0})


def test_thread_clock() -> None:
    model = nn.Conv2d(3, 4, 3)
    lat = measure_latency(
        model, img_size=16, threads=1, warmup=1, repeats=3, min_repeat_ms=0.5, clock="thread"
    )
    assert lat.clock == "thread" and lat.median_ms > 0
    with pytest.raises(ValueError, match="^clock"):
        measure_latency(model, img_size=16, threads=2, clock="thread")
    with pytest.raises(ValueError, match="^clock"):
        measure_latency(model, img_size=16, clock="cycles")


def test_one_device_resolution_for_training_and_latency(monkeypatch: pytest.MonkeyPatch) -> None:
    """`search.task.train.resolve_device` is the only one: "auto" falls back to the CPU, and a CUDA device
    asked for on a machine without CUDA is one ValueError, in latency timing and in training alike."""
    from search.efficiency import costs
    from search.task import train as train_module

    assert costs.resolve_device is train_module.resolve_device
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert train_module.resolve_device("auto") == torch.device("cpu")
    assert train_module.resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match=r"^device: 'cuda:1' requested but CUDA is not available$"):
        train_module.resolve_device("cuda:1")
    with pytest.raises(ValueError, match=r"^device: 'cuda' requested"):
        measure_latency(build_model(TINY_FOCAL), img_size=32, device="cuda", **FAST)
    with pytest.raises(ValueError, match=r"^device: 'cuda' requested"):  # refused before the data is read
        train_module.train(TINY_FOCAL, {"steps": 2, "warmup_steps": 0, "device": "cuda"}, data=None)


class _FakeMachine:
    """A clock that a forward call advances by its model's cost times the machine's slowdown, which
    triples after `slow_after` calls (as when the other core starts training)."""

    def __init__(self, slow_after: int) -> None:
        self.now, self.calls, self.slow_after = 0.0, 0, slow_after

    def clock(self) -> float:
        return self.now

    def run(self, cost_s: float) -> None:
        self.calls += 1
        self.now += cost_s * (3.0 if self.calls > self.slow_after else 1.0)


class _Costs(nn.Module):
    def __init__(self, machine: _FakeMachine, cost_s: float) -> None:
        super().__init__()
        self.machine, self.cost_s = machine, cost_s

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.machine.run(self.cost_s)
        return x


@pytest.mark.parametrize("clock", ["wall", "thread"])
def test_pair_ratio_holds_while_the_machine_slows(monkeypatch: pytest.MonkeyPatch, clock: str) -> None:
    """A model 2x the reference's cost: timed in turns the ratio is 2 although the machine slows 3x
    mid-measurement; the reference timed alone after the model reads the slowed machine instead."""
    from search.efficiency import costs as costs_mod

    machine = _FakeMachine(slow_after=24)
    monkeypatch.setattr(
        costs_mod, "time", SimpleNamespace(perf_counter=machine.clock, thread_time=machine.clock)
    )
    model, reference = _Costs(machine, 0.002), _Costs(machine, 0.001)
    proto = {"img_size": 4, "threads": 1, "warmup": 1, "repeats": 20, "min_repeat_ms": 0.5, "clock": clock}
    lat, ref, ratio = measure_latency_pair(model, reference, **proto)
    assert ratio == pytest.approx(2.0)
    assert lat.median_ms / ref.median_ms == pytest.approx(2.0)
    assert (lat.p10_ms, lat.p90_ms) == pytest.approx((2.0, 6.0))  # both states were timed, in both models
    assert (ref.p10_ms, ref.p90_ms) == pytest.approx((1.0, 3.0))

    machine = _FakeMachine(slow_after=24)
    monkeypatch.setattr(
        costs_mod, "time", SimpleNamespace(perf_counter=machine.clock, thread_time=machine.clock)
    )
    model, reference = _Costs(machine, 0.002), _Costs(machine, 0.001)
    alone = measure_latency(model, **proto).median_ms / measure_latency(reference, **proto).median_ms
    assert alone == pytest.approx(2.0 / 3.0)


def test_measure_costs_times_the_baseline_beside_the_model() -> None:
    costs = measure_costs(TINY_FOCAL, latency_spec=FAST, baseline=baseline_cfg(32))
    assert costs.baseline_latency_ms is not None and costs.baseline_latency_ms > 0
    assert costs.latency_ratio is not None and costs.latency_ratio > 0
    # The baseline's own measurement, not a number passed in: baseline_ms is ignored when it is timed.
    assert (
        measure_costs(
            TINY_FOCAL, latency_spec=FAST, baseline_ms=1e9, baseline=baseline_cfg(32)
        ).baseline_latency_ms
        < 1e9
    )


def test_on_scale_puts_the_latency_on_the_reference_scale() -> None:
    c = _costs(ms=2.0, ratio=4.0)  # timed at 2.0 ms beside a baseline timed at 0.5 ms
    scaled = c.on_scale(0.4)  # the baseline read 0.4 ms at the study's start
    assert scaled.latency.median_ms == pytest.approx(1.6) and scaled.latency_ratio == 4.0
    assert scaled.latency.iqr_ms == pytest.approx(c.latency.iqr_ms * 0.8)
    assert (scaled.params, scaled.flops, scaled.baseline_latency_ms) == (c.params, c.flops, 0.4)
    with pytest.raises(ValueError, match="^on_scale"):
        _costs(ratio=None).on_scale(0.4)


def test_reference_latency_first_store_wins(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two workers time the reference at once: the one that stores second uses the first one's value."""
    import optuna

    from search.study import objective

    url = f"journal:{tmp_path / 'optuna.journal'}"
    from search.storage.connect import make_storage

    study = optuna.create_study(study_name="s", storage=make_storage(url))
    other = optuna.load_study(study_name="s", storage=make_storage(url))  # the other worker's handle
    timed = []

    def fake_costs(model, *, latency_spec=None, **_):
        timed.append(model)
        if len(timed) == 1:  # while this worker times, the other stores its own reference
            other.set_user_attr(objective.REFERENCE_LATENCY_ATTR, 0.4)
        return SimpleNamespace(latency=SimpleNamespace(median_ms=0.9))

    monkeypatch.setattr(objective, "measure_costs", fake_costs)
    spec = SimpleNamespace(latency=None, baseline=SimpleNamespace(), model={}, train={})
    monkeypatch.setattr(objective, "baseline_model_config", lambda spec, k: {"backbone": "baseline"})
    assert objective.reference_latency_ms(study, spec, 16) == 0.4
    assert study.user_attrs[objective.REFERENCE_LATENCY_ATTR] == 0.4 and len(timed) == 1
    assert (
        objective.reference_latency_ms(other, spec, 16) == 0.4 and len(timed) == 1
    )  # stored: not timed again
    fresh = optuna.create_study(study_name="t", storage=make_storage(url))
    assert objective.reference_latency_ms(fresh, spec, 16) == 0.9  # no race: its own
    assert fresh.user_attrs[objective.REFERENCE_LATENCY_ATTR] == 0.9
