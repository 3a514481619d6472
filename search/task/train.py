"""Short, deterministic training runs of a keypoint model on a `KeypointData`.

One path: seed → build model → AdamW (decay on weights only) with warm-up + cosine → masked loss on
coordinates normalised to the patch → evaluate on val at fixed steps (callback may stop the run) →
final val and test metrics.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from focalnet import ModelConfig, build_model
from search.task.metrics import keypoint_metrics
from search.task.train_config import TrainConfig

__all__ = [
    "TrainConfig",
    "TrainResult",
    "TrainingDiverged",
    "train",
    "predict",
    "param_groups",
    "resolve_device",
]


class TrainingDiverged(RuntimeError):
    """The loss became NaN/inf or the gradient exploded; carries the step and the reason."""

    def __init__(self, step: int, reason: str) -> None:
        super().__init__(f"training diverged at step {step}: {reason}")
        self.step = step
        self.reason = reason


@dataclass
class TrainResult:
    """What a run produced. Metric dicts use the keys of `search.task.metrics.keypoint_metrics`."""

    val: dict[str, float]
    test: dict[str, float]
    history: list[tuple[int, dict[str, float]]]
    state_dict: dict[str, torch.Tensor]
    steps_done: int
    wall_s: float
    train_s: float
    data_s: float
    eval_s: float
    losses: list[float] = field(default_factory=list)
    device: str = "cpu"
    test_history: list[tuple[int, dict[str, float]]] = field(default_factory=list)
    test_eval_s: float = 0.0


def resolve_device(device: str) -> torch.device:
    """The torch device of a device string; the one device resolution of training and latency timing.

    Args:
        device: ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"`` or ``"cuda:<n>"``.

    Raises:
        ValueError: a CUDA device was asked for on a machine without CUDA (one line, not torch's error
            from deep inside the first ``.to(device)``).
    """
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device: {device!r} requested but CUDA is not available")
    return dev


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups: decay on weight matrices and conv kernels (ndim >= 2) only.

    Norm weights, biases and layerscale gammas are 1-D and never decayed. (The official FocalNet code
    decides by name lists that do not match its own parameter names, so its grouping is not a guide.)
    """
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def _lr_lambda(cfg: TrainConfig) -> Callable[[int], float]:
    def f(step: int) -> float:  # step = number of optimiser steps already taken
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return f


def _masked_loss(
    pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, cfg: TrainConfig
) -> torch.Tensor:
    if cfg.loss == "l1":
        per = (pred - target).abs()
    elif cfg.loss == "mse":
        per = (pred - target).square()
    else:
        per = nn.functional.smooth_l1_loss(pred, target, reduction="none", beta=cfg.smooth_l1_beta)
    m = mask.unsqueeze(-1).to(per.dtype)
    return (per * m).sum() / (m.sum() * 2).clamp_min(1.0)


def _to_input(images_u8: torch.Tensor, device: torch.device, channels_last: bool) -> torch.Tensor:
    x = images_u8.to(device, non_blocking=True).float().div_(255.0)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


@torch.no_grad()
def predict(
    model: nn.Module,
    images: np.ndarray | torch.Tensor,
    *,
    batch_size: int = 256,
    device: torch.device | str = "cpu",
    bf16: bool = False,
    channels_last: bool = False,
) -> np.ndarray:
    """Predicted joints in pixels (N, K, 2) for uint8 images (N, 3, H, W)."""
    device = torch.device(device)
    imgs = torch.as_tensor(images)
    img_size = imgs.shape[-1]
    was_training = model.training
    model.eval()
    out = []
    for i in range(0, len(imgs), batch_size):
        x = _to_input(imgs[i : i + batch_size], device, channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            y = model(x)
        out.append(y.float().cpu())
    model.train(was_training)
    return (torch.cat(out) * img_size).numpy() if out else np.zeros((0, 0, 2), np.float32)


def _evaluate(model: nn.Module, split: Any, cfg: TrainConfig, device: torch.device) -> dict[str, float]:
    pred = predict(
        model,
        split.images,
        batch_size=cfg.eval_batch_size,
        device=device,
        bf16=cfg.bf16,
        channels_last=cfg.channels_last,
    )
    return {
        k: float(v)
        for k, v in keypoint_metrics(pred, split.keypoints, split.visibility, split.images.shape[-1]).items()
    }


def train(
    model_config: Any,
    train_config: TrainConfig | Mapping[str, Any],
    data: Any,
    *,
    callback: Callable[[int, dict[str, float]], None] | None = None,
    progress: bool = True,
    desc: str = "train",
    track_test: bool = False,
) -> TrainResult:
    """Train a keypoint model for `train_config.steps` steps and evaluate it.

    Args:
        model_config: a `focalnet.ModelConfig` or its dict.
        train_config: a `TrainConfig` or its dict.
        data: a `search.task.data.KeypointData` (uint8 images, pixel keypoints, visibility).
        callback: called as `callback(step, val_metrics)` after every evaluation; raise to stop the run
            (the exception propagates unchanged).
        progress: show a progress bar (steps/s, ETA) on stderr.
        desc: progress bar label.
        track_test: also evaluate the test split at every evaluation step (`TrainResult.test_history`,
            timed apart in `test_eval_s` so `eval_s` stays what a search trial pays); for recording
            learning-curve tables, never for choosing anything.

    Raises:
        TrainingDiverged: NaN/inf loss or a gradient norm above `max_grad_norm`.
    """
    cfg = train_config if isinstance(train_config, TrainConfig) else TrainConfig.from_dict(train_config)
    mcfg = model_config if isinstance(model_config, ModelConfig) else ModelConfig.from_dict(model_config)
    t_start = time.perf_counter()
    run = _set_up(mcfg, cfg)
    batches = _Batches(data.train, cfg, run.device)
    bar = _progress_bar(cfg.steps, desc) if progress else None
    val = _loop(run, batches, data, callback=callback, bar=bar, track_test=track_test)
    if bar is not None:
        bar.close()
    test = _evaluate(run.model, data.test, cfg, run.device) if len(data.test.images) else {}
    state = {k: v.detach().cpu().clone() for k, v in run.model.state_dict().items()}
    return TrainResult(
        val=val,
        test=test,
        history=run.history,
        state_dict=state,
        steps_done=cfg.steps,
        wall_s=time.perf_counter() - t_start,
        train_s=run.train_s,
        data_s=run.data_s,
        eval_s=run.eval_s,
        losses=run.losses,
        device=str(run.device),
        test_history=run.test_history,
        test_eval_s=run.test_eval_s,
    )


@dataclass
class _Run:
    """One training run between its set-up and its final evaluation: the model, its optimiser, the record."""

    cfg: TrainConfig
    model: nn.Module
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LRScheduler
    device: torch.device
    losses: list[float] = field(default_factory=list)
    history: list[tuple[int, dict[str, float]]] = field(default_factory=list)
    test_history: list[tuple[int, dict[str, float]]] = field(default_factory=list)
    data_s: float = 0.0
    train_s: float = 0.0
    eval_s: float = 0.0
    test_eval_s: float = 0.0


def _set_up(model_config: ModelConfig, cfg: TrainConfig) -> _Run:
    """Threads, device, the seeded model, AdamW and its schedule: everything before the first step.

    Args:
        model_config: the model to build (its weights are drawn right after ``torch.manual_seed``).
        cfg: the run's training config.
    """
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)
    model = build_model(model_config).to(device)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(param_groups(model, cfg.weight_decay), lr=cfg.lr, betas=(0.9, 0.999))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(cfg))
    return _Run(cfg=cfg, model=model, opt=opt, sched=sched, device=device)


class _Batches:
    """Training batches in a fresh permutation every epoch, drawn from the run's own seeded generator.

    Args:
        split: the training split (uint8 images, pixel keypoints, visibility).
        cfg: the run's training config (batch size, seed, memory format).
        device: where the batches go.
    """

    def __init__(self, split: Any, cfg: TrainConfig, device: torch.device) -> None:
        img_size = split.images.shape[-1]
        self.images = torch.from_numpy(np.ascontiguousarray(split.images))
        self.targets = torch.from_numpy(np.ascontiguousarray(split.keypoints, dtype=np.float32)) / img_size
        self.masks = torch.from_numpy(np.ascontiguousarray(split.visibility) > 0)
        self.n = len(self.images)
        if self.n == 0:
            raise ValueError("data.train: the training split is empty")
        self.batch_size, self.channels_last, self.device = cfg.batch_size, cfg.channels_last, device
        self.gen = torch.Generator().manual_seed(cfg.seed)
        self.order = torch.randperm(self.n, generator=self.gen)
        self.cursor = 0

    def next(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(inputs, targets normalised to the patch, visibility masks) of the next batch, on the device."""
        if self.cursor + self.batch_size > self.n:  # new epoch: fresh permutation from the run's generator
            self.order = torch.randperm(self.n, generator=self.gen)
            self.cursor = 0
        idx = self.order[self.cursor : self.cursor + self.batch_size]
        self.cursor += self.batch_size
        x = _to_input(self.images[idx], self.device, self.channels_last)
        return x, self.targets[idx].to(self.device), self.masks[idx].to(self.device)


def _loop(
    run: _Run,
    batches: _Batches,
    data: Any,
    *,
    callback: Callable[[int, dict[str, float]], None] | None,
    bar: Any,
    track_test: bool,
) -> dict[str, float]:
    """All optimiser steps with their evaluations (see :func:`train`); returns the last val metrics."""
    cfg = run.cfg
    eval_at = set(cfg.evaluation_steps())
    val: dict[str, float] = {}
    run.model.train()
    for step in range(1, cfg.steps + 1):
        t0 = time.perf_counter()
        x, y, m = batches.next()
        t1 = time.perf_counter()
        _optimiser_step(run, step, x, y, m)
        t2 = time.perf_counter()
        run.data_s += t1 - t0
        run.train_s += t2 - t1
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{run.losses[-1]:.4f}", refresh=False)
        if step not in eval_at:
            continue
        val = _evaluation_step(run, data, step, since=t2, track_test=track_test)
        if bar is not None:
            bar.set_postfix(loss=f"{run.losses[-1]:.4f}", val_pck=f"{val.get('pck_0.05', float('nan')):.3f}")
        if callback is not None:
            _notify(callback, run, step, val)
        run.model.train()
    return val


def _optimiser_step(run: _Run, step: int, x: torch.Tensor, y: torch.Tensor, m: torch.Tensor) -> None:
    """One forward/backward pass and AdamW update on a batch; its loss goes to ``run.losses``.

    Raises:
        TrainingDiverged: the loss is not finite, or the gradient norm exceeds ``max_grad_norm``.
    """
    cfg = run.cfg
    with torch.autocast(run.device.type, dtype=torch.bfloat16, enabled=cfg.bf16):
        pred = run.model(x)
    loss = _masked_loss(pred.float(), y, m, cfg)
    if not torch.isfinite(loss):
        raise TrainingDiverged(step, f"loss is {loss.item()}")
    run.opt.zero_grad(set_to_none=True)
    loss.backward()
    gnorm = torch.nn.utils.clip_grad_norm_(run.model.parameters(), cfg.grad_clip or float("inf"))
    if not torch.isfinite(gnorm) or gnorm.item() > cfg.max_grad_norm:
        raise TrainingDiverged(
            step, f"gradient norm {gnorm.item():.3g} exceeds max_grad_norm={cfg.max_grad_norm:g}"
        )
    run.opt.step()
    run.sched.step()
    run.losses.append(loss.item())


def _evaluation_step(run: _Run, data: Any, step: int, *, since: float, track_test: bool) -> dict[str, float]:
    """Val metrics at ``step`` plus the mean training loss since the last evaluation, recorded in ``run``.

    Args:
        since: ``time.perf_counter()`` at the end of the step's update; the time from it is ``eval_s``.
        track_test: also evaluate the test split (timed apart, in ``test_eval_s``).
    """
    cfg = run.cfg
    val = _evaluate(run.model, data.val, cfg, run.device)
    val["loss"] = float(np.mean(run.losses[-cfg.eval_every :]))
    run.history.append((step, dict(val)))
    run.eval_s += time.perf_counter() - since
    if track_test:
        t0 = time.perf_counter()
        run.test_history.append((step, _evaluate(run.model, data.test, cfg, run.device)))
        run.test_eval_s += time.perf_counter() - t0
    return val


def _notify(
    callback: Callable[[int, dict[str, float]], None], run: _Run, step: int, val: dict[str, float]
) -> None:
    """Call the caller's callback; an exception it raises to stop the run carries what the run cost so far."""
    try:
        callback(step, dict(val))
    except BaseException as stop:
        stop.partial_timing = {
            "train_s": run.train_s,
            "data_s": run.data_s,
            "eval_s": run.eval_s,
            "steps": step,
        }  # type: ignore[attr-defined]
        raise


def _progress_bar(total: int, desc: str) -> tqdm:
    return tqdm(total=total, desc=desc, unit="step", dynamic_ncols=True, leave=False, mininterval=0.5)
