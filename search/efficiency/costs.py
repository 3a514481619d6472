"""Costs measured before training: parameters, FLOPs and inference latency.

Params, FLOPs and latency do not depend on the weights' values, so they are computed first and an
over-budget trial can be skipped without training. Latency protocol (see :func:`measure_latency`):
eval mode, ``torch.inference_mode``, a fixed seeded input, configurable device / batch / threads
(default CPU, batch 1, 1 thread), warm-up, then the median over repeats with IQR and p10/p90
recorded. Each repeat times enough back-to-back calls to last at least ``min_repeat_ms`` so timer
resolution and scheduler jitter average out. Never call this while a training step runs in the
same process: the two would share cores and the numbers would be meaningless. Because absolute
times drift on shared machines, the baseline is timed the same way in the same process and the
ratio is recorded next to the absolute value.
"""

from __future__ import annotations

import copy
import gc
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
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
    if batch_size < 1 or repeats < 1 or warmup < 0 or threads < 0:
        raise ValueError(
            f"latency: need batch_size >= 1, repeats >= 1, warmup >= 0, threads >= 0; got "
            f"batch_size={batch_size}, repeats={repeats}, warmup={warmup}, threads={threads}"
        )
    if clock not in ("wall", "thread"):
        raise ValueError(f"clock: must be 'wall' or 'thread', got {clock!r}")
    dev = resolve_device(device)
    if clock == "thread" and (dev.type != "cpu" or threads != 1):
        raise ValueError(
            f"clock: 'thread' needs device cpu and threads=1, got device={dev}, threads={threads}"
        )
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", torch.cuda.current_device())
    if not _on_device(model, dev):
        model = copy.deepcopy(model).to(dev)
    is_cuda = dev.type == "cuda"

    def sync() -> None:
        if is_cuda:
            torch.cuda.synchronize(dev)

    timer = time.perf_counter if clock == "wall" else time.thread_time
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand((batch_size, in_chans, img_size, img_size), generator=gen).to(dev)

    was_training = model.training
    prev_threads = torch.get_num_threads()
    model.eval()
    try:
        if threads > 0:
            torch.set_num_threads(threads)
        times, inner = _repeat_times(
            model, x, sync=sync, timer=timer, warmup=warmup, repeats=repeats, min_repeat_ms=min_repeat_ms
        )
    finally:
        torch.set_num_threads(prev_threads)
        model.train(was_training)

    p10, p25, p50, p75, p90 = np.percentile(times, [10, 25, 50, 75, 90])
    return Latency(
        median_ms=float(p50),
        iqr_ms=float(p75 - p25),
        p10_ms=float(p10),
        p90_ms=float(p90),
        repeats=int(repeats),
        batch_size=int(batch_size),
        threads=int(threads),
        device=str(dev),
        inner=int(inner),
        clock=clock,
    )


def _repeat_times(
    model: nn.Module,
    x: torch.Tensor,
    *,
    sync: Callable[[], None],
    timer: Callable[[], float],
    warmup: int,
    repeats: int,
    min_repeat_ms: float,
) -> tuple[np.ndarray, int]:
    """Milliseconds per call of each timed repeat, and the calls per repeat (see :func:`measure_latency`).

    Python's GC is paused while timing, so a collection cannot land in one repeat.
    """
    with torch.inference_mode():
        for _ in range(warmup):
            model(x)
        sync()
        # Calibrate: how many calls make one repeat last >= min_repeat_ms.
        t0 = timer()
        model(x)
        sync()
        one_ms = (timer() - t0) * 1e3
        inner = max(1, math.ceil(min_repeat_ms / max(one_ms, 1e-6)))
        # Paused, not collected first (as `timeit` does): a full collection in a process holding torch,
        # MLflow and Optuna walks millions of objects (~0.3 s, longer than timing a small model).
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            times = np.empty(repeats, dtype=float)
            for r in range(repeats):
                sync()
                t0 = timer()
                for _ in range(inner):
                    model(x)
                sync()
                times[r] = (timer() - t0) * 1e3 / inner
        finally:
            if gc_was_enabled:
                gc.enable()
    return times, inner


def measure_costs(
    model_config: ModelConfig | Mapping[str, Any],
    *,
    latency_spec: LatencyProtocol | Mapping[str, Any] | Any | None = None,
    baseline_ms: float | None = None,
) -> Costs:
    """Build the model (``torch.manual_seed(0)``) and measure params, FLOPs and latency.

    Args:
        model_config: :class:`focalnet.ModelConfig` or its nested dict form.
        latency_spec: :class:`LatencyProtocol`, a mapping, or an object with the same attributes
            (``search.spec.parse.LatencySpec``); None = defaults.
        baseline_ms: the baseline's median latency timed in this process with the same protocol;
            when given, ``latency_ratio`` is filled.

    Returns:
        :class:`Costs`.
    """
    cfg = model_config if isinstance(model_config, ModelConfig) else ModelConfig.from_dict(dict(model_config))
    proto = LatencyProtocol.coerce(latency_spec)
    # Fixed seed: the weights do not change the costs, but a fixed build keeps runs byte-identical.
    # fork_rng so measuring costs does not perturb the caller's (training) RNG stream.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = build_model(cfg)
    params = count_params(model)
    flops = count_flops(model, cfg.img_size, cfg.in_chans)
    latency = measure_latency(
        model,
        img_size=cfg.img_size,
        in_chans=cfg.in_chans,
        device=proto.device,
        batch_size=proto.batch_size,
        threads=proto.threads,
        warmup=proto.warmup,
        repeats=proto.repeats,
        seed=proto.seed,
        min_repeat_ms=proto.min_repeat_ms,
        clock=proto.clock,
    )
    ratio = None
    if baseline_ms is not None and baseline_ms > 0:
        ratio = latency.median_ms / float(baseline_ms)
    return Costs(
        params=int(params),
        flops=int(flops),
        latency=latency,
        baseline_latency_ms=None if baseline_ms is None else float(baseline_ms),
        latency_ratio=ratio,
    )


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
