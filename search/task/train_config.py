"""The budget and optimisation hyperparameters of a training run: :class:`TrainConfig`.

Apart from ``search.task.train`` so that reading and checking a spec (``report``, ``list``, ``plan``) does
not import torch; ``search.task.train`` re-exports it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["LOSSES", "TrainConfig"]

LOSSES = ("l1", "smooth_l1", "mse")


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """Budget and optimisation hyperparameters of one short run.

    Args:
        steps: optimiser steps (the budget).
        batch_size: patches per step.
        lr: peak learning rate of AdamW.
        weight_decay: decoupled decay, applied to weight matrices/kernels only (not norms, biases, gammas).
        warmup_steps: linear warm-up from 0 to `lr`, then cosine decay to 0.
        loss: "l1" | "smooth_l1" | "mse" on coordinates normalised to the patch, masked by visibility.
        smooth_l1_beta: transition point of smooth-L1, in patch units (0.02 = 1.3 px at 64 px).
        eval_every: evaluate on val every this many steps (and always at the last step).
        eval_steps: extra evaluation steps (the search puts its early-stopping rungs here).
        eval_batch_size: batch size for evaluation.
        seed: seeds model init, batch order and everything random in the run.
        threads: torch CPU threads (0 = leave torch's default).
        device: "auto" (CUDA when present, else CPU), "cpu" or "cuda[:i]".
        bf16: bfloat16 autocast for forward passes.
        channels_last: channels-last memory format for model and inputs.
        grad_clip: clip the global gradient norm to this value (0 = off).
        max_grad_norm: a gradient norm above this (before clipping) stops the run as diverged.
    """

    steps: int = 400
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 0.05
    warmup_steps: int = 40
    loss: str = "smooth_l1"
    smooth_l1_beta: float = 0.02
    eval_every: int = 100
    eval_steps: tuple[int, ...] = ()
    eval_batch_size: int = 256
    seed: int = 0
    threads: int = 0
    device: str = "auto"
    bf16: bool = False
    channels_last: bool = False
    grad_clip: float = 1.0
    max_grad_norm: float = 1e4

    def __post_init__(self) -> None:
        object.__setattr__(self, "eval_steps", tuple(int(s) for s in self.eval_steps))
        _check(self.steps >= 1, "steps", f"must be >= 1, got {self.steps}")
        _check(self.batch_size >= 1, "batch_size", f"must be >= 1, got {self.batch_size}")
        _check(0 < self.lr < 1, "lr", f"must be in (0, 1), got {self.lr}")
        _check(0 <= self.weight_decay < 1, "weight_decay", f"must be in [0, 1), got {self.weight_decay}")
        _check(
            0 <= self.warmup_steps < self.steps,
            "warmup_steps",
            f"must be in [0, steps={self.steps}), got {self.warmup_steps}",
        )
        _check(self.loss in LOSSES, "loss", f"must be one of {LOSSES}, got {self.loss!r}")
        _check(self.smooth_l1_beta > 0, "smooth_l1_beta", f"must be > 0, got {self.smooth_l1_beta}")
        _check(self.eval_every >= 1, "eval_every", f"must be >= 1, got {self.eval_every}")
        _check(
            all(1 <= s <= self.steps for s in self.eval_steps),
            "eval_steps",
            f"each must be in [1, steps={self.steps}], got {list(self.eval_steps)}",
        )
        _check(self.eval_batch_size >= 1, "eval_batch_size", f"must be >= 1, got {self.eval_batch_size}")
        _check(self.seed >= 0, "seed", f"must be >= 0, got {self.seed}")
        _check(self.threads >= 0, "threads", f"must be >= 0 (0 = default), got {self.threads}")
        _check(
            self.device == "auto" or self.device == "cpu" or self.device.startswith("cuda"),
            "device",
            f"must be 'auto', 'cpu' or 'cuda[:i]', got {self.device!r}",
        )
        _check(self.grad_clip >= 0, "grad_clip", f"must be >= 0, got {self.grad_clip}")
        _check(self.max_grad_norm > 0, "max_grad_norm", f"must be > 0, got {self.max_grad_norm}")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["eval_steps"] = list(self.eval_steps)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TrainConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"{unknown[0]}: unknown TrainConfig field; allowed: {', '.join(sorted(names))}")
        return cls(**dict(d))

    def evaluation_steps(self) -> list[int]:
        steps = set(range(self.eval_every, self.steps + 1, self.eval_every))
        return sorted(steps | set(self.eval_steps) | {self.steps})


def _check(ok: bool, name: str, message: str) -> None:
    if not ok:
        raise ValueError(f"{name}: {message}")
