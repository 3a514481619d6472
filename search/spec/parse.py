"""Study specs: one TOML file describes a whole search (budget, data, objectives, space, fixed trials).

``load_spec(path)`` reads and validates a spec and returns a frozen :class:`StudySpec`; anything wrong
raises :class:`SpecError` with a one-line message naming the file and the dotted key::

    studies/x.toml: unknown key 'study.n_trail'; did you mean 'study.n_trials'?
    studies/x.toml: study.sampler: unknown sampler 'cmaes'; allowed: tpe, nsga2, gp, random

The fields of ``[model]`` and ``[train]`` are validated by the dataclasses that own them
(``focalnet.FocalNetConfig``, ``focalnet.BaselineConfig``, ``search.task.train.TrainConfig``); this module only
checks names against their ``dataclasses.fields`` and turns their ``ValueError`` into a ``SpecError``.
The search space itself is checked by :func:`search.spec.space.check_space` before anything starts.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from pathlib import Path
from typing import Any

from focalnet import BaselineConfig, FocalNetConfig, HeadConfig
from focalnet.config import LEGACY_HEAD_KEYS, fold_legacy_head_keys
from search.spec import schema as spec_schema
from search.spec.grid import validate_ablation
from search.spec.schema import (  # noqa: F401  (re-exported: the spec's public types live there)
    _DIM_KEYS,
    _NAME_RE,
    _SCHEMA,
    _SPACE_PREFIXES,
    _TOP_LEVEL,
    ACCURACY_METRICS,
    BASELINE_DIMS,
    DATASET_SCHEMES,
    DEFAULT_HV_REFERENCE,
    DEFAULT_STOPPING_FRACTION,
    DEFAULT_STOPPING_RULE,
    DERIVED_ARCH,
    MINIMIZE_METRICS,
    MODEL_DIMS,
    MODEL_KEYS,
    SAMPLERS,
    STOPPING_RULES,
    ConstraintSpec,
    DataSpec,
    Dimension,
    EarlyStoppingSpec,
    LatencySpec,
    ObjectiveSpec,
    SpecError,
    StudySpec,
    _bool,
    _check_keys,
    _fail,
    _float,
    _int,
    _list,
    _str,
    _table,
    _type_name,
    _unknown,
    compute_spec_hash,
)
from search.spec.space import VARIANTS, check_space
from search.task.data import DataConfigError, data_config
from search.task.train_config import TrainConfig

__all__ = [*(n for n in spec_schema.__all__ if n != "compute_spec_hash"), "load_spec", "parse_spec"]

# ----------------------------------------------------------------------------------------------------------
# loading


def load_spec(path: str | Path) -> StudySpec:
    """Read, parse and validate a study TOML file (including the search space)."""
    source = str(path)
    try:
        raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise SpecError(f"{source}: TOML syntax error: {e}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise SpecError(
            f"{source}: cannot read spec: {e.strerror if isinstance(e, OSError) else e}"
        ) from None
    return parse_spec(raw, source=source)


def _fields(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls))


def _tuple_fields(cls: type) -> set[str]:
    """Fields whose default is a tuple (lists from TOML are converted to tuples for them)."""
    out = set()
    for f in dataclasses.fields(cls):
        default = f.default
        if default is dataclasses.MISSING and f.default_factory is not dataclasses.MISSING:
            try:
                default = f.default_factory()
            except Exception:  # pragma: no cover - defensive
                continue
        if isinstance(default, tuple | list):
            out.add(f.name)
    return out


def _check_types(source: str, section: str, cls: type, values: dict[str, Any]) -> dict[str, Any]:
    """Type-check (and coerce) values against the type of each field's default (int, float, bool, str, tuple)."""
    defaults = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            defaults[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            defaults[f.name] = f.default_factory()
    out = {}
    for k, v in values.items():
        key = f"{section}.{k}"
        d = defaults.get(k)
        if isinstance(d, bool):
            v = _bool(source, key, v)
        elif isinstance(d, int):
            v = _int(source, key, v)
        elif isinstance(d, float):
            v = _float(source, key, v)
        elif isinstance(d, str):
            v = _str(source, key, v)
        elif isinstance(d, tuple):
            v = _list(source, key, v)
        out[k] = v
    return out


def _build(cls: type, kwargs: dict[str, Any], *, source: str, section: str) -> Any:
    """``cls(**kwargs)`` with lists → tuples; a ``ValueError``/``TypeError`` becomes a SpecError."""
    tuples = _tuple_fields(cls)
    kw = {k: tuple(v) if k in tuples and isinstance(v, list) else v for k, v in kwargs.items()}
    try:
        return cls(**kw)
    except (ValueError, TypeError) as e:
        raise _field_error(source, section, str(e), kwargs) from None


def _field_error(source: str, section: str, message: str, kwargs: dict[str, Any]) -> SpecError:
    """Name the offending key: config errors start with the field name (``"patch_size: must ..."``)."""
    message = " ".join(message.split())
    head, sep, rest = message.partition(":")
    head = head.strip()
    if sep and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.]*", head):
        return _fail(source, f"{section}.{head}", rest.strip())
    return _fail(source, section, message)


def _check_head(source: str, model: dict[str, Any]) -> None:
    """``[model] head = {kind = "heatmap", stage = 1}`` (and the legacy top-level head keys, folded in by
    their one home, `focalnet.config.fold_legacy_head_keys`): HeadConfig fields with valid values."""
    if "head" in model:
        head = _table(source, "model.head", model["head"])
        _check_keys(source, "model.head", head, _fields(HeadConfig))
        if "kind" in head:
            _str(source, "model.head.kind", head["kind"])
    try:
        folded = fold_legacy_head_keys(model)
    except ValueError as e:  # "<legacy key>: conflicts with head.<field>; give one or the other"
        raise _field_error(source, "model", str(e).replace(" head.", " model.head."), model) from None
    try:
        _build(
            HeadConfig,
            _check_types(source, "model.head", HeadConfig, folded),
            source=source,
            section="model.head",
        )
    except SpecError as e:  # name a legacy key as the spec spells it
        old = next(
            (o for o, n in LEGACY_HEAD_KEYS.items() if o in model and e.key == f"model.head.{n}"), None
        )
        if old is None:
            raise
        raise SpecError(str(e).replace(e.key, f"model.{old}"), key=f"model.{old}") from None


def parse_spec(raw: dict, *, source: str = "<spec>", check: bool = True) -> StudySpec:
    """Validate a parsed TOML document, one section at a time. ``check=False`` skips the search-space
    corner check."""
    raw = _table(source, "", raw) if not isinstance(raw, dict) else raw
    _check_keys(source, "", raw, _TOP_LEVEL)
    for section in _TOP_LEVEL:
        if section in raw:
            _table(source, section, raw[section])
    for section, known in _SCHEMA.items():
        _check_keys(source, section, raw.get(section, {}), known)
    train, train_cfg = _parse_train(source, raw.get("train", {}))
    space = _parse_space(
        source, raw.get("space", {}), fn_fields=_fields(FocalNetConfig), train_fields=_fields(TrainConfig)
    )
    ablation = raw.get("ablation")
    spec = StudySpec(
        **_parse_study(source, raw.get("study", {}), ablation=ablation is not None),
        data=_parse_data(source, raw.get("data", {})),
        train=train,
        model=_parse_model(source, raw.get("model", {})),
        baseline_model=_parse_baseline(source, raw.get("baseline", {})),
        objectives=_parse_objectives(source, raw.get("objectives", {})),
        constraints=_parse_constraints(source, raw.get("constraints", {})),
        latency=_parse_latency(source, raw.get("latency", {})),
        early_stopping=_parse_early_stopping(source, raw.get("early_stopping", {}), train_cfg.steps, space),
        hypervolume_reference=_parse_hypervolume(source, raw.get("hypervolume", {})),
        space=space,
        ablation=dict(ablation) if ablation is not None else None,
        source=source,
        raw=raw,
    )
    es = spec.early_stopping
    if es.enabled and es.rungs and es.rule == "behind-baseline" and not spec.baseline:
        raise _fail(
            source, "early_stopping.rule", "behind-baseline needs study.baseline = true (its reference)"
        )
    spec = dataclasses.replace(spec, spec_hash=compute_spec_hash(spec.to_dict()))
    if spec.ablation is not None:
        validate_ablation(spec)
    if check:
        check_space(spec)
    return spec


def _parse_study(source: str, st: dict[str, Any], *, ablation: bool) -> dict[str, Any]:
    """``[study]``: name, seed, sampler, budget, where results live, fixed trials, workers, warm start."""
    if "name" not in st:
        raise _fail(source, "study.name", "missing (a name for the Optuna study)", "[A-Za-z0-9_.-]+")
    name = _str(source, "study.name", st["name"])
    if not _NAME_RE.fullmatch(name):
        raise _fail(source, "study.name", f"invalid name {name!r}", "letters, digits, '_', '.', '-'")
    sampler = _str(source, "study.sampler", st.get("sampler", "tpe"))
    if sampler not in SAMPLERS:
        raise _fail(source, "study.sampler", f"unknown sampler {sampler!r}", SAMPLERS)
    n_trials = _int(source, "study.n_trials", st["n_trials"], min_value=1) if "n_trials" in st else None
    timeout_s = None
    if "timeout_min" in st:
        timeout_s = _float(source, "study.timeout_min", st["timeout_min"], positive=True) * 60.0
    if n_trials is None and timeout_s is None:
        raise _fail(source, "study.n_trials", "no budget: give study.n_trials and/or study.timeout_min")
    baseline = _bool(source, "study.baseline", st.get("baseline", True))
    out = {
        "name": name,
        "seed": _int(source, "study.seed", st.get("seed", 0), min_value=0),
        "sampler": sampler,
        "n_trials": n_trials,
        "timeout_s": timeout_s,
        "storage": _str(source, "study.storage", st.get("storage", "")),
        "tracking_uri": _str(source, "study.tracking_uri", st.get("tracking_uri", "")),
        "variants": _variants(source, st),
        "baseline": baseline,
        "baseline_lrs": _baseline_lrs(source, st, baseline),
        "verify_seeds": _int(source, "study.verify_seeds", st.get("verify_seeds", 0), min_value=0),
        "jobs": _int(source, "study.jobs", st.get("jobs", 1), min_value=1),
        **_warm_start(source, st),
    }
    if ablation:
        for key in ("baseline_lrs", "verify_seeds", "warm_start"):
            if out[key]:
                raise _fail(source, f"study.{key}", "not used by an ablation (its cells are its grid)")
    return out


def _variants(source: str, st: dict[str, Any]) -> tuple[str, ...]:
    variants: list[str] = []
    for i, v in enumerate(_list(source, "study.variants", st.get("variants", []))):
        v = _str(source, f"study.variants[{i}]", v)
        if v not in VARIANTS:
            raise _fail(source, "study.variants", f"unknown variant {v!r}", VARIANTS)
        if v in variants:
            raise _fail(source, "study.variants", f"variant {v!r} listed twice")
        variants.append(v)
    return tuple(variants)


def _warm_start(source: str, st: dict[str, Any]) -> dict[str, Any]:
    """``study.warm_start`` (a learning-curve table, relative to the spec's folder) and its portfolio size.
    The table itself is read and checked against the space when the study is created or planned."""
    table = _str(source, "study.warm_start", st.get("warm_start", ""))
    size = _int(source, "study.warm_start_trials", st.get("warm_start_trials", 3), min_value=1)
    if "warm_start_trials" in st and not table:
        raise _fail(source, "study.warm_start_trials", "needs study.warm_start (a table to choose from)")
    return {"warm_start": table, "warm_start_trials": size}


def _parse_data(source: str, d: dict[str, Any]) -> DataSpec:
    try:  # search.task.data owns the data config's rules (run.json shares them)
        return DataSpec(**data_config(d), base_dir=str(Path(source).parent))
    except DataConfigError as e:
        raise _fail(source, f"data.{e.key}", e.problem) from None


def _parse_train(source: str, t: dict[str, Any]) -> tuple[dict[str, Any], TrainConfig]:
    train = dict(t)
    _check_keys(source, "train", train, _fields(TrainConfig))
    train = _check_types(source, "train", TrainConfig, train)
    return train, _build(TrainConfig, train, source=source, section="train")


def _parse_model(source: str, m: dict[str, Any]) -> dict[str, Any]:
    """``[model]``: names are checked here; FocalNetConfig validates the values when `check_space` builds
    the resolved fixed config and the corners."""
    model = dict(m)
    _check_keys(source, "model", model, (*_fields(FocalNetConfig), *DERIVED_ARCH, *MODEL_KEYS))
    if "depths" in model:
        for k in DERIVED_ARCH:
            if k in model:
                raise _fail(source, f"model.{k}", "conflicts with model.depths; give one or the other")
    for k in DERIVED_ARCH:
        if k in model:
            _int(source, f"model.{k}", model[k], min_value=1)
    _check_head(source, model)
    if "coord_channels" in model:
        _bool(source, "model.coord_channels", model["coord_channels"])
    if "num_keypoints" in model:
        _int(source, "model.num_keypoints", model["num_keypoints"], min_value=1)
    return model


def _parse_baseline(source: str, b: dict[str, Any]) -> dict[str, Any]:
    baseline_model = dict(b)
    _check_keys(source, "baseline", baseline_model, _fields(BaselineConfig))
    _build(BaselineConfig, baseline_model, source=source, section="baseline")
    return baseline_model


def _parse_objectives(source: str, ob: dict[str, Any]) -> ObjectiveSpec:
    """``[objectives]``: the accuracy, the costs, and the accuracy floor of the region of interest."""
    accuracy = _str(source, "objectives.accuracy", ob.get("accuracy", ObjectiveSpec.accuracy))
    if accuracy not in ACCURACY_METRICS:
        raise _fail(source, "objectives.accuracy", f"unknown metric {accuracy!r}", ACCURACY_METRICS)
    minimize: list[str] = []
    for i, m in enumerate(_list(source, "objectives.minimize", ob.get("minimize", ["params", "latency_ms"]))):
        m = _str(source, f"objectives.minimize[{i}]", m)
        if m not in MINIMIZE_METRICS:
            raise _fail(source, "objectives.minimize", f"unknown objective {m!r}", MINIMIZE_METRICS)
        if m in minimize:
            raise _fail(source, "objectives.minimize", f"objective {m!r} listed twice")
        minimize.append(m)
    if "floor" in ob and "floor_below_baseline" in ob:
        raise _fail(source, "objectives.floor", "conflicts with objectives.floor_below_baseline; give one")
    floor = _float(source, "objectives.floor", ob["floor"], min_value=0.0) if "floor" in ob else None
    below = ObjectiveSpec.floor_below_baseline
    if "floor_below_baseline" in ob:
        below = _float(source, "objectives.floor_below_baseline", ob["floor_below_baseline"], min_value=0.0)
    return ObjectiveSpec(accuracy=accuracy, minimize=tuple(minimize), floor=floor, floor_below_baseline=below)


def _parse_constraints(source: str, co: dict[str, Any]) -> ConstraintSpec:
    def get(key: str, parse: Any, **kw: Any) -> Any:
        return parse(source, f"constraints.{key}", co[key], **kw) if key in co else None

    return ConstraintSpec(
        max_params=get("max_params", _int, min_value=1),
        max_latency_ms=get("max_latency_ms", _float, positive=True),
        max_flops=get("max_flops", _float, positive=True),
    )


def _parse_latency(source: str, la: dict[str, Any]) -> LatencySpec:
    device = _str(source, "latency.device", la.get("device", "cpu"))
    if not re.fullmatch(r"cpu|cuda(:\d+)?|auto", device):
        raise _fail(source, "latency.device", f"unknown device {device!r}", "cpu, cuda, cuda:<n>, auto")
    return LatencySpec(
        device=device,
        batch_size=_int(source, "latency.batch_size", la.get("batch_size", 1), min_value=1),
        threads=_int(source, "latency.threads", la.get("threads", 1), min_value=0),
        warmup=_int(source, "latency.warmup", la.get("warmup", 10), min_value=0),
        repeats=_int(source, "latency.repeats", la.get("repeats", 30), min_value=1),
        clock=_latency_clock(source, la),
    )


def _latency_clock(source: str, la: dict[str, Any]) -> str:
    """``latency.clock``: ``"wall"`` (the real latency) or ``"thread"`` (CPU time of the timing thread: a
    worker training on the other core does not inflate it; needs cpu and 1 thread)."""
    clock = _str(source, "latency.clock", la.get("clock", "wall"))
    if clock not in ("wall", "thread"):
        raise _fail(source, "latency.clock", f"unknown clock {clock!r}", "wall, thread")
    if clock == "thread" and (la.get("device", "cpu") != "cpu" or la.get("threads", 1) != 1):
        raise _fail(source, "latency.clock", 'thread needs latency.device = "cpu" and latency.threads = 1')
    return clock


def _parse_early_stopping(
    source: str, es: dict[str, Any], steps: int, space: dict[str, Dimension]
) -> EarlyStoppingSpec:
    rungs: list[int] = []
    for i, r in enumerate(_list(source, "early_stopping.rungs", es.get("rungs", []))):
        r = _int(source, f"early_stopping.rungs[{i}]", r, min_value=1)
        if rungs and r <= rungs[-1]:
            raise _fail(
                source, "early_stopping.rungs", f"must be strictly increasing, got {r} after {rungs[-1]}"
            )
        rungs.append(r)
    eta = _int(source, "early_stopping.eta", es.get("eta", 3))
    if eta < 2:
        raise _fail(source, "early_stopping.eta", f"must be >= 2, got {eta}")
    min_steps = min(space["train.steps"].extremes()) if "train.steps" in space else steps
    if rungs and rungs[-1] >= min_steps:
        raise _fail(
            source,
            "early_stopping.rungs",
            f"rung {rungs[-1]} is not below train.steps={min_steps}",
            f"steps in 1..{min_steps - 1}",
        )
    rule = _str(source, "early_stopping.rule", es.get("rule", DEFAULT_STOPPING_RULE))
    if rule not in STOPPING_RULES:
        raise _fail(source, "early_stopping.rule", f"unknown rule {rule!r}", STOPPING_RULES)
    fraction = _float(source, "early_stopping.fraction", es.get("fraction", DEFAULT_STOPPING_FRACTION))
    if not 0 < fraction <= 1:
        raise _fail(source, "early_stopping.fraction", f"must be in (0, 1], got {fraction}")
    enabled = _bool(source, "early_stopping.enabled", es.get("enabled", True))
    return EarlyStoppingSpec(enabled=enabled, rungs=tuple(rungs), eta=eta, rule=rule, fraction=fraction)


def _parse_hypervolume(source: str, hv: dict[str, Any]) -> dict[str, float]:
    hv_ref = dict(DEFAULT_HV_REFERENCE)
    if "reference" in hv:
        ref = _table(source, "hypervolume.reference", hv["reference"])
        _check_keys(source, "hypervolume.reference", ref, tuple(DEFAULT_HV_REFERENCE))
        for k, v in ref.items():
            hv_ref[k] = _float(source, f"hypervolume.reference.{k}", v)
    return hv_ref


def _baseline_lrs(source: str, st: dict, baseline: bool) -> tuple[float, ...]:
    """``study.baseline_lrs``: the learning rates of the baseline's fixed sweep (distinct, in (0, 1))."""
    if "baseline_lrs" not in st:
        return ()
    lrs = _list(source, "study.baseline_lrs", st["baseline_lrs"])
    if not lrs:
        raise _fail(source, "study.baseline_lrs", "must not be empty", "omit it for one baseline at train.lr")
    if not baseline:
        raise _fail(source, "study.baseline_lrs", "needs study.baseline = true")
    out: list[float] = []
    for i, v in enumerate(lrs):
        v = _float(source, f"study.baseline_lrs[{i}]", v, positive=True)
        if v >= 1:
            raise _fail(source, f"study.baseline_lrs[{i}]", f"must be in (0, 1), got {v:g}")
        if v in out:
            raise _fail(source, "study.baseline_lrs", f"learning rate {v:g} listed twice")
        out.append(v)
    return tuple(out)


def _dim_order(name: str) -> tuple[int, str]:
    """Sampling order: the family, patch size and stage layouts first (later bounds and conditions depend
    on them), then by name."""
    first = (
        "model.backbone",
        "arch.patch_size",
        "arch.num_stages",
        "arch.depth",
        "arch.mid_depth_ratio",
        "baseline.blocks",
    )
    return (first.index(name), "") if name in first else (len(first), name)


def _parse_space(
    source: str, table: dict, *, fn_fields: tuple[str, ...], train_fields: tuple[str, ...]
) -> dict[str, Dimension]:
    """Flatten ``[space]`` (``arch.x = {...}`` nests in TOML, ``"arch.x" = {...}`` does not)."""
    flat: dict[str, Any] = {}
    for k, v in table.items():
        if "." in k:
            flat[k] = v
        elif k in _SPACE_PREFIXES and isinstance(v, dict) and not (set(v) & set(_DIM_KEYS)):
            for k2, v2 in v.items():
                flat[f"{k}.{k2}"] = v2
        else:
            raise _fail(
                source,
                f"space.{k}",
                "dimension names are 'arch.<field>', 'baseline.<width|blocks>', 'head.<field>', 'model.<field>' or 'train.<field>'",
            )
    allowed = {
        "arch": (*fn_fields, *DERIVED_ARCH),
        "train": train_fields,
        "head": _fields(HeadConfig),
        "model": MODEL_DIMS,
        "baseline": BASELINE_DIMS,
    }
    out: dict[str, Dimension] = {}
    for name in sorted(flat, key=_dim_order):
        key = f"space.{name}"
        prefix, _, leaf = name.partition(".")
        if prefix not in allowed:
            raise _fail(
                source,
                key,
                f"unknown prefix {prefix!r}",
                "arch.<FocalNetConfig field>, baseline.width, baseline.blocks, head.<HeadConfig field>, "
                "model.coord_channels, model.backbone, train.<TrainConfig field>",
            )
        if leaf not in allowed[prefix]:
            owner = next((p for p in ("arch", "head", "train") if p != prefix and leaf in allowed[p]), None)
            if owner:  # the right field under the wrong prefix
                raise SpecError(
                    f"{source}: unknown key '{key}'; did you mean 'space.{owner}.{leaf}'?", key=key
                )
            raise _unknown(source, key, allowed[prefix])
        if name in ("arch.depths", "arch.img_size", "arch.in_chans", "head.hidden"):
            hint = {
                "arch.depths": "search arch.num_stages / arch.depth / arch.mid_depth_ratio instead",
                "head.hidden": "fix it in [model] head = {hidden = [...]}",
            }
            raise _fail(source, key, f"cannot be searched; {hint.get(name, 'fix it in [model]')}")
        out[name] = _parse_dim(source, key, flat[name])
    return out


def _parse_dim(source: str, key: str, v: Any) -> Dimension:
    v = _table(source, key, v)
    _check_keys(source, key, v, _DIM_KEYS)
    if "choices" in v:
        extra = [k for k in v if k != "choices"]
        if extra:
            raise _fail(source, f"{key}.{extra[0]}", "not allowed together with choices")
        choices = _list(source, f"{key}.choices", v["choices"])
        if not choices:
            raise _fail(source, f"{key}.choices", "must not be empty")
        for c in choices:
            if not isinstance(c, bool | int | float | str):
                raise _fail(source, f"{key}.choices", f"choices must be scalars, got {_type_name(c)} {c!r}")
        if len(set(map(repr, choices))) != len(choices):
            raise _fail(source, f"{key}.choices", f"duplicate choices in {choices}")
        return Dimension(kind="categorical", choices=tuple(choices))
    for b in ("low", "high"):
        if b not in v:
            raise _fail(
                source,
                f"{key}.{b}",
                "missing",
                "{choices = [...]} or {low = .., high = .., log = .., step = ..}",
            )
    low, high = v["low"], v["high"]
    for b, x in (("low", low), ("high", high)):
        _float(source, f"{key}.{b}", x)
    log = _bool(source, f"{key}.log", v.get("log", False))
    kind = "int" if isinstance(low, int) and isinstance(high, int) else "float"
    if low > high:
        raise _fail(source, key, f"low={low} > high={high}")
    if log and low <= 0:
        raise _fail(source, f"{key}.low", f"log scale needs low > 0, got {low}")
    step = v.get("step")
    if step is not None:
        if kind == "int":
            step = _int(source, f"{key}.step", step, min_value=1)
            if log and step != 1:
                raise _fail(source, f"{key}.step", "log scale allows only step = 1")
        else:
            step = _float(source, f"{key}.step", step, positive=True)
            if log:
                raise _fail(source, f"{key}.step", "not allowed with log = true for floats")
    if kind == "float":
        low, high = float(low), float(high)
    return Dimension(kind=kind, low=low, high=high, log=log, step=step)
