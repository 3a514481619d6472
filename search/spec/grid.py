"""Ablations: a full grid of factor levels × seeds, everything else fixed, reported as paired differences.

An ablation spec is a study spec with an ``[ablation]`` table (see ``studies/ablation_*.toml``)::

    [ablation]
    seeds = 3                                  # n → seeds 0..n-1, or an explicit list
    reference = { contexts = "sequential" }    # optional; default: the first level of each factor
    [ablation.factors]
    contexts = ["sequential", "independent"]   # FocalNetConfig fields, derived arch names, "train.<field>",
                                               # "head.<HeadConfig field>", "model.coord_channels"
    config = ["tiny", "deep-thin", "baseline"] # special: named whole configurations
    [ablation.configs.tiny]                    # FocalNetConfig overrides (or backbone = "baseline" + its fields)
    embed_dim = 96

The built-in ``baseline`` config is the team's extractor with its own head (flatten, last block): ``[model]
head`` does not change it, a ``head.*`` factor does (so heads × {baseline, FocalNet} is one grid).

Every cell uses the same data, budget and seed set, so the difference between two cells with the same seed
is a paired observation. Statistics: per seed, the difference ``level − reference`` is averaged over the
other factors' level combinations; the primary interval is a paired t-interval over seeds, with a
percentile bootstrap interval alongside.

This module is the design: :func:`parse_ablation` checks every key, factor, level and reference and
builds each cell's configuration once, so a bad grid fails before anything is written;
:func:`ablation_trials` lists the cells seed-major as the fixed trials a study enqueues, and
:func:`missing_trials` the ones a resumed study still lacks. The analysis (report, CSV, chart,
intervals) is :mod:`search.report.ablation`, which imports this module, never the reverse.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import itertools
from dataclasses import dataclass
from typing import Any

from focalnet.config import BaselineConfig, FocalNetConfig, HeadConfig
from search.spec.schema import DERIVED_ARCH, MODEL_DIMS, MODEL_KEYS, SpecError
from search.spec.space import BASELINE_OVERRIDES, resolve_config
from search.task.train_config import TrainConfig

__all__ = [
    "BUILTIN_CONFIGS",
    "Ablation",
    "ablation_trials",
    "cell_name",
    "format_level",
    "missing_trials",
    "parse_ablation",
    "trial_key",
    "validate_ablation",
]

#: Named configurations usable as ``config`` levels without defining them (a definition wins).
BUILTIN_CONFIGS: dict[str, dict[str, Any]] = {"baseline": copy.deepcopy(BASELINE_OVERRIDES)}
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


def format_level(v: Any) -> str:
    """A level as it appears in names: ``[2, 2, 6, 2]`` → ``2-2-6-2``, ``True`` → ``true``."""
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, list | tuple):
        return "-".join(format_level(x) for x in v)
    return str(v)


def cell_name(cell: dict[str, Any], seed: int | None = None) -> str:
    """``"contexts=independent,focal_levels=3"`` (``",seed=1"`` appended when ``seed`` is given)."""
    name = ",".join(f"{k}={format_level(v)}" for k, v in cell.items())
    return name if seed is None else f"{name},seed={seed}"


def _factor_names() -> tuple[list[str], list[str]]:
    """(model factors: FocalNetConfig fields, derived names, ``head.*``, ``model.*``; ``train.*`` factors)."""
    arch = [f.name for f in dataclasses.fields(FocalNetConfig)] + list(DERIVED_ARCH)
    arch += [f"head.{f.name}" for f in dataclasses.fields(HeadConfig)] + [f"model.{k}" for k in MODEL_DIMS]
    train = [f"train.{f.name}" for f in dataclasses.fields(TrainConfig) if f.name != "seed"]
    return arch, train


def _flatten_factors(spec: Any, table: Any) -> dict[str, Any]:
    """``train.lr = [..]`` nests in TOML, ``"train.lr" = [..]`` does not; ``arch.x`` is just ``x``."""
    if not isinstance(table, dict) or not table:
        raise _err(spec, "factors", "needs at least one factor", "ablation.factors.<name> = [level, ...]")
    flat: dict[str, Any] = {}
    for k, v in table.items():
        if k in ("train", "arch", "head", "model") and isinstance(v, dict):
            for k2, v2 in v.items():
                flat[f"{k}.{k2}"] = v2
        else:
            flat[k] = v
    return {k.removeprefix("arch."): v for k, v in flat.items()}


def _parse_configs(spec: Any, table: Any) -> dict[str, dict[str, Any]]:
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
    cfg = copy.deepcopy(configs[name])  # factors below write into it
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
        elif k.startswith("head."):
            model.setdefault("head", {})[k.removeprefix("head.")] = copy.deepcopy(v)
        elif k.startswith("model."):
            model[k.removeprefix("model.")] = copy.deepcopy(v)
        else:
            model.setdefault("focalnet", {})[k] = copy.deepcopy(v)
    train["seed"] = seed
    return {"model": model, "train": train}


def _check_cell(spec: Any, ab: Ablation, cell: dict[str, Any], key: str, what: str) -> None:
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
                spec,
                key,
                f"unknown factor {name!r}{hint}",
                "FocalNetConfig fields, head.<field>, model.coord_channels, train.<field>, config",
            )
        if not isinstance(levels, list) or not levels:
            raise _err(spec, key, f"needs a non-empty list of levels, got {levels!r}", "[level, level, ...]")
        names = [format_level(v) for v in levels]
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
        match = [lv for lv in factors[k] if format_level(lv) == format_level(v)]
        if not match:
            raise _err(spec, f"reference.{k}", f"{v!r} is not a level", [format_level(x) for x in factors[k]])
        reference[k] = match[0]

    ab = Ablation(factors=factors, seeds=seeds, reference=reference, configs=configs)
    # Each level alone (other factors at their reference) → blame that factor; then the whole grid.
    for name, levels in factors.items():
        for v in levels:
            _check_cell(spec, ab, {**reference, name: v}, f"factors.{name}", f"level {format_level(v)!r}")
    for cell in ab.cells():
        _check_cell(spec, ab, cell, "factors", f"cell {cell_name(cell)!r}")
    return ab


def validate_ablation(spec: Any) -> Ablation | None:
    """Check an ablation spec before anything is written; None for a plain search spec."""
    return parse_ablation(spec) if spec.ablation is not None else None


# ----------------------------------------------------------------------------------------------------------
# trials


def ablation_trials(spec: Any) -> list[dict[str, Any]]:
    """The grid × seeds as fixed trials (same format as ``search.spec.space.fixed_trials``), seed-major.

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


def trial_key(trial: Any) -> str | None:
    """The (cell, seed) name of a stored trial: user attrs ``cell``/``seed``, else its ``name``."""
    ua = trial.user_attrs
    if ua.get("role") not in (None, "cell"):
        return None
    if isinstance(ua.get("cell"), dict) and ua.get("seed") is not None:
        return cell_name(ua["cell"], ua["seed"])
    return ua.get("name")


def missing_trials(study: Any, spec: Any) -> list[dict[str, Any]]:
    """The grid's (cell, seed) trials that are neither COMPLETE nor queued/running — to re-enqueue."""
    present = {trial_key(t) for t in study.get_trials(deepcopy=False) if t.state.name in _LIVE_STATES}
    return [t for t in ablation_trials(spec) if t["name"] not in present]
