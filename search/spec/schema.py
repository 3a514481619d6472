"""The study spec's schema: the frozen dataclasses a spec parses into, its constants, and `SpecError`.

This is the bottom of the spec machinery: `search.spec.space` and `search.spec.grid` import their types from
here, and `search.spec.parse` (which parses TOML and runs their checks) imports all three, so nothing circles.
"""

from __future__ import annotations

import dataclasses
import datetime
import difflib
import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from focalnet.config import LEGACY_HEAD_KEYS
from search.task.data import DATA_KEYS

__all__ = [
    "ACCURACY_METRICS",
    "DATASET_SCHEMES",
    "DERIVED_ARCH",
    "MINIMIZE_METRICS",
    "MODEL_DIMS",
    "BASELINE_DIMS",
    "MODEL_KEYS",
    "SAMPLERS",
    "STOPPING_RULES",
    "DEFAULT_STOPPING_RULE",
    "DEFAULT_STOPPING_FRACTION",
    "ConstraintSpec",
    "DataSpec",
    "Dimension",
    "EarlyStoppingSpec",
    "LatencySpec",
    "ObjectiveSpec",
    "SpecError",
    "StudySpec",
    "compute_spec_hash",
]

SAMPLERS = ("tpe", "nsga2", "gp", "random")
#: Early-stopping promotion rules (``search.efficiency.stopping.RULES``; kept here so the spec needs no optuna).
STOPPING_RULES = ("mo-asha", "cost-asha", "hv-asha", "behind-baseline")
#: ``[early_stopping] fraction`` when not set (``search.efficiency.stopping.DEFAULT_FRACTION``).
DEFAULT_STOPPING_FRACTION = 0.8
#: The rule a spec without ``[early_stopping] rule`` gets (chosen from the simulator's evidence, README).
DEFAULT_STOPPING_RULE = "cost-asha"
ACCURACY_METRICS = ("pck_0.05", "pck_0.1", "pck_0.2")
MINIMIZE_METRICS = ("params", "flops", "latency_ms")
DATASET_SCHEMES = ("synthetic:", "npz:", "coco:")
#: Architecture names that are not FocalNetConfig fields; they are turned into ``depths``.
DERIVED_ARCH = ("num_stages", "depth", "mid_depth_ratio")
#: ``[model]`` keys that belong to ModelConfig rather than FocalNetConfig (the legacy head keys: the
#: pre-``head`` spelling of ``head.hidden``/``head.dropout``, still accepted).
MODEL_KEYS = ("head", "coord_channels", *LEGACY_HEAD_KEYS, "num_keypoints")
#: ``model.<name>`` search dimensions: ModelConfig fields outside the backbone and head configs
#: (``model.backbone`` searches the family: ``"focalnet"`` and/or ``"baseline"``, the team's extractor).
MODEL_DIMS = ("coord_channels", "backbone")
#: ``baseline.<name>`` search dimensions of the conv extractor's family (they build ``channels``): the first
#: block's channels (``width``; each later block doubles them) and the number of conv + pool blocks.
BASELINE_DIMS = ("width", "blocks")
DEFAULT_TRACKING_URI = "sqlite:///mlruns/mlflow.db"
DEFAULT_HV_REFERENCE = {"accuracy": 0.0, "params": 1e7, "latency_ms": 100.0, "flops": 1e10}
_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]+$")
_SPACE_PREFIXES = ("arch", "train", "head", "model", "baseline")
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
        "baseline_lrs",
        "verify_seeds",
        "jobs",
        "warm_start",
        "warm_start_trials",
    ),
    "data": DATA_KEYS,
    "objectives": ("accuracy", "minimize", "floor", "floor_below_baseline"),
    "constraints": ("max_params", "max_latency_ms", "max_flops"),
    "latency": ("device", "batch_size", "threads", "warmup", "repeats", "clock"),
    "early_stopping": ("enabled", "rungs", "eta", "rule", "fraction"),
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
    """``[data]``, validated by ``search.task.data.data_config`` and loaded by ``load_data_config``.

    ``dataset`` is cut into splits (``""`` when ``train`` names the train split's own source); ``train``,
    ``val``, ``test`` are explicit file sources; ``n_*`` = -1 takes all (of the rest, or of its own source).
    ``base_dir`` (the spec file's folder, where relative file paths resolve) is not part of the spec.
    """

    dataset: str = "synthetic:medium"
    n_train: int = 8000
    n_val: int = 1000
    n_test: int = 1000
    seed: int = 0
    train: str = ""
    val: str = ""
    test: str = ""
    strict: bool = False
    normalized: bool = False
    base_dir: str = field(default=".", compare=False)

    def to_dict(self) -> dict[str, Any]:
        """The data config; keys left at their defaults (train/val/test/strict/normalized) are omitted, so
        specs written before they existed keep their hash."""
        d: dict[str, Any] = {k: getattr(self, k) for k in ("dataset", "n_train", "n_val", "n_test", "seed")}
        d.update(
            {
                k: getattr(self, k)
                for k in ("train", "val", "test", "strict", "normalized")
                if getattr(self, k)
            }
        )
        return d


@dataclass(frozen=True, kw_only=True)
class ObjectiveSpec:
    """``[objectives]``: one maximised accuracy (on val) plus minimised costs, and the region of interest.

    A trial is a Pareto member only inside the region of interest: it left the constant-predictor
    plateau and its val accuracy is at least the floor — ``floor`` if given, else the reference
    baseline's val minus ``floor_below_baseline`` (no floor without a baseline).
    """

    accuracy: str = "pck_0.05"
    minimize: tuple[str, ...] = ("params", "latency_ms")
    floor: float | None = None
    floor_below_baseline: float = 0.10

    @property
    def names(self) -> list[str]:
        return [f"val_{self.accuracy}", *self.minimize]

    @property
    def directions(self) -> list[str]:
        return ["maximize"] + ["minimize"] * len(self.minimize)

    def accuracy_floor(self, baseline_val: float | None) -> float | None:
        """The region of interest's accuracy floor, given the reference baseline's val (None: no floor)."""
        if self.floor is not None:
            return self.floor
        return None if baseline_val is None else baseline_val - self.floor_below_baseline

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"accuracy": self.accuracy, "minimize": list(self.minimize)}
        # Only when changed: a spec that does not set them keeps the hash it had before they existed.
        if self.floor is not None:
            d["floor"] = self.floor
        if self.floor_below_baseline != 0.10:
            d["floor_below_baseline"] = self.floor_below_baseline
        return d


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
    clock: str = "wall"

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        if self.clock == "wall":  # the default: a spec that does not set it keeps its hash
            d.pop("clock")
        return d


@dataclass(frozen=True, kw_only=True)
class EarlyStoppingSpec:
    """``[early_stopping]``: successive-halving rungs (train steps at which val accuracy is compared)."""

    enabled: bool = True
    rungs: tuple[int, ...] = ()
    eta: int = 3
    rule: str = DEFAULT_STOPPING_RULE
    fraction: float = DEFAULT_STOPPING_FRACTION  # rule "behind-baseline" only

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"enabled": self.enabled, "rungs": list(self.rungs), "eta": self.eta}
        # MO-ASHA was the only rule before `rule` existed: a spec using it keeps the hash it had; `fraction`
        # only matters to "behind-baseline", so the other rules' specs keep theirs too.
        d |= {"rule": self.rule} if self.rule != "mo-asha" else {}
        return d | ({"fraction": self.fraction} if self.rule == "behind-baseline" else {})


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
    baseline_lrs: tuple[float, ...] = ()
    verify_seeds: int = 0
    jobs: int = 1
    warm_start: str = ""
    warm_start_trials: int = 3
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

    def warm_start_path(self) -> str:
        """``study.warm_start`` resolved against the spec file's folder, as data paths are ("" if unset)."""
        if not self.warm_start or self.warm_start.startswith("/") or self.source.startswith("<"):
            return self.warm_start
        return str(Path(self.source).parent / self.warm_start)

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
            # Only when set: a spec that does not use them keeps the hash it had before they existed.
            **({"baseline_lrs": list(self.baseline_lrs)} if self.baseline_lrs else {}),
            **({"verify_seeds": self.verify_seeds} if self.verify_seeds else {}),
            **(
                {"warm_start": self.warm_start, "warm_start_trials": self.warm_start_trials}
                if self.warm_start
                else {}
            ),
            **({"jobs": self.jobs} if self.jobs != 1 else {}),
        }


#: Fields left out of ``spec_hash``: changing the budget or where results live is not a new spec.
HASH_EXCLUDED = ("storage", "tracking_uri", "n_trials", "timeout_s", "jobs", "raw")


def compute_spec_hash(normalised: dict[str, Any]) -> str:
    d = {k: v for k, v in normalised.items() if k not in HASH_EXCLUDED}
    text = json.dumps(d, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()
