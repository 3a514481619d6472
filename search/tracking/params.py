"""What the search harness writes to MLflow: redacted text, flattened params, run names, clean tag values.

Pure functions with no MLflow import. :func:`flatten_config` turns a resolved trial config into the dotted
params of a child run (``arch.*``, ``baseline.*``, ``train.*``, ``data.*``), :func:`run_name` gives the
run its short CleanRL-style name, and :func:`clean_params` / :func:`clean_tags` stringify, redact and
truncate values to MLflow's limits. Every string that reaches a param, tag or log line is passed
through :func:`redact_url`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

__all__ = [
    "ParamValue",
    "clean_params",
    "clean_tags",
    "flatten_config",
    "flatten_params",
    "is_np_number",
    "numeric_params",
    "redact_url",
    "run_name",
]

ParamValue = str | float | int | bool

# MLflow limits (3.x): param values 6000 chars, tag values 8000; stay well under both.
_MAX_PARAM_LEN = 6000
_MAX_TAG_LEN = 5000


# --------------------------------------------------------------------------------------------------
# URL redaction
# --------------------------------------------------------------------------------------------------

# ``scheme://user:secret@host`` → ``scheme://user:***@host``. The user part may not contain ``/``, ``@``
# or ``:``; the secret may contain anything up to the last ``@`` of the authority.
_USERINFO_RE = re.compile(r"(?P<pre>[A-Za-z][A-Za-z0-9+.\-]*://[^:/@\s]*:)(?P<pw>[^\s/]*)(?P<at>@)")
_QUERY_SECRET_RE = re.compile(
    r"(?P<pre>[?&;](?:password|passwd|pwd|pass|secret|token|api_key|apikey|access_token)=)(?P<pw>[^&;#\s]*)",
    re.IGNORECASE,
)


def redact_url(url: str) -> str:
    """Remove passwords from a storage / tracking URL (or any text containing URLs).

    Args:
        url: e.g. ``postgresql://user:secret@host/db`` or ``mysql://h/db?password=x``.

    Returns:
        The same text with every password replaced by ``***``
        (``postgresql://user:***@host/db``, ``mysql://h/db?password=***``).
    """
    if not isinstance(url, str):
        url = str(url)
    out = _USERINFO_RE.sub(lambda m: m["pre"] + ("***" if m["pw"] else "") + m["at"], url)
    return _QUERY_SECRET_RE.sub(lambda m: m["pre"] + "***", out)


# --------------------------------------------------------------------------------------------------
# Config flattening
# --------------------------------------------------------------------------------------------------


def _fmt_value(value: Any) -> ParamValue:
    """Param value: scalars stay, lists become ``2-2-6-2``, ``None`` becomes ``none``."""
    if isinstance(value, bool | int | float):
        return value
    if value is None:
        return "none"
    if isinstance(value, list | tuple):
        if not value:
            return "none"
        # nested lists (per-stage tuples) use "_" between stages so "-" stays the inner separator
        sep = "_" if any(isinstance(v, list | tuple) for v in value) else "-"
        return sep.join(str(_fmt_value(v)) for v in value)
    return redact_url(str(value))


def _flatten(prefix: str, obj: Any, out: dict[str, ParamValue]) -> None:
    if isinstance(obj, Mapping):
        for key, val in obj.items():
            _flatten(f"{prefix}.{key}" if prefix else str(key), val, out)
    else:
        out[prefix] = _fmt_value(obj)


def flatten_params(params: Mapping[str, Any]) -> dict[str, ParamValue]:
    """Nested dicts joined with dots (``{"a": {"b": 1}}`` → ``{"a.b": 1}``), values as by :func:`flatten_config`."""
    flat: dict[str, ParamValue] = {}
    _flatten("", dict(params), flat)
    return flat


def flatten_config(resolved_config: Mapping[str, Any]) -> dict[str, ParamValue]:
    """Flatten a resolved trial config into dotted MLflow params.

    ``model.focalnet.*``, ``model.backbone`` and ``model.num_keypoints`` become ``arch.*`` (plus
    derived ``arch.num_stages`` and ``arch.depth = sum(depths)``); ``model.head.*`` becomes ``head.*``
    and ``model.coord_channels`` ``model.coord_channels`` for every backbone (the names of their search
    dimensions, so heads compare across backbones); ``train.*`` and ``data.*`` keep their prefix. For
    the baseline backbone only ``arch.backbone = baseline`` is under ``arch.``; its own fields and
    keypoint count go to ``baseline.*`` so parallel coordinates never show FocalNet defaults for the
    baseline. Lists are joined as ``2-2-6-2``. (Configs stored before ``head`` existed keep their
    ``arch.head_hidden`` / ``baseline.head_hidden``.)

    Args:
        resolved_config: ``{"model": {...}, "train": {...}, "data": {...}}``.
    """
    out: dict[str, ParamValue] = {}
    model = dict(resolved_config.get("model") or {})
    backbone = str(model.get("backbone", "focalnet"))
    out["arch.backbone"] = backbone
    if isinstance(model.get("head"), Mapping):
        _flatten("head", model.pop("head"), out)
    if "coord_channels" in model:
        out["model.coord_channels"] = _fmt_value(model.pop("coord_channels"))
    if backbone == "baseline":
        _flatten("baseline", model.get("baseline") or {}, out)
        for key, val in model.items():
            if key not in ("backbone", "baseline", "focalnet"):
                _flatten(f"baseline.{key}", val, out)
    else:
        focal = dict(model.get("focalnet") or {})
        _flatten("arch", focal, out)
        depths = focal.get("depths")
        if isinstance(depths, list | tuple) and depths and all(isinstance(d, int) for d in depths):
            out.setdefault("arch.num_stages", len(depths))
            out.setdefault("arch.depth", int(sum(depths)))
        for key, val in model.items():
            if key not in ("backbone", "baseline", "focalnet"):
                _flatten(f"arch.{key}", val, out)
    for section in ("train", "data"):
        if resolved_config.get(section) is not None:
            _flatten(section, resolved_config[section], out)
    for key, val in resolved_config.items():  # anything else keeps its own top-level name
        if key not in ("model", "train", "data"):
            _flatten(str(key), val, out)
    return out


# --------------------------------------------------------------------------------------------------
# Run names
# --------------------------------------------------------------------------------------------------


def _short(value: Any) -> str:
    if isinstance(value, list | tuple):
        uniq = list(dict.fromkeys(value))
        return "-".join(str(v) for v in uniq) if len(uniq) > 1 else str(uniq[0]) if uniq else ""
    return str(value)


#: Head kinds in run names; a head is left out of the name when it is its backbone's default.
_HEAD_ABBREV = {"pool": "pool", "flatten": "flat", "heatmap": "hm", "simcc": "simcc"}
_DEFAULT_HEAD = {"focalnet": "pool", "baseline": "flatten"}


def _head_part(model: Mapping[str, Any], backbone: str) -> list[str]:
    """``["hm1"]`` for a heatmap head on stage 1 (``+xy`` with coordinate channels); ``[]`` for the default."""
    head = model.get("head") if isinstance(model.get("head"), Mapping) else {}
    kind = head.get("kind") or _DEFAULT_HEAD.get(backbone)
    stage = head.get("stage", -1)
    if backbone == "baseline":
        n = len((model.get("baseline") or {}).get("channels") or (8, 16, 32))
    else:
        n = len((model.get("focalnet") or {}).get("depths") or (2, 2, 6, 2))
    if isinstance(stage, int) and not isinstance(stage, bool) and -n <= stage < n:
        stage %= n  # non-negative in names: "-" separates parts
    part = (
        ""
        if kind == _DEFAULT_HEAD.get(backbone) and stage == n - 1
        else f"{_HEAD_ABBREV.get(kind, kind)}{stage}"
    )
    if model.get("coord_channels"):
        part += "+xy"
    return [part] if part else []


def run_name(trial_number: int, resolved_config: Mapping[str, Any], *, label: str | None = None) -> str:
    """Short CleanRL-style run name telling config and seed.

    ``t007-fn-p4-s3-d32-L2-sequ-hm1-s0``: trial 7, FocalNet, patch 4, 3 stages, embed dim 32, focal
    level 2, context mode ``sequ``, a heatmap head on stage 1 (``simcc2``, ``flat1``, ``pool0``; ``+xy``
    with coordinate channels; nothing for the backbone's default head on its last stage), train
    seed 0. The baseline is ``t000-baseline-s0`` (``t000-baseline-hm1-s0`` with another head,
    ``t009-baseline-c16x4-simcc1-s0`` for a conv extractor of 4 blocks from 16 channels); a
    ``label`` (variant or cell name) replaces the architecture part: ``t003-<label>-s0``.

    Args:
        trial_number: Optuna trial number.
        resolved_config: the trial's resolved config.
        label: optional name of a fixed trial.
    """
    model = resolved_config.get("model") or {}
    seed = (resolved_config.get("train") or {}).get("seed", 0)
    parts = [f"t{int(trial_number):03d}"]
    if label:
        parts.append(re.sub(r"[^A-Za-z0-9._+-]+", "_", label)[:40])
    elif model.get("backbone", "focalnet") == "baseline":
        channels = (model.get("baseline") or {}).get("channels")
        default = isinstance(channels, list | tuple) and list(channels) == [8, 16, 32]  # the team's extractor
        size = [] if default or not channels else [f"c{channels[0]}x{len(channels)}"]
        parts += ["baseline", *size, *_head_part(model, "baseline")]
    else:
        fn = model.get("focalnet") or {}
        parts.append("fn")
        if "patch_size" in fn:
            parts.append(f"p{fn['patch_size']}")
        if isinstance(fn.get("depths"), list | tuple):
            parts.append(f"s{len(fn['depths'])}")
        if "embed_dim" in fn:
            parts.append(f"d{fn['embed_dim']}")
        for key in ("focal_levels", "focal_level"):
            if key in fn:
                parts.append(f"L{_short(fn[key])}")
                break
        for key in ("contexts", "context", "context_mode"):
            if isinstance(fn.get(key), str):
                parts.append(str(fn[key])[:4])
                break
        parts += _head_part(model, "focalnet")
    parts.append(f"s{seed}")
    return "-".join(parts)


# --------------------------------------------------------------------------------------------------
# Values as MLflow stores them
# --------------------------------------------------------------------------------------------------


def clean_params(params: Mapping[str, Any]) -> dict[str, str]:
    """Flatten nested dicts, stringify, redact and truncate param values."""
    return {k: redact_url(str(v))[:_MAX_PARAM_LEN] for k, v in flatten_params(params).items()}


def clean_tags(tags: Mapping[str, Any]) -> dict[str, str]:
    """Stringify (bools as ``true``/``false``, lists as ``2-2-6-2``), redact and truncate tag values."""
    out = {}
    for key, val in tags.items():
        if isinstance(val, bool):
            val = "true" if val else "false"
        out[str(key)] = redact_url(str(_fmt_value(val)))[:_MAX_TAG_LEN]
    return out


def numeric_params(params: Mapping[str, Any]) -> dict[str, float]:
    """Numeric (not bool) hyperparameters, to be logged as metrics too."""
    return {
        k: float(v)
        for k, v in params.items()
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(float(v))
    }


def is_np_number(value: Any) -> bool:
    """numpy scalars without importing numpy."""
    return type(value).__module__ == "numpy" and hasattr(value, "dtype") and value.dtype.kind in "iuf"
