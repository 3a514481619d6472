"""Study specs: one TOML file describes a whole search (budget, data, objectives, space, fixed trials).

``load_spec(path)`` reads and validates a spec and returns a frozen :class:`StudySpec`; anything wrong
raises :class:`SpecError` with a one-line message naming the file and the dotted key::

    studies/x.toml: unknown key 'study.n_trail'; did you mean 'study.n_trials'?
    studies/x.toml: study.sampler: unknown sampler 'cmaes'; allowed: tpe, nsga2, gp, random

The fields of ``[model]`` and ``[train]`` are validated by the dataclasses that own them
(``focalnet.FocalNetConfig``, ``focalnet.BaselineConfig``, ``search.train.TrainConfig``); this module only
checks names against their ``dataclasses.fields`` and turns their ``ValueError`` into a ``SpecError``.
The search space itself is checked by :func:`search.space.check_space` before anything starts.
"""

from __future__ import annotations

import dataclasses
import datetime
import difflib
import hashlib
import json
import math
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "ACCURACY_METRICS",
    "DATASET_SCHEMES",
    "DERIVED_ARCH",
    "MINIMIZE_METRICS",
    "MODEL_KEYS",
    "SAMPLERS",
    "ConstraintSpec",
    "DataSpec",
    "Dimension",
    "EarlyStoppingSpec",
    "LatencySpec",
    "ObjectiveSpec",
    "SpecError",
    "StudySpec",
    "load_spec",
    "parse_spec",
]

SAMPLERS = ("tpe", "nsga2", "gp", "random")
ACCURACY_METRICS = ("pck_0.05", "pck_0.1", "pck_0.2")
MINIMIZE_METRICS = ("params", "flops", "latency_ms")
DATASET_SCHEMES = ("synthetic:", "npz:", "coco:")
#: Architecture names that are not FocalNetConfig fields; they are turned into ``depths``.
DERIVED_ARCH = ("num_stages", "depth", "mid_depth_ratio")
#: ``[model]`` keys that belong to ModelConfig rather than FocalNetConfig.
MODEL_KEYS = ("head_hidden", "head_dropout", "num_keypoints")
DEFAULT_TRACKING_URI = "sqlite:///mlruns/mlflow.db"
DEFAULT_HV_REFERENCE = {"accuracy": 0.0, "params": 1e7, "latency_ms": 100.0, "flops": 1e10}
_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]+$")
_SPACE_PREFIXES = ("arch", "train")
_DIM_KEYS = ("choices", "low", "high", "log", "step")
#: Keys of the tables this module validates itself (the order is the documented one).
_SCHEMA: dict[str, tuple[str, ...]] = {
    "study": (
        "name",
        "seed",
        "sampler",
        "n_trials",
        "timeout_min",
        "storage",
        "tracking_uri",
        "variants",
        "baseline",
    ),
    "data": ("dataset", "n_train", "n_val", "n_test", "seed"),
    "objectives": ("accuracy", "minimize"),
    "constraints": ("max_params", "max_latency_ms", "max_flops"),
    "latency": ("device", "batch_size", "threads", "warmup", "repeats"),
    "early_stopping": ("enabled", "rungs", "eta"),
    "hypervolume": ("reference",),
}
_TOP_LEVEL = (*_SCHEMA, "train", "model", "baseline", "space", "ablation")


class SpecError(ValueError):
    """A study spec is invalid. ``str(err)`` is one line: ``"<file>: <dotted.key>: <problem>"``."""

    def __init__(self, message: str, *, key: str = "") -> None:
        super().__init__(" ".join(str(message).split()))
        self.key = key


def _fail(source: str, key: str, problem: str, allowed: Any = None) -> SpecError:
    msg = f"{source}: {key}: {problem}" if key else f"{source}: {problem}"
    if allowed is not None:
        if not isinstance(allowed, str):
            allowed = ", ".join(str(a) for a in allowed)
        msg += f"; allowed: {allowed}"
    return SpecError(msg, key=key)


def _unknown(source: str, key: str, known: list[str] | tuple[str, ...]) -> SpecError:
    """``unknown key 'study.n_trail'; did you mean 'study.n_trials'?`` (or the allowed list)."""
    prefix, _, leaf = key.rpartition(".")
    close = difflib.get_close_matches(leaf, list(known), n=1, cutoff=0.6)
    if close:
        suggestion = f"{prefix}.{close[0]}" if prefix else close[0]
        return SpecError(f"{source}: unknown key '{key}'; did you mean '{suggestion}'?", key=key)
    return SpecError(f"{source}: unknown key '{key}'; allowed: {', '.join(known)}", key=key)


# ----------------------------------------------------------------------------------------------------------
# value checkers


def _type_name(v: Any) -> str:
    return {bool: "boolean", int: "integer", float: "float", str: "string", list: "array", dict: "table"}.get(
        type(v), type(v).__name__
    )


def _int(source: str, key: str, v: Any, *, min_value: int | None = None) -> int:
    if isinstance(v, float) and not isinstance(v, bool) and v.is_integer() and abs(v) < 2**53:
        v = int(v)  # `max_params = 3e6` is a TOML float
    if isinstance(v, bool) or not isinstance(v, int):
        raise _fail(source, key, f"expected an integer, got {_type_name(v)} {v!r}")
    if min_value is not None and v < min_value:
        raise _fail(source, key, f"must be >= {min_value}, got {v}")
    return v


def _float(source: str, key: str, v: Any, *, positive: bool = False, min_value: float | None = None) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise _fail(source, key, f"expected a number, got {_type_name(v)} {v!r}")
    v = float(v)
    if not math.isfinite(v):
        raise _fail(source, key, f"must be finite, got {v}")
    if positive and v <= 0:
        raise _fail(source, key, f"must be > 0, got {v:g}")
    if min_value is not None and v < min_value:
        raise _fail(source, key, f"must be >= {min_value:g}, got {v:g}")
    return v


def _str(source: str, key: str, v: Any) -> str:
    if not isinstance(v, str):
        raise _fail(source, key, f"expected a string, got {_type_name(v)} {v!r}")
    return v


def _bool(source: str, key: str, v: Any) -> bool:
    if not isinstance(v, bool):
        raise _fail(source, key, f"expected true or false, got {_type_name(v)} {v!r}")
    return v


def _table(source: str, key: str, v: Any) -> dict:
    if not isinstance(v, dict):
        raise _fail(source, key, f"expected a table, got {_type_name(v)} {v!r}")
    return v


def _list(source: str, key: str, v: Any) -> list:
    if not isinstance(v, list):
        raise _fail(source, key, f"expected an array, got {_type_name(v)} {v!r}")
    return v


def _check_keys(source: str, section: str, table: dict, known: tuple[str, ...] | list[str]) -> None:
    for k in table:
        if k not in known:
            raise _unknown(source, f"{section}.{k}" if section else k, known)


def _jsonable(v: Any) -> Any:
    """Tuples → lists, dataclasses → dicts, recursively (for to_dict / hashing)."""
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        return {f.name: _jsonable(getattr(v, f.name)) for f in dataclasses.fields(v)}
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_jsonable(x) for x in v]
    if isinstance(v, datetime.date | datetime.time):  # TOML dates and times
        return v.isoformat()
    return v


# ----------------------------------------------------------------------------------------------------------
# spec dataclasses


@dataclass(frozen=True, kw_only=True)
class DataSpec:
    """``[data]``: passed to ``search.data.load_dataset(dataset, n_train=..., ...)``."""

    dataset: str = "synthetic:medium"
    n_train: int = 8000
    n_val: int = 1000
    n_test: int = 1000
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True, kw_only=True)
class ObjectiveSpec:
    """``[objectives]``: one maximised accuracy (on val) plus minimised costs."""

    accuracy: str = "pck_0.05"
    minimize: tuple[str, ...] = ("params", "latency_ms")

    @property
    def names(self) -> list[str]:
        return [f"val_{self.accuracy}", *self.minimize]

    @property
    def directions(self) -> list[str]:
        return ["maximize"] + ["minimize"] * len(self.minimize)

    def to_dict(self) -> dict[str, Any]:
        return {"accuracy": self.accuracy, "minimize": list(self.minimize)}


@dataclass(frozen=True, kw_only=True)
class ConstraintSpec:
    """``[constraints]``: hard limits; a trial over any of them is infeasible (None = no limit)."""

    max_params: int | None = None
    max_latency_ms: float | None = None
    max_flops: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True, kw_only=True)
class LatencySpec:
    """``[latency]``: how ``latency_ms`` is measured."""

    device: str = "cpu"
    batch_size: int = 1
    threads: int = 1
    warmup: int = 10
    repeats: int = 30

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True, kw_only=True)
class EarlyStoppingSpec:
    """``[early_stopping]``: successive-halving rungs (train steps at which val accuracy is compared)."""

    enabled: bool = True
    rungs: tuple[int, ...] = ()
    eta: int = 3

    def to_dict(self) -> dict[str, Any]:
        return {"enabled": self.enabled, "rungs": list(self.rungs), "eta": self.eta}


@dataclass(frozen=True, kw_only=True)
class Dimension:
    """One search dimension. ``kind`` is ``categorical`` (``choices``), ``int`` or ``float`` (``low``..``high``)."""

    kind: str
    choices: tuple | None = None
    low: int | float | None = None
    high: int | float | None = None
    log: bool = False
    step: int | float | None = None

    def extremes(self) -> list[Any]:
        """Values a corner check must try: every choice, or the lowest and highest reachable value."""
        if self.kind == "categorical":
            return list(dict.fromkeys(self.choices or ()))
        return list(dict.fromkeys([self.low, self.top()]))

    def top(self) -> int | float:
        """The highest value reachable from ``low`` with ``step``."""
        if self.step is None:
            return self.high
        n = math.floor((self.high - self.low) / self.step + 1e-9)
        v = self.low + n * self.step
        return int(v) if self.kind == "int" else v

    def to_dict(self) -> dict[str, Any]:
        if self.kind == "categorical":
            return {"kind": "categorical", "choices": list(self.choices or ())}
        d: dict[str, Any] = {"kind": self.kind, "low": self.low, "high": self.high, "log": self.log}
        if self.step is not None:
            d["step"] = self.step
        return d


@dataclass(frozen=True, kw_only=True)
class StudySpec:
    """A validated study spec. ``raw`` is the parsed TOML; everything else is normalised."""

    name: str
    seed: int = 0
    sampler: str = "tpe"
    n_trials: int | None = None
    timeout_s: float | None = None
    storage: str = ""
    tracking_uri: str = ""
    variants: tuple[str, ...] = ()
    baseline: bool = True
    data: DataSpec = field(default_factory=DataSpec)
    train: dict[str, Any] = field(default_factory=dict)
    model: dict[str, Any] = field(default_factory=dict)
    baseline_model: dict[str, Any] = field(default_factory=dict)
    objectives: ObjectiveSpec = field(default_factory=ObjectiveSpec)
    constraints: ConstraintSpec = field(default_factory=ConstraintSpec)
    latency: LatencySpec = field(default_factory=LatencySpec)
    early_stopping: EarlyStoppingSpec = field(default_factory=EarlyStoppingSpec)
    hypervolume_reference: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_HV_REFERENCE))
    space: dict[str, Dimension] = field(default_factory=dict)
    ablation: dict[str, Any] | None = None
    source: str = "<spec>"
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    spec_hash: str = ""

    @property
    def resolved_tracking_uri(self) -> str:
        return self.tracking_uri or DEFAULT_TRACKING_URI

    def to_dict(self) -> dict[str, Any]:
        """Normalised spec as plain JSON types, plus ``raw`` (the parsed TOML, so that
        ``parse_spec(d["raw"])`` rebuilds the spec from a stored copy). No ``spec_hash``, no ``source``."""
        return {
            "name": self.name,
            "seed": self.seed,
            "sampler": self.sampler,
            "n_trials": self.n_trials,
            "timeout_s": self.timeout_s,
            "storage": self.storage,
            "tracking_uri": self.tracking_uri,
            "variants": list(self.variants),
            "baseline": self.baseline,
            "data": self.data.to_dict(),
            "train": _jsonable(self.train),
            "model": _jsonable(self.model),
            "baseline_model": _jsonable(self.baseline_model),
            "objectives": self.objectives.to_dict(),
            "constraints": self.constraints.to_dict(),
            "latency": self.latency.to_dict(),
            "early_stopping": self.early_stopping.to_dict(),
            "hypervolume_reference": dict(self.hypervolume_reference),
            "space": {k: d.to_dict() for k, d in self.space.items()},
            "ablation": _jsonable(self.ablation),
            "raw": _jsonable(self.raw),
        }


#: Fields left out of ``spec_hash``: changing the budget or where results live is not a new spec.
HASH_EXCLUDED = ("storage", "tracking_uri", "n_trials", "timeout_s", "raw")


def compute_spec_hash(normalised: dict[str, Any]) -> str:
    d = {k: v for k, v in normalised.items() if k not in HASH_EXCLUDED}
    text = json.dumps(d, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()


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


def parse_spec(raw: dict, *, source: str = "<spec>", check: bool = True) -> StudySpec:
    """Validate a parsed TOML document. ``check=False`` skips the search-space corner check."""
    from focalnet import BaselineConfig, FocalNetConfig
    from search.train import TrainConfig

    raw = _table(source, "", raw) if not isinstance(raw, dict) else raw
    _check_keys(source, "", raw, _TOP_LEVEL)
    for section in _TOP_LEVEL:
        if section in raw:
            _table(source, section, raw[section])
    for section, known in _SCHEMA.items():
        _check_keys(source, section, raw.get(section, {}), known)

    # [study] -------------------------------------------------------------------------------------------
    st = raw.get("study", {})
    if "name" not in st:
        raise _fail(source, "study.name", "missing (a name for the Optuna study)", "[A-Za-z0-9_.-]+")
    name = _str(source, "study.name", st["name"])
    if not _NAME_RE.fullmatch(name):
        raise _fail(source, "study.name", f"invalid name {name!r}", "letters, digits, '_', '.', '-'")
    seed = _int(source, "study.seed", st.get("seed", 0), min_value=0)
    sampler = _str(source, "study.sampler", st.get("sampler", "tpe"))
    if sampler not in SAMPLERS:
        raise _fail(source, "study.sampler", f"unknown sampler {sampler!r}", SAMPLERS)
    n_trials = None
    if "n_trials" in st:
        n_trials = _int(source, "study.n_trials", st["n_trials"], min_value=1)
    timeout_s = None
    if "timeout_min" in st:
        timeout_s = _float(source, "study.timeout_min", st["timeout_min"], positive=True) * 60.0
    if n_trials is None and timeout_s is None:
        raise _fail(source, "study.n_trials", "no budget: give study.n_trials and/or study.timeout_min")
    storage = _str(source, "study.storage", st.get("storage", ""))
    tracking_uri = _str(source, "study.tracking_uri", st.get("tracking_uri", ""))
    from search.space import VARIANTS

    variants_raw = _list(source, "study.variants", st.get("variants", []))
    variants = []
    for i, v in enumerate(variants_raw):
        v = _str(source, f"study.variants[{i}]", v)
        if v not in VARIANTS:
            raise _fail(source, "study.variants", f"unknown variant {v!r}", VARIANTS)
        if v in variants:
            raise _fail(source, "study.variants", f"variant {v!r} listed twice")
        variants.append(v)
    baseline = _bool(source, "study.baseline", st.get("baseline", True))

    # [data] --------------------------------------------------------------------------------------------
    dt = raw.get("data", {})
    dataset = _str(source, "data.dataset", dt.get("dataset", DataSpec.dataset))
    if not dataset.startswith(DATASET_SCHEMES) or dataset in DATASET_SCHEMES:
        raise _fail(
            source,
            "data.dataset",
            f"bad dataset URI {dataset!r}",
            "synthetic:<level>, npz:<path>, coco:<json>@<dir>",
        )
    data = DataSpec(
        dataset=dataset,
        n_train=_int(source, "data.n_train", dt.get("n_train", DataSpec.n_train), min_value=1),
        n_val=_int(source, "data.n_val", dt.get("n_val", DataSpec.n_val), min_value=1),
        n_test=_int(source, "data.n_test", dt.get("n_test", DataSpec.n_test), min_value=1),
        seed=_int(source, "data.seed", dt.get("seed", DataSpec.seed), min_value=0),
    )

    # [train] -------------------------------------------------------------------------------------------
    train = dict(raw.get("train", {}))
    _check_keys(source, "train", train, _fields(TrainConfig))
    train = _check_types(source, "train", TrainConfig, train)
    train_cfg = _build(TrainConfig, train, source=source, section="train")

    # [model] -------------------------------------------------------------------------------------------
    model = dict(raw.get("model", {}))
    fn_fields = _fields(FocalNetConfig)
    _check_keys(source, "model", model, (*fn_fields, *DERIVED_ARCH, *MODEL_KEYS))
    if "depths" in model:
        for k in DERIVED_ARCH:
            if k in model:
                raise _fail(source, f"model.{k}", "conflicts with model.depths; give one or the other")
    for k in ("num_stages", "depth", "mid_depth_ratio"):
        if k in model:
            _int(source, f"model.{k}", model[k], min_value=1)
    if "head_hidden" in model:
        for i, h in enumerate(_list(source, "model.head_hidden", model["head_hidden"])):
            _int(source, f"model.head_hidden[{i}]", h, min_value=1)
    if "head_dropout" in model:
        hd = _float(source, "model.head_dropout", model["head_dropout"], min_value=0.0)
        if hd >= 1.0:
            raise _fail(source, "model.head_dropout", f"must be in [0, 1), got {hd:g}")
    if "num_keypoints" in model:
        _int(source, "model.num_keypoints", model["num_keypoints"], min_value=1)
    # FocalNetConfig validates the values: check_space() builds the resolved fixed config and the corners.

    # [baseline] ----------------------------------------------------------------------------------------
    baseline_model = dict(raw.get("baseline", {}))
    _check_keys(source, "baseline", baseline_model, _fields(BaselineConfig))
    _build(BaselineConfig, baseline_model, source=source, section="baseline")

    # [objectives] --------------------------------------------------------------------------------------
    ob = raw.get("objectives", {})
    accuracy = _str(source, "objectives.accuracy", ob.get("accuracy", ObjectiveSpec.accuracy))
    if accuracy not in ACCURACY_METRICS:
        raise _fail(source, "objectives.accuracy", f"unknown metric {accuracy!r}", ACCURACY_METRICS)
    minimize = []
    for i, m in enumerate(_list(source, "objectives.minimize", ob.get("minimize", ["params", "latency_ms"]))):
        m = _str(source, f"objectives.minimize[{i}]", m)
        if m not in MINIMIZE_METRICS:
            raise _fail(source, "objectives.minimize", f"unknown objective {m!r}", MINIMIZE_METRICS)
        if m in minimize:
            raise _fail(source, "objectives.minimize", f"objective {m!r} listed twice")
        minimize.append(m)
    objectives = ObjectiveSpec(accuracy=accuracy, minimize=tuple(minimize))

    # [constraints] -------------------------------------------------------------------------------------
    co = raw.get("constraints", {})
    constraints = ConstraintSpec(
        max_params=_int(source, "constraints.max_params", co["max_params"], min_value=1)
        if "max_params" in co
        else None,
        max_latency_ms=_float(source, "constraints.max_latency_ms", co["max_latency_ms"], positive=True)
        if "max_latency_ms" in co
        else None,
        max_flops=_float(source, "constraints.max_flops", co["max_flops"], positive=True)
        if "max_flops" in co
        else None,
    )

    # [latency] -----------------------------------------------------------------------------------------
    la = raw.get("latency", {})
    device = _str(source, "latency.device", la.get("device", "cpu"))
    if not re.fullmatch(r"cpu|cuda(:\d+)?|auto", device):
        raise _fail(source, "latency.device", f"unknown device {device!r}", "cpu, cuda, cuda:<n>, auto")
    latency = LatencySpec(
        device=device,
        batch_size=_int(source, "latency.batch_size", la.get("batch_size", 1), min_value=1),
        threads=_int(source, "latency.threads", la.get("threads", 1), min_value=0),
        warmup=_int(source, "latency.warmup", la.get("warmup", 10), min_value=0),
        repeats=_int(source, "latency.repeats", la.get("repeats", 30), min_value=1),
    )

    # [space] -------------------------------------------------------------------------------------------
    space = _parse_space(source, raw.get("space", {}), fn_fields=fn_fields, train_fields=_fields(TrainConfig))

    # [early_stopping] ----------------------------------------------------------------------------------
    es = raw.get("early_stopping", {})
    enabled = _bool(source, "early_stopping.enabled", es.get("enabled", True))
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
    min_steps = train_cfg.steps
    if "train.steps" in space:
        min_steps = min(space["train.steps"].extremes())
    if rungs and rungs[-1] >= min_steps:
        raise _fail(
            source,
            "early_stopping.rungs",
            f"rung {rungs[-1]} is not below train.steps={min_steps}",
            f"steps in 1..{min_steps - 1}",
        )
    early_stopping = EarlyStoppingSpec(enabled=enabled, rungs=tuple(rungs), eta=eta)

    # [hypervolume] -------------------------------------------------------------------------------------
    hv_ref = dict(DEFAULT_HV_REFERENCE)
    hv = raw.get("hypervolume", {})
    if "reference" in hv:
        ref = _table(source, "hypervolume.reference", hv["reference"])
        _check_keys(source, "hypervolume.reference", ref, tuple(DEFAULT_HV_REFERENCE))
        for k, v in ref.items():
            hv_ref[k] = _float(source, f"hypervolume.reference.{k}", v)

    # [ablation] ----------------------------------------------------------------------------------------
    ablation = raw.get("ablation")
    ablation = dict(ablation) if ablation is not None else None

    spec = StudySpec(
        name=name,
        seed=seed,
        sampler=sampler,
        n_trials=n_trials,
        timeout_s=timeout_s,
        storage=storage,
        tracking_uri=tracking_uri,
        variants=tuple(variants),
        baseline=baseline,
        data=data,
        train=train,
        model=model,
        baseline_model=baseline_model,
        objectives=objectives,
        constraints=constraints,
        latency=latency,
        early_stopping=early_stopping,
        hypervolume_reference=hv_ref,
        space=space,
        ablation=ablation,
        source=source,
        raw=raw,
    )
    spec = dataclasses.replace(spec, spec_hash=compute_spec_hash(spec.to_dict()))
    if spec.ablation is not None:
        from search.ablation import validate_ablation

        validate_ablation(spec)
    if check:
        from search.space import check_space

        check_space(spec)
    return spec


def _dim_order(name: str) -> tuple[int, str]:
    """Sampling order: patch size and stage layout first (later bounds depend on them), then by name."""
    first = ("arch.patch_size", "arch.num_stages", "arch.depth", "arch.mid_depth_ratio")
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
            raise _fail(source, f"space.{k}", "dimension names are 'arch.<field>' or 'train.<field>'")
    allowed = {"arch": (*fn_fields, *DERIVED_ARCH), "train": train_fields}
    out: dict[str, Dimension] = {}
    for name in sorted(flat, key=_dim_order):
        key = f"space.{name}"
        prefix, _, leaf = name.partition(".")
        if prefix not in allowed:
            raise _fail(
                source,
                key,
                f"unknown prefix {prefix!r}",
                "arch.<FocalNetConfig field>, train.<TrainConfig field>",
            )
        if leaf not in allowed[prefix]:
            raise _unknown(source, key, allowed[prefix])
        if name in ("arch.depths", "arch.img_size", "arch.in_chans"):
            hint = {"arch.depths": "search arch.num_stages / arch.depth / arch.mid_depth_ratio instead"}
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
