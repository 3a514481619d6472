"""Search space: sample a trial's parameters, resolve them into a complete config, check a space up front.

Dimension names are dotted paths into the resolved config (``arch.*`` → ``ModelConfig.focalnet``,
``head.*`` → ``ModelConfig.head``, ``model.coord_channels`` → ``ModelConfig.coord_channels``,
``train.*`` → ``TrainConfig``). Three ``arch`` names are derived rather than fields; they build ``depths``:

* ``arch.num_stages`` — number of stages (its upper bound is clipped to ``focalnet.max_stages`` of the
  sampled patch size, so the sampler never proposes an impossible layout);
* ``arch.depth`` — blocks per stage;
* ``arch.mid_depth_ratio`` — multiplies the depth of stage 3 when there are at least 3 stages
  (``depth=2, ratio=3, num_stages=4`` → ``depths = (2, 2, 6, 2)``). Only sampled when it matters.

``head.stage`` counts stages like a Python index (-1 = last). Both bounds of an integer range for it are
clamped into the sampled backbone's ``[-n, n - 1]`` (``{low = -3, high = -2}`` reads stage 0 of a 2-stage
and the last of a 1-stage FocalNet), as ``arch.num_stages`` is clipped to the patch size; explicit
``choices`` are not clamped, so :func:`check_space` refuses a choice some layout cannot take.

``[model]`` gives the fixed values; a searched dimension wins over them (a searched layout replaces
``model.depths``). ``[model] head = {...}`` and ``head.*`` dimensions apply to FocalNet trials and
ablation cells; the baseline's fixed trial keeps the team's head (flatten, last block), whatever they
say, so every study compares against the extractor the team runs today. :func:`resolve_config` writes every field explicitly so a stored config reproduces
without the spec.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import itertools
import math
from typing import Any

from focalnet.config import BaselineConfig, FocalNetConfig, ModelConfig, fold_legacy_head_keys, max_stages
from search.spec.schema import (
    BASELINE_DIMS,
    DERIVED_ARCH,
    MODEL_DIMS,
    MODEL_KEYS,
    Dimension,
    SpecError,
    StudySpec,
)
from search.task.train_config import TrainConfig

__all__ = [
    "BASELINE_OVERRIDES",
    "VARIANTS",
    "check_space",
    "contains",
    "fixed_trials",
    "resolve_config",
    "sample_params",
]

#: The paper's named FocalNet variants, as FocalNetConfig overrides (enqueued as fixed trials).
VARIANTS: dict[str, dict[str, Any]] = {
    "T-SRF": {"embed_dim": 96, "depths": [2, 2, 6, 2], "focal_levels": 2, "focal_windows": 3},
    "T-LRF": {"embed_dim": 96, "depths": [2, 2, 6, 2], "focal_levels": 3, "focal_windows": 3},
    "deep-thin": {"embed_dim": 64, "depths": [3, 3, 16, 3], "focal_levels": 2, "focal_windows": 3},
}

#: The baseline fixed trial: the team's extractor with its own head, whatever ``[model]`` says of heads.
BASELINE_OVERRIDES: dict[str, Any] = {
    "backbone": "baseline",
    "head": {"kind": "flatten", "stage": -1},
    "coord_channels": False,
}

#: Above this many corners per patch size, :func:`check_space` tests one dimension at a time instead.
MAX_CORNERS = 1024


# ----------------------------------------------------------------------------------------------------------
# helpers


def _defaults(cls: type) -> dict[str, Any]:
    """Default value of every field (cached: read it, never mutate it; the config classes are frozen)."""
    return _cached_defaults(cls)


@functools.cache
def _cached_defaults(cls: type) -> dict[str, Any]:
    out = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
    return out


def _listify(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _listify(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_listify(x) for x in v]
    return v


def _deep_merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def _fixed_arch(spec: StudySpec) -> dict[str, Any]:
    """``[model]`` values that belong to the backbone (FocalNetConfig fields and derived names)."""
    return {k: v for k, v in spec.model.items() if k not in MODEL_KEYS}


def _base_depths(spec: StudySpec) -> tuple[int, ...]:
    return tuple(spec.model.get("depths", _defaults(FocalNetConfig)["depths"]))


def _ratio(depths: tuple[int, ...] | list[int]) -> int:
    if len(depths) >= 3 and depths[0] >= 1 and depths[2] % depths[0] == 0:
        return max(1, depths[2] // depths[0])
    return 1


def _derive_depths(fn: dict[str, Any], base: tuple[int, ...] | list[int]) -> None:
    """Replace derived names in ``fn`` (num_stages/depth/mid_depth_ratio) by ``depths``, in place.

    Missing derived values are read off ``base`` (``(2, 2, 6, 2)`` → 4 stages, depth 2, ratio 3)."""
    derived = {k: fn.pop(k) for k in DERIVED_ARCH if k in fn}
    if not derived:
        return
    base = tuple(base) or (1,)
    n = derived.get("num_stages", len(base))
    d = derived.get("depth", base[0])
    r = derived.get("mid_depth_ratio", _ratio(base))
    depths = [d] * n
    if n >= 3:
        depths[2] = d * r
    fn["depths"] = depths


def _per_stage_tidy(fn: dict[str, Any]) -> None:
    """A per-stage list whose length no longer matches ``depths`` but whose entries agree → a scalar."""
    n = len(fn.get("depths", ()))
    for k in ("focal_levels", "focal_windows"):
        v = fn.get(k)
        if isinstance(v, list | tuple) and v and len(v) != n and len(set(v)) == 1:
            fn[k] = v[0]


def _fixed_head(spec: StudySpec) -> dict[str, Any]:
    """``[model] head`` as a new dict, with the legacy top-level head keys folded in."""
    return copy.deepcopy(fold_legacy_head_keys(spec.model))


def _fixed_value(spec: StudySpec, name: str) -> Any:
    """The ``[model]`` value (or the FocalNetConfig default) of an arch field."""
    return spec.model.get(name, _defaults(FocalNetConfig).get(name))


def _fixed_num_stages(spec: StudySpec) -> int:
    return int(spec.model.get("num_stages", len(_base_depths(spec))))


def _stage_range(dim: Dimension, n_stages: int) -> tuple[int, int]:
    """An integer ``head.stage`` range with both bounds clamped into ``[-n_stages, n_stages - 1]``.

    Never empty: ``{low = -3, high = -2}`` on a 1-stage backbone becomes ``[-1, -1]``. (``step`` is
    kept from the clamped low bound.)"""
    step = dim.step or 1
    lo = min(max(dim.low, -n_stages), n_stages - 1)
    hi = min(max(dim.top(), -n_stages), n_stages - 1)
    return lo, lo + (hi - lo) // step * step


# ----------------------------------------------------------------------------------------------------------
# sampling


def _suggest(trial: Any, name: str, dim: Dimension, *, high: Any = None) -> Any:
    if dim.kind == "categorical":
        return trial.suggest_categorical(name, list(dim.choices))
    if dim.kind == "int":
        return trial.suggest_int(
            name, dim.low, dim.top() if high is None else high, step=dim.step or 1, log=dim.log
        )
    return trial.suggest_float(name, dim.low, dim.high, step=dim.step, log=dim.log)


def _stage_cap(dim: Dimension, img_size: int, patch_size: int) -> int:
    """Highest reachable ``num_stages`` value for this patch size (respecting ``step``)."""
    hi = min(dim.top(), max_stages(img_size, patch_size))
    step = dim.step or 1
    return dim.low + (hi - dim.low) // step * step


def _family(spec: StudySpec) -> str:
    """The fixed model family: ``[model] backbone`` (default ``"focalnet"``)."""
    return str(spec.model.get("backbone", "focalnet"))


def _fixed_blocks(spec: StudySpec) -> int:
    """Conv blocks of the fixed ``[baseline]`` extractor."""
    return len(spec.baseline_model.get("channels", _defaults(BaselineConfig)["channels"]))


def _skipped(name: str, backbone: str, n_stages: int) -> bool:
    """A dimension sampling does not ask for: the other family's, or a ratio below 3 stages."""
    if name.startswith("arch.") and backbone == "baseline":
        return True
    if name.startswith("baseline.") and backbone != "baseline":
        return True
    return name == "arch.mid_depth_ratio" and n_stages < 3


def sample_params(trial: Any, spec: StudySpec) -> dict[str, Any]:
    """Sample every dimension of ``spec.space`` with Optuna's define-by-run API.

    Param names are the dotted dimension names. ``model.backbone`` is sampled first (a family's own
    dimensions are only sampled for it: ``arch.*`` for FocalNets, ``baseline.*`` for the conv extractor),
    then ``arch.patch_size``, then ``arch.num_stages`` with its upper bound clipped to
    ``max_stages(img_size, patch_size)``; ``arch.mid_depth_ratio`` is only sampled when there are at least
    3 stages; an integer ``head.stage`` range is clamped to the sampled number of stages (or blocks).
    """
    params: dict[str, Any] = {}
    img_size = int(_fixed_value(spec, "img_size"))
    patch = _fixed_value(spec, "patch_size")
    backbone = _family(spec)
    n_stages = _fixed_num_stages(spec) if backbone != "baseline" else _fixed_blocks(spec)
    for name, dim in spec.space.items():  # ordered by spec._dim_order: family, patch, layouts, rest
        if _skipped(name, backbone, n_stages):
            continue
        if name == "arch.num_stages":
            value = n_stages = _suggest(trial, name, dim, high=_stage_cap(dim, img_size, patch))
        elif name == "head.stage" and dim.kind == "int":
            lo, hi = _stage_range(dim, n_stages)
            value = trial.suggest_int(name, lo, hi, step=dim.step or 1)
        else:
            value = _suggest(trial, name, dim)
        if name == "model.backbone":
            backbone = value
            n_stages = _fixed_num_stages(spec) if backbone != "baseline" else _fixed_blocks(spec)
        elif name == "baseline.blocks":
            n_stages = value
        elif name == "arch.patch_size":
            patch = value
        params[name] = value
    return params


class _Outside(ValueError):
    """A replayed point has a value the space cannot draw, or lacks one it must."""


class _Replay:
    """A trial that answers `sample_params` from a given point, refusing what the space cannot draw."""

    def __init__(self, params: dict[str, Any]) -> None:
        self.params, self.asked = params, []

    def _get(self, name: str) -> Any:
        if name not in self.params:
            raise _Outside(f"{name}: missing")
        self.asked.append(name)
        return self.params[name]

    def suggest_categorical(self, name: str, choices: list[Any]) -> Any:
        v = self._get(name)
        if not any(v == c and type(v) is type(c) for c in choices):
            raise _Outside(f"{name}: {v!r} not in {choices}")
        return v

    def suggest_int(self, name: str, low: int, high: int, *, step: int = 1, log: bool = False) -> int:
        v = self._get(name)
        if isinstance(v, bool) or not isinstance(v, int) or not low <= v <= high or (v - low) % step:
            raise _Outside(f"{name}: {v!r} not in {low}..{high} step {step}")
        return v

    def suggest_float(
        self, name: str, low: float, high: float, *, step: float | None = None, log: bool = False
    ) -> float:
        v = self._get(name)
        if (
            isinstance(v, bool)
            or not isinstance(v, int | float)
            or not low * (1 - 1e-12) <= v <= high * (1 + 1e-12)
        ):
            raise _Outside(f"{name}: {v!r} not in [{low:g}, {high:g}]")
        return float(v)


def contains(spec: StudySpec, params: dict[str, Any]) -> bool:
    """Whether ``params`` is a point :func:`sample_params` can draw from ``spec``'s space: every value
    inside its dimension (with the same clipping and conditions), and no dimension missing or extra."""
    replay = _Replay(params)
    try:
        sample_params(replay, spec)
    except _Outside:
        return False
    return set(replay.asked) == set(params)


# ----------------------------------------------------------------------------------------------------------
# resolving


def _resolve(spec: StudySpec, params: dict[str, Any], overrides: dict | None) -> dict[str, Any]:
    """Like :func:`resolve_config` but raises the config classes' plain ``ValueError``."""
    fn_fields = {f.name for f in dataclasses.fields(FocalNetConfig)}
    fn = copy.deepcopy(_fixed_arch(spec))
    train = copy.deepcopy(spec.train)
    head = _fixed_head(spec)
    top = {k: spec.model[k] for k in MODEL_DIMS if k in spec.model}
    derived: dict[str, Any] = {}  # baseline.width / baseline.blocks
    for name, value in params.items():
        prefix, _, leaf = name.partition(".")
        if prefix == "arch" and (leaf in fn_fields or leaf in DERIVED_ARCH):
            fn[leaf] = value
        elif prefix == "train":
            train[leaf] = value
        elif prefix == "head":
            head[leaf] = value
        elif prefix == "model" and leaf in MODEL_DIMS:
            top[leaf] = value
        elif prefix == "baseline" and leaf in BASELINE_DIMS:
            derived[leaf] = value
        else:
            raise ValueError(
                f"{name}: unknown parameter (expected arch.<field>, baseline.<width|blocks>, head.<field>, "
                "model.<field> or train.<field>)"
            )
    if any(f"arch.{k}" in params for k in DERIVED_ARCH):
        fn.pop("depths", None)  # a searched layout wins over model.depths
    _derive_depths(fn, _base_depths(spec))

    baseline = dict(spec.baseline_model)
    if derived:  # the conv family's width and depth: each block doubles the channels of the one before
        channels = list(baseline.get("channels", _defaults(BaselineConfig)["channels"]))
        width, blocks = derived.get("width", channels[0]), derived.get("blocks", len(channels))
        baseline["channels"] = [width * 2**i for i in range(blocks)]
    for k in ("img_size", "in_chans"):
        if k in fn and k not in baseline:
            baseline[k] = fn[k]
    model_defaults = _defaults(ModelConfig)
    model: dict[str, Any] = {
        "backbone": _family(spec),
        "num_keypoints": spec.model.get("num_keypoints", model_defaults["num_keypoints"]),
        "focalnet": fn,
        "baseline": baseline,
        "head": head,  # no "kind": ModelConfig resolves it per backbone unless [model] or a dimension sets it
        **top,
    }
    train.setdefault("seed", spec.seed)
    resolved: dict[str, Any] = {"model": model, "train": train, "data": spec.data.to_dict()}

    overrides = overrides or {}
    for k in overrides:
        if k not in resolved:
            raise ValueError(f"overrides.{k}: unknown section (allowed: model, train, data)")
    resolved = _deep_merge(resolved, overrides)
    fn = resolved["model"].get("focalnet")
    if isinstance(fn, dict):
        _derive_depths(fn, fn.get("depths", _base_depths(spec)))  # derived names given in overrides
        _per_stage_tidy(fn)

    model_cfg = ModelConfig.from_dict(_listify(resolved["model"]))
    train_d = resolved["train"]
    steps = train_d.get("steps", _defaults(TrainConfig)["steps"])
    if spec.early_stopping.enabled and spec.early_stopping.rungs:
        extra = [r for r in spec.early_stopping.rungs if isinstance(steps, int) and r < steps]
        train_d["eval_steps"] = sorted(set(train_d.get("eval_steps", ())) | set(extra))
    tuples = {k for k, v in _defaults(TrainConfig).items() if isinstance(v, tuple)}
    unknown = [k for k in train_d if k not in _defaults(TrainConfig)]
    if unknown:
        raise ValueError(f"train.{unknown[0]}: unknown TrainConfig field")
    try:
        train_cfg = TrainConfig(
            **{k: tuple(v) if k in tuples and isinstance(v, list) else v for k, v in train_d.items()}
        )
    except ValueError as e:
        raise ValueError(f"train.{e}") from None
    except TypeError as e:
        raise ValueError(f"train: {e}") from None
    data_d = dict(resolved["data"])
    return {
        "model": model_cfg.to_dict(),
        "train": {f.name: _listify(getattr(train_cfg, f.name)) for f in dataclasses.fields(train_cfg)},
        "data": _listify(data_d),
    }


def resolve_config(
    spec: StudySpec, params: dict[str, Any], *, overrides: dict | None = None
) -> dict[str, Any]:
    """The complete, JSON-serialisable config of one trial: ``{"model": ..., "train": ..., "data": ...}``.

    ``params`` are sampled values keyed by dimension name (``{"arch.embed_dim": 32, "train.lr": 1e-3}``);
    names not in ``params`` take the ``[model]``/``[train]`` values, then the dataclass defaults.
    ``overrides`` (fixed trials) is a nested dict deep-merged last, e.g. ``{"model": {"backbone":
    "baseline"}}`` or ``{"model": {"focalnet": {"depths": [2, 2, 6, 2]}}, "train": {"seed": 3}}``.
    The train seed is ``spec.seed`` unless ``[train].seed`` or an override sets it; the early-stopping
    rungs are added to ``train.eval_steps``. Every field is written out (validated by building
    ``ModelConfig`` and ``TrainConfig``); a bad combination raises :class:`SpecError`.
    """
    try:
        return _resolve(spec, params, overrides)
    except ValueError as e:
        raise SpecError(f"{spec.source}: resolved config: {e}") from None


def fixed_trials(spec: StudySpec) -> list[dict[str, Any]]:
    """Trials to enqueue before the search: the baseline (if ``study.baseline``) then named variants.

    With ``study.baseline_lrs`` the baseline is a fixed sweep, one trial per learning rate, in that order.
    Each is ``{"role": "baseline" | "variant", "name": str, "overrides": {...}}``; pass ``overrides`` to
    :func:`resolve_config` (with empty params). An ablation has none of these: its trials are its grid ×
    seeds, from :func:`search.spec.grid.ablation_trials` (which sits above this module)."""
    if spec.ablation is not None:
        return []
    out: list[dict[str, Any]] = []
    if spec.baseline and spec.baseline_lrs:
        # The baseline keeps its architecture and head; only its learning rate gets the tuning the search
        # gives the FocalNets. The report's reference row is the member with the best val accuracy.
        for lr in spec.baseline_lrs:
            out.append(
                {
                    "role": "baseline",
                    "name": f"baseline-lr{lr:g}",
                    "overrides": {"model": copy.deepcopy(BASELINE_OVERRIDES), "train": {"lr": lr}},
                }
            )
    elif spec.baseline:
        out.append(
            {
                "role": "baseline",
                "name": "baseline",
                "overrides": {"model": copy.deepcopy(BASELINE_OVERRIDES)},
            }
        )
    for name in spec.variants:
        out.append(
            {
                "role": "variant",
                "name": name,
                "overrides": {"model": {"focalnet": copy.deepcopy(VARIANTS[name])}},
            }
        )
    return out


# ----------------------------------------------------------------------------------------------------------
# checking


def _key_for(spec: StudySpec, message: str) -> tuple[str, str]:
    """Map a config error (``"focalnet.depths: ..."`` / ``"train.lr: ..."``) to the spec key to blame."""
    head, _, problem = message.partition(":")
    head, problem = head.strip(), problem.strip()
    parts = head.split(".")
    if parts[0] == "focalnet" and len(parts) > 1:
        f = parts[1]
        if f"arch.{f}" in spec.space:
            return f"space.arch.{f}", problem
        if f == "depths":
            for k in ("num_stages", "depth", "mid_depth_ratio", "patch_size"):
                if f"arch.{k}" in spec.space:
                    return f"space.arch.{k}", problem
        if f in ("patch_size",) and "arch.num_stages" in spec.space:
            return "space.arch.num_stages", problem
        for k in (f, *(DERIVED_ARCH if f == "depths" else ())):
            if k in spec.model:
                return f"model.{k}", problem
        return f"model.{f}", problem
    if parts[0] == "baseline" and len(parts) > 1:
        return f"baseline.{parts[1]}", problem
    if parts[0] == "head" and len(parts) > 1:
        f = parts[1]
        return (f"space.head.{f}" if f"head.{f}" in spec.space else f"model.head.{f}"), problem
    if parts[0] in MODEL_DIMS and f"model.{parts[0]}" in spec.space:
        return f"space.model.{parts[0]}", problem
    if parts[0] == "train" and len(parts) > 1:
        f = parts[1]
        return (f"space.train.{f}" if f"train.{f}" in spec.space else f"train.{f}"), problem
    if parts[0] in MODEL_KEYS:
        return f"model.{parts[0]}", problem
    return "space", message


def _describe(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in params.items())


def _check_point(spec: StudySpec, params: dict[str, Any]) -> None:
    try:
        _resolve(spec, params, None)
    except ValueError as e:
        k, problem = _key_for(spec, " ".join(str(e).split()))
        where = f" (with {_describe(params)})" if params else ""
        raise SpecError(f"{spec.source}: {k}: {problem}{where}", key=k) from None


def check_space(spec: StudySpec) -> None:
    """Refuse a spec whose space (or fixed config, or fixed trials) can yield an invalid architecture.

    Checks that every patch size divides ``img_size`` and allows the lowest ``num_stages``, then builds
    the resolved config at the corners of the space (min/max of every dimension, every categorical
    choice, for each patch size; one dimension at a time if there are more than ``MAX_CORNERS``).
    Raises :class:`SpecError` naming the key.

    Args:
        spec: the parsed spec; its ``space``, ``[model]``, ``[train]`` and fixed trials are checked.
    """
    img_size = _checked_img_size(spec)
    patches = _checked_patches(spec, img_size)
    _check_stage_counts(spec, img_size, patches)
    _check_layout_integers(spec)
    _check_fixed_configs(spec)
    _check_model_corners(spec, img_size, patches)
    for name, dim in spec.space.items():  # train dimensions, one at a time
        if name.startswith("train."):
            for v in dim.extremes():
                _check_point(spec, {name: v})


def _checked_img_size(spec: StudySpec) -> int:
    """``[model] img_size`` (or its default), refused unless a positive integer."""
    img_size = _fixed_value(spec, "img_size")
    if not isinstance(img_size, int) or isinstance(img_size, bool) or img_size < 1:
        raise SpecError(
            f"{spec.source}: model.img_size: must be an integer >= 1, got {img_size!r}", key="model.img_size"
        )
    return img_size


def _patch_key(spec: StudySpec) -> str:
    """The spec key that sets the patch size: the searched dimension, else ``[model] patch_size``."""
    return "space.arch.patch_size" if "arch.patch_size" in spec.space else "model.patch_size"


def _checked_patches(spec: StudySpec, img_size: int) -> list[Any]:
    """Every patch size a trial can have (searched choices or the fixed one), each dividing ``img_size``."""
    src, pkey = spec.source, _patch_key(spec)
    ps_dim = spec.space.get("arch.patch_size")
    if ps_dim is not None and ps_dim.kind != "categorical":
        raise SpecError(
            f"{src}: space.arch.patch_size: must be categorical; allowed: {{choices = [...]}}",
            key="space.arch.patch_size",
        )
    patches = list(ps_dim.choices) if ps_dim is not None else [_fixed_value(spec, "patch_size")]
    divisors = [p for p in range(1, img_size + 1) if img_size % p == 0]
    for p in patches:
        if not isinstance(p, int) or isinstance(p, bool) or p < 1 or img_size % p:
            raise SpecError(
                f"{src}: {pkey}: {p!r} does not divide img_size={img_size}; allowed: {', '.join(map(str, divisors))}",
                key=pkey,
            )
    return patches


def _check_stage_counts(spec: StudySpec, img_size: int, patches: list[int]) -> None:
    """The lowest searched (or the fixed) number of stages must fit every patch size."""
    src = spec.source
    ns_dim = spec.space.get("arch.num_stages")
    if ns_dim is not None and ns_dim.kind != "int":
        raise SpecError(
            f"{src}: space.arch.num_stages: must be an integer range; allowed: {{low = .., high = ..}}",
            key="space.arch.num_stages",
        )
    for p in patches:
        ms = max_stages(img_size, p)
        if ns_dim is not None:
            if ns_dim.low < 1 or ns_dim.low > ms:
                raise SpecError(
                    f"{src}: space.arch.num_stages: low={ns_dim.low} impossible with arch.patch_size={p} "
                    f"on {img_size} px (max {ms} stages)",
                    key="space.arch.num_stages",
                )
            continue
        n = _fixed_num_stages(spec)
        if n > ms:
            key = _patch_key(spec)
            if key == "model.patch_size":
                key = "model.num_stages" if "num_stages" in spec.model else "model.depths"
            raise SpecError(
                f"{src}: {key}: arch.patch_size={p} on {img_size} px allows at most {ms} stages, "
                f"but the fixed layout has {n}; search arch.num_stages or use a smaller patch",
                key=key,
            )


def _check_layout_integers(spec: StudySpec) -> None:
    """``arch.depth``, ``arch.mid_depth_ratio``, ``baseline.width`` and ``baseline.blocks`` take integers
    >= 1 only; ``model.backbone`` chooses among the two families."""
    family = spec.space.get("model.backbone")
    if family is not None and (
        family.kind != "categorical" or not set(family.choices) <= {"focalnet", "baseline"}
    ):
        raise SpecError(
            f'{spec.source}: space.model.backbone: must be {{choices = [...]}} of "focalnet", "baseline"',
            key="space.model.backbone",
        )
    for name in ("arch.depth", "arch.mid_depth_ratio", "baseline.width", "baseline.blocks"):
        d = spec.space.get(name)
        if d is None:
            continue
        values = d.choices if d.kind == "categorical" else (d.low,)
        if d.kind == "float" or not all(
            isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in values
        ):
            raise SpecError(
                f"{spec.source}: space.{name}: must be integers >= 1; allowed: {{low = 1, high = ..}} or {{choices = [1, 3]}}",
                key=f"space.{name}",
            )


def _check_fixed_configs(spec: StudySpec) -> None:
    """The fixed config alone, then every fixed trial (baseline, variants) on top of it."""
    _check_point(spec, {})
    for ft in fixed_trials(spec):
        key = "study.variants"
        if ft["role"] == "baseline":
            key = "study.baseline_lrs" if spec.baseline_lrs else "study.baseline"
        try:
            _resolve(spec, {}, ft["overrides"])
        except ValueError as e:
            raise SpecError(
                f"{spec.source}: {key}: {ft['name']!r} is invalid with this spec: {e}", key=key
            ) from None


def _check_model_corners(spec: StudySpec, img_size: int, patches: list[int]) -> None:
    """Corners of the model space (backbone, head, coordinate channels), per patch size."""
    arch_dims = {
        n: d
        for n, d in spec.space.items()
        if n.startswith(("arch.", "baseline.", "head.", "model.")) and n != "arch.patch_size"
    }
    searched_patch = "arch.patch_size" in spec.space
    for p in patches:
        axes: list[tuple[str, list[Any]]] = []
        for name, dim in arch_dims.items():
            if name == "arch.num_stages":
                axes.append((name, list(dict.fromkeys([dim.low, _stage_cap(dim, img_size, p)]))))
            else:
                axes.append((name, dim.extremes()))
        patch = {"arch.patch_size": p} if searched_patch else {}
        if math.prod(len(vals) for _, vals in axes) <= MAX_CORNERS:
            combos = (
                dict(zip([n for n, _ in axes], vals, strict=True))
                for vals in itertools.product(*(v for _, v in axes))
            )
        else:
            combos = _one_at_a_time(axes)
        for combo in combos:
            _check_point(spec, {**patch, **_conditional(spec, combo)})


def _conditional(spec: StudySpec, combo: dict[str, Any]) -> dict[str, Any]:
    """A corner as sampling would propose it: only its family's dimensions, no ``arch.mid_depth_ratio``
    below 3 stages, and an integer ``head.stage`` clamped to the corner's stages (or blocks)."""
    backbone = combo.get("model.backbone", _family(spec))
    if backbone == "baseline":
        n_stages = combo.get("baseline.blocks", _fixed_blocks(spec))
    else:
        n_stages = combo.get("arch.num_stages", _fixed_num_stages(spec))
    combo = {k: v for k, v in combo.items() if not _skipped(k, backbone, n_stages)}
    dim = spec.space.get("head.stage")
    if "head.stage" in combo and dim is not None and dim.kind == "int":
        lo, hi = _stage_range(dim, n_stages)
        combo = {**combo, "head.stage": min(max(combo["head.stage"], lo), hi)}
    return combo


def _one_at_a_time(axes: list[tuple[str, list[Any]]]):
    lows = {n: v[0] for n, v in axes}
    highs = {n: v[-1] for n, v in axes}
    yield lows
    yield highs
    for base in (lows, highs):
        for n, vals in axes:
            for v in vals:
                yield {**base, n: v}
