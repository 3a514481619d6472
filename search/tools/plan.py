"""`python -m search plan SPEC`: what a study will do, before it does anything.

It validates the spec, prints the space (each dimension and its size), samples the space as the study's
sampler would at random and counts the share of draws that are trainable under the spec's constraints
(parameters and FLOPs are counted on each built model; latency, which needs timing, is read off a
bundled table when one answers this spec, else left to the study), gives the expected seconds per
trial (from a bundled learning-curve table when one answers this spec, on the clock `simulate` uses for
the spec's workers and threads; else a short timing of a few trainable draws on random input), and from
those how many trials fit in ``timeout_min`` and what the seed check will cost. It creates no Optuna
storage, no MLflow store and no files: the dataset is not loaded (its joint count comes from the URI).
"""

from __future__ import annotations

import math
import os
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import torch

from focalnet import build_model, count_flops, count_params
from search.efficiency.table import Table, TableError, read_table
from search.spec.space import resolve_config, sample_params
from search.study.threads import choose_threads
from search.study.warm_start import warm_start_plan
from search.task import synthetic
from search.task.data import parse_uri
from search.tools.simulate import MIN_FAMILY_ROWS, check_table, schedule, speed_for, time_scales

__all__ = ["plan", "trainable_share"]

TABLES = Path(__file__).resolve().parents[2] / "bench" / "tables"


def _size(dim: Any) -> str:
    if dim.kind == "categorical":
        return f"{len(dim.choices)} choices {list(dim.choices)}"
    scale = " log" if dim.log else ""
    return f"{dim.kind} {dim.low:g}..{dim.top():g}{scale}" + (f" step {dim.step:g}" if dim.step else "")


def num_keypoints(spec: Any) -> int:
    """The dataset's joint count without loading it: the synthetic skeleton, else ``[model]`` or 16."""
    scheme, _, query = parse_uri(spec.data.dataset) if spec.data.dataset else ("", "", {})
    if scheme == "synthetic":
        return synthetic.SKELETONS[query.get("joints", "human")].num_joints
    return int(spec.model.get("num_keypoints", 16))


def _draws(spec: Any, n: int) -> list[dict[str, Any]]:
    """``n`` random draws of the space (seeded by the spec), resolved, with the dataset's joint count."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=spec.seed))
    out = []
    for _ in range(n):
        config = resolve_config(spec, sample_params(study.ask(), spec))
        config["model"]["num_keypoints"] = num_keypoints(spec)
        out.append(config)
    return out


def trainable_share(spec: Any, configs: list[dict[str, Any]]) -> tuple[float, list[dict[str, Any]]]:
    """(share of ``configs`` within ``max_params`` and ``max_flops``, those configs)."""
    c = spec.constraints
    ok = []
    for config in configs:
        model = build_model(config["model"])
        img = int(config["model"]["focalnet"]["img_size"])
        if c.max_params is not None and count_params(model) > c.max_params:
            continue
        if c.max_flops is not None and count_flops(model, img) > c.max_flops:
            continue
        ok.append(config)
    return (len(ok) / len(configs) if configs else math.nan), ok


def _bundled_table(spec: Any) -> tuple[Table, list[dict[str, Any]]] | None:
    """The first bundled table that answers this spec (`simulate.check_table`), with its family rows."""
    for path in sorted(TABLES.glob("*.jsonl.gz")):
        table = read_table(path)
        try:
            return table, check_table(spec, table)
        except TableError:
            continue
    return None


def _timed_step_s(configs: list[dict[str, Any]], threads: int, batch: int) -> float:
    """Median seconds of a train step over a few configs, on random input (2 warm-up steps, 5 timed)."""
    torch.set_num_threads(threads)
    per = []
    for config in configs[:3]:
        model = build_model(config["model"])
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        img = int(config["model"]["focalnet"]["img_size"])
        x, y = torch.randn(batch, 3, img, img), torch.rand(batch, config["model"]["num_keypoints"], 2) * img
        times = []
        for i in range(7):
            t0 = time.perf_counter()
            loss = (model(x) - y).abs().mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            if i >= 2:
                times.append(time.perf_counter() - t0)
        per.append(statistics.median(times))
    return statistics.median(per)


def _trial_seconds(spec: Any, configs: list[dict[str, Any]], workers: int, threads: int) -> tuple[float, str]:
    """Expected seconds of one trained search trial on this study's clock, and where the figure comes from."""
    found = _bundled_table(spec)
    if found is not None:
        table, rows = found
        scales = time_scales(table, "cpu")
        speed = speed_for(
            workers, threads
        )  # a live run's evaluations, not the recording's every-50-step ones
        secs = [
            schedule(spec, r, 0.0, scale=scales[r["index"]] * speed)[-1][0] for r in rows if r.get("trained")
        ]
        if len(secs) >= MIN_FAMILY_ROWS:
            return float(
                np.median(secs)
            ), f"median of {len(secs)} rows of {table.path.name}, on the clock `simulate` uses"
    steps = int(spec.train.get("steps", 1000))
    load = os.getloadavg()[0]  # other work on the cores inflates this timing (README, "Threads under load")
    step_s = _timed_step_s(configs, threads, int(spec.train.get("batch_size", 64)))
    return (
        step_s * steps * 1.1,
        f"short timing: {step_s * 1000:.0f} ms/step x {steps} steps + 10% for evaluation, at load {load:.1f}",
    )


def plan(spec: Any, *, draws: int = 100, workers: int | None = None) -> list[str]:
    """The plan as lines of text (see the module docstring)."""
    workers = workers or spec.jobs
    threads, _ = choose_threads(jobs=workers, requested=int(spec.train.get("threads") or 0))
    lines = [f"spec {spec.source}: study {spec.name!r}, valid", "space:"]
    lines += [f"  {name:<24} {_size(dim)}" for name, dim in spec.space.items()] or [
        "  (no searched dimension)"
    ]
    share, ok = trainable_share(spec, _draws(spec, draws))
    latency = " (latency is checked when each trial starts)" if spec.constraints.max_latency_ms else ""
    lines.append(f"trainable: {share:.0%} of {draws} random draws within max_params / max_flops{latency}")
    if not ok:
        lines.append("warning: no draw is trainable: loosen [constraints] or narrow [space]")
        return lines
    trial_s, source = _trial_seconds(spec, ok, workers, threads)
    lines.append(
        f"seconds per trained trial: ~{trial_s:.0f} s ({source}) with {workers} worker(s) x {threads} thread(s)"
    )
    fixed = (len(spec.baseline_lrs) or 1) if spec.baseline else 0
    if spec.timeout_s:
        fit = spec.timeout_s * workers / trial_s
        lines.append(
            f"budget: timeout_min {spec.timeout_s / 60:g} -> ~{fit:.0f} trials start before it "
            f"(then at most n_trials={spec.n_trials}; {fixed} baseline trials come first and are shorter)"
        )
    elif spec.n_trials:
        lines.append(f"budget: {spec.n_trials} trials -> ~{spec.n_trials * trial_s / workers / 60:.0f} min")
    es = spec.early_stopping
    if es.enabled and es.rungs:
        how = (
            f" (fraction {es.fraction:g} of the reference baseline's val)"
            if es.rule == "behind-baseline"
            else ""
        )
        steps = f"step{'s' * (len(es.rungs) > 1)} {', '.join(map(str, es.rungs))}"
        first = es.rungs[0] / int(spec.train.get("steps", 1000))
        lines.append(
            f"early stopping: {es.rule} at {steps}{how}; "
            f"a trial stopped at step {es.rungs[0]} costs ~{first:.0%} of a trained one, so more trials start"
        )
    if spec.warm_start:
        rows, skipped = warm_start_plan(spec)
        if skipped:
            lines.append(f"warm start: none: {skipped}")
        else:
            lines.append(
                f"warm start: {len(rows)} trials from {spec.warm_start} "
                f"(rows {', '.join(str(r['index']) for r, _ in rows)})"
            )
    if spec.verify_seeds:
        per_member = spec.verify_seeds * trial_s / workers / 60
        lines.append(
            f"seed check: {spec.verify_seeds} seeds x (front members in the region of interest + the reference "
            f"baseline): ~{per_member:.0f} min per member, after the search"
        )
    return lines
