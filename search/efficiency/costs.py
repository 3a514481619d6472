"""Costs measured before training: parameters, FLOPs and inference latency.

Params, FLOPs and latency do not depend on the weights' values, so they are computed first and an
over-budget trial can be skipped without training. Latency protocol (see :func:`measure_latency`):
eval mode, ``torch.inference_mode``, a fixed seeded input, configurable device / batch / threads
(default CPU, batch 1, 1 thread), warm-up, then the median over repeats with IQR and p10/p90
recorded. Each repeat times enough back-to-back calls to last at least ``min_repeat_ms`` so timer
resolution and scheduler jitter average out. Never call this while a training step runs in the
same process: the two would share cores and the numbers would be meaningless. Because absolute
times drift on shared machines, the baseline is timed the same way in the same process, interleaved
with the model repeat by repeat (:func:`measure_latency_pair`), and the ratio is recorded next to the
absolute value.
"""

from __future__ import annotations

import copy
import gc
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import torch
from torch import nn

from focalnet import ModelConfig, build_model, count_flops, count_params
from search.task.train import resolve_device

__all__ = [
    "Latency",
    "LatencyProtocol",
    "Costs",
    "measure_latency",
    "measure_latency_pair",
    "measure_costs",
    "constraint_values",
]

# Constraint name in the spec -> (Costs attribute reader, key reported to optuna).
_CONSTRAINTS = {
    "max_params": ("params", lambda c: float(c.params)),
    "max_flops": ("flops", lambda c: float(c.flops)),
    "max_latency_ms": ("latency_ms", lambda c: float(c.latency.median_ms)),
    "max_latency_ratio": ("latency_ratio", lambda c: c.latency_ratio),
}


@dataclass(frozen=True)
class Latency:
    """Per-call latency statistics of one measurement (milliseconds per forward of one batch).

    Args:
        median_ms: median over repeats (the reported latency).
        iqr_ms: interquartile range (p75 - p25) over repeats.
        p10_ms: 10th percentile over repeats.
        p90_ms: 90th percentile over repeats.
        repeats: number of timed repeats.
        batch_size: images per forward call.
        threads: torch intra-op threads used (0 = left as the process had it).
        device: device the model ran on.
        inner: forward calls per repeat (each repeat's time is divided by it).
        clock: ``"wall"`` (``time.perf_counter``) or ``"thread"`` (``time.thread_time``, CPU time
            of the calling thread).
    """

    median_ms: float
    iqr_ms: float
    p10_ms: float
    p90_ms: float
    repeats: int
    batch_size: int
    threads: int
    device: str
    inner: int = 1
    clock: str = "wall"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, kw_only=True)
class LatencyProtocol:
    """How latency is measured; mirrors ``[latency]`` of the study spec.

    Args:
        device: ``"cpu"``, ``"cuda"``, ``"cuda:<n>"`` or ``"auto"`` (cuda when available).
        batch_size: images per forward call.
        threads: torch intra-op threads during timing; 0 leaves the current setting.
        warmup: untimed calls before timing.
        repeats: timed repeats (the median over them is reported).
        seed: seed of the fixed input.
        min_repeat_ms: each repeat runs enough calls to last at least this long.
        clock: ``"wall"`` (default) or ``"thread"``; see :func:`measure_latency`.
    """

    device: str = "cpu"
    batch_size: int = 1
    threads: int = 1
    warmup: int = 10
    repeats: int = 30
    seed: int = 0
    min_repeat_ms: float = 2.0
    clock: str = "wall"

    @classmethod
    def coerce(cls, spec: LatencyProtocol | Mapping[str, Any] | Any | None) -> LatencyProtocol:
        """Build from ``None`` (defaults), a mapping, or any object with the same attribute names
        (e.g. ``search.spec.parse.LatencySpec``); missing fields take their defaults."""
        if spec is None:
            return cls()
        if isinstance(spec, cls):
            return spec
        names = [f for f in cls.__dataclass_fields__]
        if isinstance(spec, Mapping):
            unknown = sorted(set(spec) - set(names))
            if unknown:
                raise ValueError(f"latency_spec: unknown key {unknown[0]!r} (known: {', '.join(names)})")
            return cls(**dict(spec))
        return cls(**{n: getattr(spec, n) for n in names if hasattr(spec, n)})


@dataclass(frozen=True)
class Costs:
    """Training-independent costs of one model configuration.

    Args:
        params: parameter count.
        flops: FLOPs of one forward on one image (1 MAC = 2 FLOPs).
        latency: latency statistics.
        baseline_latency_ms: the baseline's median latency measured in the same process, if given.
        latency_ratio: ``latency.median_ms / baseline_latency_ms`` (None without a baseline).
    """

    params: int
    flops: int
    latency: Latency
    baseline_latency_ms: float | None
    latency_ratio: float | None

    def to_dict(self) -> dict[str, Any]:
        """Flat dict for logging (``latency_*`` keys from :class:`Latency`)."""
        out: dict[str, Any] = {"params": self.params, "flops": self.flops}
        out |= {f"latency_{k}": v for k, v in self.latency.to_dict().items()}
        out["latency_ms"] = self.latency.median_ms
        out["baseline_latency_ms"] = self.baseline_latency_ms
        out["latency_ratio"] = self.latency_ratio
        return out

    def on_scale(self, reference_ms: float) -> Costs:
        """These costs with the latency put on a reference scale: ``latency_ratio × reference_ms`` (its
        spread scaled alike), and ``reference_ms`` as the baseline's latency. Absolute times taken beside
        other work move by half; the ratio, timed in turns with the baseline, does not."""
        if self.latency_ratio is None:
            raise ValueError("on_scale: needs a latency_ratio (time the model with its baseline)")
        f = self.latency_ratio * reference_ms / self.latency.median_ms
        latency = replace(
            self.latency,
            median_ms=self.latency_ratio * reference_ms,
            iqr_ms=self.latency.iqr_ms * f,
            p10_ms=self.latency.p10_ms * f,
            p90_ms=self.latency.p90_ms * f,
        )
        return replace(self, latency=latency, baseline_latency_ms=float(reference_ms))


def _on_device(model: nn.Module, dev: torch.device) -> bool:
    tensors = [*model.parameters(), *model.buffers()]
    return all(t.device == dev for t in tensors)


def measure_latency(
    model: nn.Module,
    *,
    img_size: int,
    in_chans: int = 3,
    device: str = "cpu",
    batch_size: int = 1,
    threads: int = 1,
    warmup: int = 10,
    repeats: int = 30,
    seed: int = 0,
    min_repeat_ms: float = 2.0,
    clock: str = "wall",
) -> Latency:
    """Time ``model``'s forward pass on a fixed input (see the module docstring for the protocol).

    The model is put in eval mode for the measurement and its previous mode restored; if it lives
    on another device, a copy is moved (the caller's model is never moved). The torch thread count
    is restored afterwards, and Python's GC is paused while timing so a collection cannot land in
    one repeat.

    Args:
        model: module taking ``(batch_size, in_chans, img_size, img_size)`` floats in [0, 1].
        img_size: input side length.
        in_chans: input channels.
        device: ``"cpu"``, ``"cuda[:n]"`` or ``"auto"``.
        batch_size: images per call.
        threads: torch intra-op threads while timing; 0 keeps the current setting.
        warmup: untimed calls first (lazy init, allocator and cache warm-up).
        repeats: timed repeats; the median is reported.
        seed: seed of the input generator.
        min_repeat_ms: each repeat runs ``inner`` calls so that it lasts at least this long.
        clock: ``"wall"`` times with ``time.perf_counter`` (the real latency). ``"thread"`` times
            the CPU time of the calling thread (``time.thread_time``), which ignores the time the
            thread spends descheduled, so it stays stable on an oversubscribed shared machine;
            only valid on CPU with ``threads=1``, where torch computes on the calling thread.

    Returns:
        :class:`Latency` with per-call milliseconds.
    """
    proto = LatencyProtocol(
        device=device,
        batch_size=batch_size,
        threads=threads,
        warmup=warmup,
        repeats=repeats,
        seed=seed,
        min_repeat_ms=min_repeat_ms,
        clock=clock,
    )
    (latency,) = _measure([model], img_size=img_size, in_chans=in_chans, proto=proto)
    return latency


def measure_latency_pair(
    model: nn.Module, reference: nn.Module, *, img_size: int, in_chans: int = 3, **protocol: Any
) -> tuple[Latency, Latency, float]:
    """Time ``model`` and ``reference`` in turns, repeat by repeat (A, B, A, B, ...), in this process.

    Even a thread's CPU time moves with what else runs: in a 2-worker study one worker timed the baseline
    at 0.74 ms, the other at 0.48 ms. Adjacent repeats share those conditions, so their ratio holds where
    a reference timed earlier does not. Before each timed repeat a model runs as many untimed calls, since
    the other model's calls left the caches cold (without them FocalNet-T read 45× the baseline in turns
    and 54× alone).

    Args:
        model: the module to time.
        reference: the module it is compared with (the baseline).
        img_size: input side length.
        in_chans: input channels.
        **protocol: the rest of :func:`measure_latency`'s keyword arguments (:class:`LatencyProtocol`).

    Returns:
        (model's :class:`Latency`, reference's :class:`Latency`, the ratio of their medians; the median of
        per-repeat ratios would carry two repeats' noise each).
    """
    proto = LatencyProtocol.coerce(protocol)
    lat, ref = _measure([model, reference], img_size=img_size, in_chans=in_chans, proto=proto)
    return lat, ref, lat.median_ms / ref.median_ms


def _measure(
    models: list[nn.Module], *, img_size: int, in_chans: int, proto: LatencyProtocol
) -> list[Latency]:
    """:func:`measure_latency` for one or more models, timed in turn each repeat: their :class:`Latency`."""
    if proto.batch_size < 1 or proto.repeats < 1 or proto.warmup < 0 or proto.threads < 0:
        raise ValueError(
            f"latency: need batch_size >= 1, repeats >= 1, warmup >= 0, threads >= 0; got "
            f"batch_size={proto.batch_size}, repeats={proto.repeats}, warmup={proto.warmup}, threads={proto.threads}"
        )
    if proto.clock not in ("wall", "thread"):
        raise ValueError(f"clock: must be 'wall' or 'thread', got {proto.clock!r}")
    dev = resolve_device(proto.device)
    if proto.clock == "thread" and (dev.type != "cpu" or proto.threads != 1):
        raise ValueError(
            f"clock: 'thread' needs device cpu and threads=1, got device={dev}, threads={proto.threads}"
        )
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", torch.cuda.current_device())
    models = [m if _on_device(m, dev) else copy.deepcopy(m).to(dev) for m in models]
    is_cuda = dev.type == "cuda"

    def sync() -> None:
        if is_cuda:
            torch.cuda.synchronize(dev)

    timer = time.perf_counter if proto.clock == "wall" else time.thread_time
    gen = torch.Generator().manual_seed(proto.seed)
    x = torch.rand((proto.batch_size, in_chans, img_size, img_size), generator=gen).to(dev)

    was_training = [m.training for m in models]
    prev_threads = torch.get_num_threads()
    for m in models:
        m.eval()
    try:
        if proto.threads > 0:
            torch.set_num_threads(proto.threads)
        times, inners = _repeat_times(
            models,
            x,
            sync=sync,
            timer=timer,
            warmup=proto.warmup,
            repeats=proto.repeats,
            min_repeat_ms=proto.min_repeat_ms,
        )
    finally:
        torch.set_num_threads(prev_threads)
        for m, mode in zip(models, was_training, strict=True):
            m.train(mode)

    latencies = []
    for row, inner in zip(times, inners, strict=True):
        p10, p25, p50, p75, p90 = np.percentile(row, [10, 25, 50, 75, 90])
        latencies.append(
            Latency(
                median_ms=float(p50),
                iqr_ms=float(p75 - p25),
                p10_ms=float(p10),
                p90_ms=float(p90),
                repeats=int(proto.repeats),
                batch_size=int(proto.batch_size),
                threads=int(proto.threads),
                device=str(dev),
                inner=int(inner),
                clock=proto.clock,
            )
        )
    return latencies


def _repeat_times(
    models: list[nn.Module],
    x: torch.Tensor,
    *,
    sync: Callable[[], None],
    timer: Callable[[], float],
    warmup: int,
    repeats: int,
    min_repeat_ms: float,
) -> tuple[np.ndarray, list[int]]:
    """Milliseconds per call of each model's timed repeats (the models take turns each repeat), and each
    model's calls per repeat (see :func:`measure_latency`).

    Python's GC is paused while timing, so a collection cannot land in one repeat.
    """
    with torch.inference_mode():
        inners = []
        for model in models:
            for _ in range(warmup):
                model(x)
            sync()
            # Calibrate: how many calls make one repeat last >= min_repeat_ms.
            t0 = timer()
            model(x)
            sync()
            one_ms = (timer() - t0) * 1e3
            inners.append(max(1, math.ceil(min_repeat_ms / max(one_ms, 1e-6))))
        # Paused, not collected first (as `timeit` does): a full collection in a process holding torch,
        # MLflow and Optuna walks millions of objects (~0.3 s, longer than timing a small model).
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            times = np.empty((len(models), repeats), dtype=float)
            for r in range(repeats):
                for i, (model, inner) in enumerate(zip(models, inners, strict=True)):
                    for _ in range(inner if len(models) > 1 else 0):
                        model(x)  # untimed: the other model's calls left the caches cold for this one
                    sync()
                    t0 = timer()
                    for _ in range(inner):
                        model(x)
                    sync()
                    times[i, r] = (timer() - t0) * 1e3 / inner
        finally:
            if gc_was_enabled:
                gc.enable()
    return times, inners


def measure_costs(
    model_config: ModelConfig | Mapping[str, Any],
    *,
    latency_spec: LatencyProtocol | Mapping[str, Any] | Any | None = None,
    baseline_ms: float | None = None,
    baseline: ModelConfig | Mapping[str, Any] | None = None,
) -> Costs:
    """Build the model (``torch.manual_seed(0)``) and measure params, FLOPs and latency.

    Args:
        model_config: :class:`focalnet.ModelConfig` or its nested dict form.
        latency_spec: :class:`LatencyProtocol`, a mapping, or an object with the same attributes
            (``search.spec.parse.LatencySpec``); None = defaults.
        baseline_ms: the baseline's median latency timed earlier in this process with the same
            protocol; when given, ``latency_ratio`` is filled.
        baseline: the baseline's model config, timed now, interleaved with the model
            (:func:`measure_latency_pair`): ``baseline_latency_ms`` is its median in this measurement
            and ``latency_ratio`` the ratio of the two medians. Takes precedence over ``baseline_ms``.

    Returns:
        :class:`Costs`.
    """
    cfg = _model_config(model_config)
    proto = LatencyProtocol.coerce(latency_spec)
    model = _build(cfg)
    params = count_params(model)
    flops = count_flops(model, cfg.img_size, cfg.in_chans)
    shape = {"img_size": cfg.img_size, "in_chans": cfg.in_chans}
    ratio = None
    if baseline is not None:
        reference_model = _build(_model_config(baseline))
        latency, reference, ratio = measure_latency_pair(model, reference_model, **shape, **asdict(proto))
        baseline_ms = reference.median_ms
    else:
        (latency,) = _measure([model], **shape, proto=proto)
        if baseline_ms is not None and baseline_ms > 0:
            ratio = latency.median_ms / float(baseline_ms)
    return Costs(
        params=int(params),
        flops=int(flops),
        latency=latency,
        baseline_latency_ms=None if baseline_ms is None else float(baseline_ms),
        latency_ratio=ratio,
    )


def _model_config(config: ModelConfig | Mapping[str, Any]) -> ModelConfig:
    return config if isinstance(config, ModelConfig) else ModelConfig.from_dict(dict(config))


def _build(cfg: ModelConfig) -> nn.Module:
    # Fixed seed: the weights do not change the costs, but a fixed build keeps runs byte-identical.
    # fork_rng so measuring costs does not perturb the caller's (training) RNG stream.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return build_model(cfg)


def constraint_values(costs: Costs, constraints: Mapping[str, Any] | Any | None) -> dict[str, float]:
    """Normalised constraint violations for ``trial.set_constraint`` (<= 0 means feasible).

    Each value is ``(cost - limit) / limit``, so different units are comparable (0.1 = 10% over).
    Limits that are None are skipped. Known limits: ``max_params``, ``max_flops``,
    ``max_latency_ms``, ``max_latency_ratio`` (the last needs a baseline).

    Args:
        costs: measured costs.
        constraints: mapping, or an object with those attributes (``search.spec.parse.ConstraintSpec``).

    Returns:
        ``{"params": v, "flops": v, "latency_ms": v, "latency_ratio": v}`` for the limits given.
    """
    if constraints is None:
        return {}
    if isinstance(constraints, Mapping):
        unknown = sorted(set(constraints) - set(_CONSTRAINTS))
        if unknown:
            raise ValueError(f"constraints: unknown key {unknown[0]!r} (known: {', '.join(_CONSTRAINTS)})")
        limits = dict(constraints)
    else:
        limits = {k: getattr(constraints, k) for k in _CONSTRAINTS if hasattr(constraints, k)}
    out: dict[str, float] = {}
    for name, (key, read) in _CONSTRAINTS.items():
        limit = limits.get(name)
        if limit is None:
            continue
        if float(limit) <= 0:
            raise ValueError(f"constraints: {name} must be > 0, got {limit}")
        value = read(costs)
        if value is None:
            raise ValueError(f"constraints: {name} needs a baseline latency (latency_ratio is None)")
        out[key] = (float(value) - float(limit)) / float(limit)
    return out
