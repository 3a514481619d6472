"""Ablations: a full grid of factor levels × seeds, everything else fixed, reported as paired differences.

An ablation spec is a study spec with an ``[ablation]`` table (see ``studies/ablation_*.toml``)::

    [ablation]
    seeds = 3                                  # n → seeds 0..n-1, or an explicit list
    reference = { contexts = "sequential" }    # optional; default: the first level of each factor
    [ablation.factors]
    contexts = ["sequential", "independent"]   # FocalNetConfig fields, derived arch names, "train.<field>"
    config = ["tiny", "deep-thin", "baseline"] # special: named whole configurations
    [ablation.configs.tiny]                    # FocalNetConfig overrides (or backbone = "baseline" + its fields)
    embed_dim = 96

Every cell uses the same data, budget and seed set, so the difference between two cells with the same seed
is a paired observation. Statistics: per seed, the difference ``level − reference`` is averaged over the
other factors' level combinations; the primary interval is a paired t-interval over seeds, with a
percentile bootstrap interval alongside.
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import difflib
import itertools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from search.spec import DERIVED_ARCH, MODEL_KEYS, SpecError

__all__ = [
    "BUILTIN_CONFIGS",
    "CONFIDENCE",
    "METRICS",
    "Ablation",
    "ablation_artifacts",
    "ablation_report",
    "ablation_trials",
    "bootstrap_interval",
    "cell_name",
    "missing_trials",
    "paired_t_interval",
    "parse_ablation",
    "validate_ablation",
]

CONFIDENCE = 0.95
BOOTSTRAP_N = 10_000
BOOTSTRAP_SEED = 0
#: Reported metrics: (id, label). ``val.*``/``test.*`` read the trial's metric dicts; the rest are costs.
METRICS: tuple[tuple[str, str], ...] = (
    ("val.pck_0.05", "val PCK@0.05"),
    ("test.pck_0.05", "test PCK@0.05"),
    ("val.pck_0.1", "val PCK@0.1"),
    ("test.pck_0.1", "test PCK@0.1"),
    ("val.mpe_px", "val err px"),
    ("test.mpe_px", "test err px"),
    ("params", "params"),
    ("flops", "FLOPs"),
    ("latency_ms", "latency ms"),
)
#: Named configurations usable as ``config`` levels without defining them (a definition wins).
BUILTIN_CONFIGS: dict[str, dict[str, Any]] = {"baseline": {"backbone": "baseline"}}
_TABLE_KEYS = ("seeds", "reference", "factors", "configs")
_CONFIG_FACTOR = "config"
_LIVE_STATES = ("COMPLETE", "WAITING", "RUNNING")


@dataclass(frozen=True)
class Ablation:
    """A validated ``[ablation]`` table. Levels keep their TOML values (lists for ``depths``)."""

    factors: dict[str, tuple[Any, ...]]
    seeds: tuple[int, ...]
    reference: dict[str, Any]
    configs: dict[str, dict[str, Any]]

    def cells(self) -> list[dict[str, Any]]:
        """Every level combination, in factor order (the last factor varies fastest)."""
        names = list(self.factors)
        return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*self.factors.values())]


# ----------------------------------------------------------------------------------------------------------
# parsing


def _err(spec: Any, key: str, problem: str, allowed: Any = None) -> SpecError:
    msg = f"{spec.source}: ablation.{key}: {problem}"
    if allowed is not None:
        msg += "; allowed: " + (allowed if isinstance(allowed, str) else ", ".join(map(str, allowed)))
    return SpecError(msg, key=f"ablation.{key}")


def _fmt_level(v: Any) -> str:
    """A level as it appears in names: ``[2, 2, 6, 2]`` → ``2-2-6-2``, ``True`` → ``true``."""
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, list | tuple):
        return "-".join(_fmt_level(x) for x in v)
    return str(v)


def cell_name(cell: dict[str, Any], seed: int | None = None) -> str:
    """``"contexts=independent,focal_levels=3"`` (``",seed=1"`` appended when ``seed`` is given)."""
    name = ",".join(f"{k}={_fmt_level(v)}" for k, v in cell.items())
    return name if seed is None else f"{name},seed={seed}"


def _factor_names() -> tuple[list[str], list[str]]:
    from focalnet import FocalNetConfig
    from search.train import TrainConfig

    arch = [f.name for f in dataclasses.fields(FocalNetConfig)] + list(DERIVED_ARCH)
    train = [f"train.{f.name}" for f in dataclasses.fields(TrainConfig) if f.name != "seed"]
    return arch, train


def _flatten_factors(spec: Any, table: Any) -> dict[str, Any]:
    """``train.lr = [..]`` nests in TOML, ``"train.lr" = [..]`` does not; ``arch.x`` is just ``x``."""
    if not isinstance(table, dict) or not table:
        raise _err(spec, "factors", "needs at least one factor", "ablation.factors.<name> = [level, ...]")
    flat: dict[str, Any] = {}
    for k, v in table.items():
        if k in ("train", "arch") and isinstance(v, dict):
            for k2, v2 in v.items():
                flat[f"{k}.{k2}"] = v2
        else:
            flat[k] = v
    return {k.removeprefix("arch."): v for k, v in flat.items()}


def _parse_configs(spec: Any, table: Any) -> dict[str, dict[str, Any]]:
    from focalnet import BaselineConfig, FocalNetConfig

    if table is None:
        return {}
    if not isinstance(table, dict):
        raise _err(spec, "configs", f"expected a table of named configurations, got {table!r}")
    fn_keys = [f.name for f in dataclasses.fields(FocalNetConfig)] + list(DERIVED_ARCH)
    bl_keys = [f.name for f in dataclasses.fields(BaselineConfig)]
    out: dict[str, dict[str, Any]] = {}
    for name, cfg in table.items():
        if not isinstance(cfg, dict):
            raise _err(spec, f"configs.{name}", f"expected a table of FocalNetConfig fields, got {cfg!r}")
        backbone = cfg.get("backbone", "focalnet")
        if backbone not in ("focalnet", "baseline"):
            raise _err(
                spec, f"configs.{name}.backbone", f"unknown backbone {backbone!r}", ("focalnet", "baseline")
            )
        known = ["backbone", *MODEL_KEYS, *(bl_keys if backbone == "baseline" else fn_keys)]
        for k in cfg:
            if k not in known:
                close = difflib.get_close_matches(k, known, n=1, cutoff=0.6)
                hint = f"unknown key {k!r}" + (f"; did you mean {close[0]!r}?" if close else "")
                raise _err(spec, f"configs.{name}", hint, None if close else known)
        out[str(name)] = dict(cfg)
    return out


def _parse_seeds(spec: Any, v: Any) -> tuple[int, ...]:
    allowed = "an integer n >= 1 (seeds 0..n-1) or a list of distinct integers >= 0"
    if isinstance(v, int) and not isinstance(v, bool):
        if v < 1:
            raise _err(spec, "seeds", f"needs at least one seed, got {v}", allowed)
        return tuple(range(v))
    if isinstance(v, list):
        if not v:
            raise _err(spec, "seeds", "needs at least one seed, got []", allowed)
        if not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in v) or len(
            set(v)
        ) != len(v):
            raise _err(spec, "seeds", f"bad seed list {v!r}", allowed)
        return tuple(v)
    raise _err(spec, "seeds", f"expected an integer or a list, got {v!r}", allowed)


def _config_overrides(configs: dict[str, dict[str, Any]], name: str) -> dict[str, Any]:
    """A named configuration as ``resolve_config`` model overrides."""
    cfg = dict(configs[name])
    backbone = cfg.pop("backbone", "focalnet")
    top = {k: cfg.pop(k) for k in list(cfg) if k in MODEL_KEYS}
    return {"backbone": backbone, **top, ("baseline" if backbone == "baseline" else "focalnet"): cfg}


def _cell_overrides(ab: Ablation, cell: dict[str, Any], seed: int) -> dict[str, Any]:
    """``resolve_config`` overrides of one (cell, seed): the named config first, then the other factors."""
    model: dict[str, Any] = {}
    train: dict[str, Any] = {}
    if _CONFIG_FACTOR in cell:
        model = _config_overrides(ab.configs, cell[_CONFIG_FACTOR])
    for k, v in cell.items():
        if k == _CONFIG_FACTOR:
            continue
        if k.startswith("train."):
            train[k.removeprefix("train.")] = copy.deepcopy(v)
        else:
            model.setdefault("focalnet", {})[k] = copy.deepcopy(v)
    train["seed"] = seed
    return {"model": model, "train": train}


def _check_cell(spec: Any, ab: Ablation, cell: dict[str, Any], key: str, what: str) -> None:
    from search.space import resolve_config

    try:
        resolve_config(spec, {}, overrides=_cell_overrides(ab, cell, ab.seeds[0]))
    except SpecError as e:
        problem = str(e).removeprefix(f"{spec.source}: ").removeprefix("resolved config: ")
        allowed = "levels that build a valid config with [model] and the other factors' levels"
        raise _err(spec, key, f"{what} builds an invalid configuration: {problem}", allowed) from None


def parse_ablation(spec: Any) -> Ablation:
    """Validate ``spec.ablation`` (the raw TOML table) and every cell it implies; raise one-line SpecError."""
    table = spec.ablation
    if not isinstance(table, dict):
        raise SpecError(f"{spec.source}: ablation: expected a table, got {table!r}", key="ablation")
    for k in table:
        if k not in _TABLE_KEYS:
            close = difflib.get_close_matches(k, _TABLE_KEYS, n=1, cutoff=0.6)
            hint = (
                f"; did you mean 'ablation.{close[0]}'?" if close else f"; allowed: {', '.join(_TABLE_KEYS)}"
            )
            raise SpecError(f"{spec.source}: unknown key 'ablation.{k}'{hint}", key=f"ablation.{k}")
    # An ablation trains a fixed grid: sampled dimensions, variants or pruning would break the pairing.
    if spec.space:
        raise SpecError(f"{spec.source}: space: an ablation does not search; remove [space]", key="space")
    if spec.variants:
        raise SpecError(
            f"{spec.source}: study.variants: not used by an ablation; allowed: a 'config' factor with "
            f"[ablation.configs.<name>]",
            key="study.variants",
        )
    if spec.early_stopping.enabled and spec.early_stopping.rungs:
        raise SpecError(
            f"{spec.source}: early_stopping.enabled: pruning would drop cells unevenly; allowed: false",
            key="early_stopping.enabled",
        )

    seeds = _parse_seeds(spec, table.get("seeds", 3))
    configs = {**BUILTIN_CONFIGS, **_parse_configs(spec, table.get("configs"))}
    arch_names, train_names = _factor_names()
    valid = [*arch_names, *train_names, _CONFIG_FACTOR]
    factors: dict[str, tuple[Any, ...]] = {}
    for name, levels in _flatten_factors(spec, table.get("factors")).items():
        key = f"factors.{name}"
        if name == "train.seed":
            raise _err(spec, key, "the seed is not a factor: every cell runs every seed", "ablation.seeds")
        if name not in valid:
            close = difflib.get_close_matches(name, valid, n=1, cutoff=0.6)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise _err(
                spec, key, f"unknown factor {name!r}{hint}", "FocalNetConfig fields, train.<field>, config"
            )
        if not isinstance(levels, list) or not levels:
            raise _err(spec, key, f"needs a non-empty list of levels, got {levels!r}", "[level, level, ...]")
        names = [_fmt_level(v) for v in levels]
        if len(set(names)) != len(names):
            raise _err(spec, key, f"duplicate levels in {levels!r}")
        if name == _CONFIG_FACTOR:
            for v in levels:
                if v not in configs:
                    raise _err(spec, key, f"unknown named config {v!r}", sorted(configs))
        factors[name] = tuple(levels)

    ref_table = table.get("reference", {})
    if not isinstance(ref_table, dict):
        raise _err(spec, "reference", f"expected a table {{factor = level}}, got {ref_table!r}")
    reference = {k: v[0] for k, v in factors.items()}
    for k, v in ref_table.items():
        k = k.removeprefix("arch.")
        if k not in factors:
            raise _err(spec, f"reference.{k}", "not a factor", list(factors))
        match = [lv for lv in factors[k] if _fmt_level(lv) == _fmt_level(v)]
        if not match:
            raise _err(spec, f"reference.{k}", f"{v!r} is not a level", [_fmt_level(x) for x in factors[k]])
        reference[k] = match[0]

    ab = Ablation(factors=factors, seeds=seeds, reference=reference, configs=configs)
    # Each level alone (other factors at their reference) → blame that factor; then the whole grid.
    for name, levels in factors.items():
        for v in levels:
            _check_cell(spec, ab, {**reference, name: v}, f"factors.{name}", f"level {_fmt_level(v)!r}")
    for cell in ab.cells():
        _check_cell(spec, ab, cell, "factors", f"cell {cell_name(cell)!r}")
    return ab


def validate_ablation(spec: Any) -> Ablation | None:
    """Check an ablation spec before anything is written; None for a plain search spec."""
    return parse_ablation(spec) if spec.ablation is not None else None


# ----------------------------------------------------------------------------------------------------------
# trials


def ablation_trials(spec: Any) -> list[dict[str, Any]]:
    """The grid × seeds as fixed trials (same format as ``search.space.fixed_trials``), seed-major.

    Seed-major (all cells with seed 0, then all with seed 1, ...) so that an interrupted run holds whole
    seed blocks: every cell has the same number of seeds (± 1) and every finished block is fully paired.
    """
    ab = parse_ablation(spec)
    out = []
    for seed in ab.seeds:
        for cell in ab.cells():
            out.append(
                {
                    "role": "cell",
                    "name": cell_name(cell, seed),
                    "overrides": _cell_overrides(ab, cell, seed),
                    "cell": copy.deepcopy(cell),
                    "seed": seed,
                }
            )
    return out


def _trial_key(trial: Any) -> str | None:
    """The (cell, seed) name of a stored trial: user attrs ``cell``/``seed``, else its ``name``."""
    ua = trial.user_attrs
    if ua.get("role") not in (None, "cell"):
        return None
    if isinstance(ua.get("cell"), dict) and ua.get("seed") is not None:
        return cell_name(ua["cell"], ua["seed"])
    return ua.get("name")


def missing_trials(study: Any, spec: Any) -> list[dict[str, Any]]:
    """The grid's (cell, seed) trials that are neither COMPLETE nor queued/running — to re-enqueue."""
    present = {_trial_key(t) for t in study.get_trials(deepcopy=False) if t.state.name in _LIVE_STATES}
    return [t for t in ablation_trials(spec) if t["name"] not in present]


# ----------------------------------------------------------------------------------------------------------
# statistics


def paired_t_interval(diffs: Any, confidence: float = CONFIDENCE) -> tuple[float, float, float, float]:
    """``(mean, half_width, lo, hi)`` of the paired t-interval; NaN width with fewer than 2 pairs."""
    from scipy import stats

    d = np.asarray(diffs, dtype=float)
    if d.size == 0:
        return (math.nan,) * 4
    mean = float(d.mean())
    if d.size < 2:
        return mean, math.nan, math.nan, math.nan
    half = float(stats.t.ppf(0.5 + confidence / 2, d.size - 1) * d.std(ddof=1) / math.sqrt(d.size))
    return mean, half, mean - half, mean + half


def bootstrap_interval(
    diffs: Any, n: int = BOOTSTRAP_N, seed: int = BOOTSTRAP_SEED, confidence: float = CONFIDENCE
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean difference (fixed RNG seed → reproducible)."""
    d = np.asarray(diffs, dtype=float)
    if d.size < 2:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, d.size, size=(n, d.size))].mean(axis=1)
    lo, hi = np.quantile(means, [0.5 - confidence / 2, 0.5 + confidence / 2])
    return float(lo), float(hi)


# ----------------------------------------------------------------------------------------------------------
# report


def _metric(trial: Any, metric: str) -> float:
    split, _, key = metric.partition(".")
    v = trial.user_attrs.get(split, {}).get(key) if key else trial.user_attrs.get(split)
    return float(v) if v is not None else math.nan


def _collect(study: Any, ab: Ablation) -> dict[tuple[str, int], dict[str, float]]:
    """``{(cell name, seed): {metric: value}}`` of COMPLETE, trained cell trials (first one wins)."""
    wanted = {cell_name(c, s): (cell_name(c), s) for s in ab.seeds for c in ab.cells()}
    out: dict[tuple[str, int], dict[str, float]] = {}
    for t in sorted(study.get_trials(deepcopy=False), key=lambda t: t.number):
        key = wanted.get(_trial_key(t) or "")
        if t.state.name != "COMPLETE" or key is None or key in out or "test" not in t.user_attrs:
            continue
        out[key] = {m: _metric(t, m) for m, _ in METRICS}
    return out


def _per_seed_level(
    results: dict[tuple[str, int], dict[str, float]],
    ab: Ablation,
    factor: str,
    level: Any,
    seed: int,
    metric: str,
) -> float:
    """Mean of ``metric`` over the other factors' combinations at (factor=level, seed); NaN if any is missing."""
    others = {k: v for k, v in ab.factors.items() if k != factor}
    vals = []
    for combo in itertools.product(*others.values()):
        cell = dict(zip(others, combo, strict=True))
        cell[factor] = level
        r = results.get((cell_name({k: cell[k] for k in ab.factors}), seed))
        vals.append(r[metric] if r else math.nan)
    return float(np.mean(vals)) if vals and not any(math.isnan(v) for v in vals) else math.nan


def _paired_diffs(results: dict, ab: Ablation, factor: str, level: Any, metric: str) -> list[float]:
    """Per seed: level − reference, each averaged over the other factors (seeds with gaps are dropped)."""
    ref = ab.reference[factor]
    out = []
    for s in ab.seeds:
        d = _per_seed_level(results, ab, factor, level, s, metric) - _per_seed_level(
            results, ab, factor, ref, s, metric
        )
        if not math.isnan(d):
            out.append(d)
    return out


def _fmt(metric: str, v: float, *, diff: bool = False) -> str:
    """PCK in percent(-points), error in px, params exact, FLOPs in millions."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    sign = "+" if diff else ""
    if "pck" in metric:
        return f"{100 * v:{sign}.1f}"
    if metric == "params":
        return f"{v:{sign},.0f}"
    if metric == "flops":
        return f"{v / 1e6:{sign}.2f}M"
    return f"{v:{sign}.2f}"


def _label(metric: str) -> str:
    return dict(METRICS)[metric]


def _verdict(
    factor: str,
    level: Any,
    ref: Any,
    metric: str,
    diffs: list[float],
    mean: float,
    half: float,
    lo: float,
    hi: float,
) -> str:
    n = len(diffs)
    unit = " pp" if "pck" in metric else ""
    head = f"{factor}={_fmt_level(level)} vs {_fmt_level(ref)}"
    if n == 0:
        return f"{head}: no paired results yet"
    if n == 1:
        return f"{head}: {_fmt(metric, mean, diff=True)}{unit} {_label(metric)}, no interval with 1 seed"
    sig = "significant" if lo > 0 or hi < 0 else "not significant"
    return (
        f"{head}: {_fmt(metric, mean, diff=True)} ± {_fmt(metric, half)}{unit} {_label(metric)} "
        f"({CONFIDENCE:.0%} CI [{_fmt(metric, lo, diff=True)}, {_fmt(metric, hi, diff=True)}]), {sig} at {n} seeds"
    )


_CSV_COLUMNS = (
    "section", "cell", "factor", "level", "reference", "metric", "n",
    "mean", "std", "diff", "half_width", "ci_lo", "ci_hi", "boot_lo", "boot_hi", "significant", "verdict",
)  # fmt: skip


def _rows(study: Any, ab: Ablation, primary: str) -> tuple[list[dict[str, Any]], dict]:
    results = _collect(study, ab)
    rows: list[dict[str, Any]] = []
    for cell in ab.cells():
        name = cell_name(cell)
        for metric, _ in METRICS:
            vals = np.array(
                [results[(name, s)][metric] for s in ab.seeds if (name, s) in results], dtype=float
            )
            vals = vals[~np.isnan(vals)]
            rows.append({
                "section": "cell", "cell": name, "metric": metric, "n": int(vals.size),
                "mean": float(vals.mean()) if vals.size else math.nan,
                "std": float(vals.std(ddof=1)) if vals.size > 1 else math.nan,
            })  # fmt: skip
    for factor, levels in ab.factors.items():
        ref = ab.reference[factor]
        for level in levels:
            if _fmt_level(level) == _fmt_level(ref):
                continue
            for metric, _ in METRICS:
                diffs = _paired_diffs(results, ab, factor, level, metric)
                mean, half, lo, hi = paired_t_interval(diffs)
                blo, bhi = bootstrap_interval(diffs)
                sig = bool(len(diffs) > 1 and (lo > 0 or hi < 0))
                rows.append({
                    "section": "diff", "factor": factor, "level": _fmt_level(level), "reference": _fmt_level(ref),
                    "metric": metric, "n": len(diffs), "diff": mean, "half_width": half, "ci_lo": lo, "ci_hi": hi,
                    "boot_lo": blo, "boot_hi": bhi, "significant": sig,
                    "verdict": _verdict(factor, level, ref, metric, diffs, mean, half, lo, hi) if metric == primary else "",
                })  # fmt: skip
    return rows, results


def _table(header: list[str], body: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]

    def line(r: list[str]) -> str:
        return "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )

    return [line(header), "  ".join("-" * w for w in widths), *(line(r) for r in body)]


def ablation_report(
    study: Any, spec: Any, *, csv_path: str | Path | None = None
) -> tuple[str, list[dict[str, Any]]]:
    """Terminal report (per-cell mean ± std, paired differences with 95% CIs, verdicts) and its rows.

    ``rows`` are long-format dicts with the columns of the CSV (``section`` = ``cell`` or ``diff``);
    written to ``csv_path`` when given. Only COMPLETE trials that trained are used.
    """
    ab = parse_ablation(spec)
    primary = f"test.{spec.objectives.accuracy}"
    rows, results = _rows(study, ab, primary)
    n_cells = len(ab.cells())
    lines = [
        f"Ablation {spec.name}: {len(ab.factors)} factor(s), {n_cells} cells × {len(ab.seeds)} seeds "
        f"(seeds {', '.join(map(str, ab.seeds))}); {len(results)}/{n_cells * len(ab.seeds)} trials complete",
        f"reference: {cell_name(ab.reference)}",
        "",
        "Per cell: mean ± std over seeds (PCK in %, error in px)",
    ]
    by_cell = {(r["cell"], r["metric"]): r for r in rows if r["section"] == "cell"}
    body = []
    for cell in ab.cells():
        name = cell_name(cell)
        n = by_cell[(name, METRICS[0][0])]["n"]
        cols = [name, str(n)]
        for m, _ in METRICS:
            r = by_cell[(name, m)]
            std = "" if math.isnan(r["std"]) else f" ± {_fmt(m, r['std'])}"
            cols.append(_fmt(m, r["mean"]) + std)
        body.append(cols)
    lines += _table(["cell", "n", *(label for _, label in METRICS)], body)
    lines += [
        "",
        "Paired differences vs reference: per seed, level − reference averaged over the other factors' levels;",
        f"CI = {CONFIDENCE:.0%} paired t-interval over seeds (primary); bootstrap = {CONFIDENCE:.0%} percentile "
        f"bootstrap of the mean ({BOOTSTRAP_N} resamples, seed {BOOTSTRAP_SEED})",
    ]
    body = []
    for r in rows:
        if r["section"] != "diff":
            continue
        m = r["metric"]
        body.append([
            f"{r['factor']}={r['level']} vs {r['reference']}", _label(m), str(r["n"]),
            _fmt(m, r["diff"], diff=True) + ("" if math.isnan(r["half_width"]) else f" ± {_fmt(m, r['half_width'])}"),
            f"[{_fmt(m, r['ci_lo'], diff=True)}, {_fmt(m, r['ci_hi'], diff=True)}]",
            f"[{_fmt(m, r['boot_lo'], diff=True)}, {_fmt(m, r['boot_hi'], diff=True)}]",
            "yes" if r["significant"] else "no",
        ])  # fmt: skip
    lines += _table(["comparison", "metric", "n", "diff", "t CI", "bootstrap CI", "sig"], body)
    lines += ["", f"Verdicts ({_label(primary)}, t-interval):"]
    lines += [f"  {r['verdict']}" for r in rows if r.get("verdict")]
    text = "\n".join(lines)
    if csv_path is not None:
        _write_csv(rows, Path(csv_path))
    return text, rows


def _write_csv(rows: list[dict[str, Any]], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=_CSV_COLUMNS, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()})


def _chart(study: Any, spec: Any, ab: Ablation, path: Path) -> None:
    """One panel per factor: per-level mean of test and val accuracy, error bars = std over seeds."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    results = _collect(study, ab)
    acc = spec.objectives.accuracy
    fig = Figure(figsize=(4.2 * len(ab.factors), 3.6), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(ab.factors), squeeze=False)[0]
    for ax, (factor, levels) in zip(axes, ab.factors.items(), strict=True):
        x = np.arange(len(levels))
        for offset, split, color in ((-0.1, "test", "C0"), (0.1, "val", "C1")):
            means, stds = [], []
            for level in levels:
                per_seed = [
                    _per_seed_level(results, ab, factor, level, s, f"{split}.{acc}") for s in ab.seeds
                ]
                v = np.array([p for p in per_seed if not math.isnan(p)]) * 100
                means.append(v.mean() if v.size else np.nan)
                stds.append(v.std(ddof=1) if v.size > 1 else 0.0)
            ax.errorbar(x + offset, means, yerr=stds, fmt="o", capsize=4, color=color, label=f"{split} {acc}")
        ax.set_xticks(
            x,
            [
                _fmt_level(v) + (" (ref)" if _fmt_level(v) == _fmt_level(ab.reference[factor]) else "")
                for v in levels
            ],
        )
        ax.set_title(factor)
        ax.set_ylabel(f"{acc.replace('pck_', 'PCK@')} (%)  mean ± std over seeds")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"{spec.name}: {len(ab.seeds)} seeds")
    fig.savefig(path, dpi=110)


def ablation_artifacts(study: Any, spec: Any, out_dir: str | Path) -> list[Path]:
    """Write ``ablation.csv``, ``ablation_report.txt`` and ``ablation.png`` to ``out_dir``; return the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    csv_path, txt_path, png_path = out / "ablation.csv", out / "ablation_report.txt", out / "ablation.png"
    text, _ = ablation_report(study, spec, csv_path=csv_path)
    txt_path.write_text(text + "\n")
    _chart(study, spec, parse_ablation(spec), png_path)
    return [csv_path, txt_path, png_path]
