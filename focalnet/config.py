"""Configuration dataclasses for the FocalNet backbone, the baseline extractor and the keypoint model.

Every config is a frozen, keyword-only dataclass that validates itself on construction and
round-trips through JSON via ``to_dict()`` / ``from_dict()`` (tuples are stored as lists).
Validation errors are ``ValueError`` whose message starts with the offending field name.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "FocalNetConfig",
    "BaselineConfig",
    "HeadConfig",
    "ModelConfig",
    "max_stages",
    "LEGACY_HEAD_KEYS",
    "fold_legacy_head_keys",
]

CONTEXTS = ("sequential", "independent")
BACKBONES = ("focalnet", "baseline")
HEAD_KINDS = ("pool", "flatten", "heatmap", "simcc")
#: Head kind each backbone gets when ``HeadConfig.kind`` is None: today's designs, unchanged.
DEFAULT_HEADS = {"focalnet": "pool", "baseline": "flatten"}


def max_stages(img_size: int, patch_size: int) -> int:
    """Largest number of FocalNet stages (BasicLayers) for this image and patch size.

    The stem gives an ``n x n`` token grid with ``n = img_size // patch_size``; each of the
    ``stages - 1`` downsamples must halve it exactly (rule used for both plain and overlapped
    embeddings, so the resolution table never depends on ``overlapped_embed``). Hence
    ``max_stages = 1 + v2(n)``, the number of times ``n`` can be halved without remainder,
    e.g. 64 px: patch 4 -> 5 stages (16, 8, 4, 2, 1), patch 16 -> 3 stages (4, 2, 1).

    Args:
        img_size: Input side length in pixels.
        patch_size: Stem patch size; must divide ``img_size``.
    """
    if img_size < 1 or patch_size < 1 or img_size % patch_size:
        raise ValueError(f"patch_size: must divide img_size={img_size}, got {patch_size}")
    n, stages = img_size // patch_size, 1
    while n % 2 == 0:
        n //= 2
        stages += 1
    return stages


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _check_int(name: str, v: Any, lo: int) -> None:
    if not _is_int(v) or v < lo:
        raise ValueError(f"{name}: must be an integer >= {lo}, got {v!r}")


def _check_bool(name: str, v: Any) -> None:
    if not isinstance(v, bool):
        raise ValueError(f"{name}: must be true or false, got {v!r}")


def _check_float(name: str, v: Any, lo: float, hi: float, hi_open: bool = False) -> float:
    ok = isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
    ok = ok and lo <= v and (v < hi if hi_open else v <= hi)
    if not ok:
        rng = f"[{lo}, {hi})" if hi_open else f"[{lo}, {hi}]"
        raise ValueError(f"{name}: must be a number in {rng}, got {v!r}")
    return float(v)


def _per_stage(name: str, v: Any, stages: int) -> tuple[int, ...]:
    """Expand an int-or-tuple field to one int per stage (after checking its length)."""
    if _is_int(v):
        return (v,) * stages
    if not isinstance(v, tuple) or not all(_is_int(x) for x in v):
        raise ValueError(f"{name}: must be an integer or a list of integers, got {v!r}")
    if len(v) != stages:
        raise ValueError(f"{name}: needs one entry per stage (len(depths)={stages}), got {len(v)}")
    return v


def _tuplify(v: Any) -> Any:
    return tuple(_tuplify(x) for x in v) if isinstance(v, list | tuple) else v


def _listify(v: Any) -> Any:
    return [_listify(x) for x in v] if isinstance(v, list | tuple) else v


def _check_keys(cls: type, d: Any) -> None:
    if not isinstance(d, dict):
        raise ValueError(f"config: {cls.__name__} needs a mapping, got {type(d).__name__}")
    known = {f.name for f in dataclasses.fields(cls)}
    for key in d:
        if key not in known:
            raise ValueError(f"{key}: unknown key for {cls.__name__} (known: {', '.join(sorted(known))})")


def _from_flat_dict(cls: type, d: dict[str, Any]) -> Any:
    _check_keys(cls, d)
    return cls(**{k: _tuplify(v) for k, v in d.items()})


@dataclass(frozen=True, kw_only=True)
class FocalNetConfig:
    """FocalNet backbone hyper-parameters (defaults: FocalNet-T SRF at 64x64).

    Args:
        img_size: Input side length in pixels (square inputs).
        in_chans: Input channels.
        patch_size: Stem stride; must divide ``img_size``.
        embed_dim: Channels of stage 0; doubled after every stage but the last.
        depths: Blocks per stage (one entry per BasicLayer, any length >= 1). The stem grid
            ``img_size // patch_size`` must be divisible by ``2 ** (len(depths) - 1)``
            (see :func:`max_stages`).
        focal_levels: Focal levels L (>= 1) for all stages, or one per stage.
        focal_windows: Kernel of the first focal level (odd, >= 1), for all stages or one per stage.
        focal_factor: Kernel growth per level (``k_l = focal_factor * l + focal_window``); even so
            every kernel stays odd and ``padding = k // 2`` preserves the resolution.
        mlp_ratio: MLP hidden width / channels.
        overlapped_embed: Overlapping conv stem and downsamples instead of kernel == stride.
        contexts: ``"sequential"`` (official: level l convolves level l-1's output) or
            ``"independent"`` (every level convolves the projected context directly).
        use_layerscale: Learnable per-channel residual scales ``gamma_1`` / ``gamma_2``.
        layerscale_value: Initial layerscale value.
        use_postln: Post-norm blocks (norm after modulation / MLP instead of before).
        use_postln_in_modulation: LayerNorm ``ln`` before the modulation's ``proj``.
        normalize_modulator: Divide the aggregated context by ``L + 1``.
        drop_rate: Dropout after the stem, in the MLP and after ``proj``.
        drop_path_rate: Stochastic depth, linearly increasing over all blocks up to this rate.
        patch_norm: LayerNorm after the stem (downsamples always have one, as in the official code).
    """

    img_size: int = 64
    in_chans: int = 3
    patch_size: int = 4
    embed_dim: int = 96
    depths: tuple[int, ...] = (2, 2, 6, 2)
    focal_levels: int | tuple[int, ...] = 2
    focal_windows: int | tuple[int, ...] = 3
    focal_factor: int = 2
    mlp_ratio: float = 4.0
    overlapped_embed: bool = False
    contexts: str = "sequential"
    use_layerscale: bool = False
    layerscale_value: float = 1e-4
    use_postln: bool = False
    use_postln_in_modulation: bool = False
    normalize_modulator: bool = False
    drop_rate: float = 0.0
    drop_path_rate: float = 0.0
    patch_norm: bool = True

    def __post_init__(self) -> None:
        _check_int("img_size", self.img_size, 1)
        _check_int("in_chans", self.in_chans, 1)
        _check_int("patch_size", self.patch_size, 1)
        if self.img_size % self.patch_size:
            raise ValueError(f"patch_size: must divide img_size={self.img_size}, got {self.patch_size}")
        _check_int("embed_dim", self.embed_dim, 1)
        depths = self.depths
        if not isinstance(depths, tuple) or not depths or not all(_is_int(d) and d >= 1 for d in depths):
            raise ValueError(f"depths: must be a non-empty list of integers >= 1, got {depths!r}")
        limit = max_stages(self.img_size, self.patch_size)
        if len(depths) > limit:
            grid = self.img_size // self.patch_size
            raise ValueError(
                f"depths: at most {limit} stages for img_size={self.img_size}, patch_size={self.patch_size} "
                f"(the {grid}x{grid} grid must halve exactly at each of the len(depths)-1 downsamples), "
                f"got {len(depths)}"
            )
        for lvl in _per_stage("focal_levels", self.focal_levels, len(depths)):
            if lvl < 1:
                raise ValueError(f"focal_levels: must be >= 1, got {self.focal_levels!r}")
        for win in _per_stage("focal_windows", self.focal_windows, len(depths)):
            if win < 1 or win % 2 == 0:
                raise ValueError(f"focal_windows: must be odd and >= 1, got {self.focal_windows!r}")
        if not _is_int(self.focal_factor) or self.focal_factor < 0 or self.focal_factor % 2:
            raise ValueError(f"focal_factor: must be an even integer >= 0, got {self.focal_factor!r}")
        mlp_ratio = _check_float("mlp_ratio", self.mlp_ratio, 0.0, math.inf, hi_open=True)
        if int(self.embed_dim * mlp_ratio) < 1:
            raise ValueError(
                f"mlp_ratio: must give at least 1 hidden unit (embed_dim * mlp_ratio >= 1), got {mlp_ratio}"
            )
        if self.contexts not in CONTEXTS:
            raise ValueError(f"contexts: must be one of {', '.join(CONTEXTS)}, got {self.contexts!r}")
        for name in ("overlapped_embed", "use_layerscale", "use_postln", "use_postln_in_modulation"):
            _check_bool(name, getattr(self, name))
        _check_bool("normalize_modulator", self.normalize_modulator)
        _check_bool("patch_norm", self.patch_norm)
        # Normalise ints given for float fields (e.g. from JSON) so equality and repr are stable.
        object.__setattr__(self, "mlp_ratio", mlp_ratio)
        ls = _check_float("layerscale_value", self.layerscale_value, 0.0, math.inf, hi_open=True)
        object.__setattr__(self, "layerscale_value", ls)
        object.__setattr__(self, "drop_rate", _check_float("drop_rate", self.drop_rate, 0.0, 1.0, True))
        dpr = _check_float("drop_path_rate", self.drop_path_rate, 0.0, 1.0, True)
        object.__setattr__(self, "drop_path_rate", dpr)

    @property
    def num_stages(self) -> int:
        return len(self.depths)

    @property
    def stage_focal_levels(self) -> tuple[int, ...]:
        return _per_stage("focal_levels", self.focal_levels, self.num_stages)

    @property
    def stage_focal_windows(self) -> tuple[int, ...]:
        return _per_stage("focal_windows", self.focal_windows, self.num_stages)

    @property
    def stage_dims(self) -> tuple[int, ...]:
        return tuple(self.embed_dim * 2**i for i in range(self.num_stages))

    @property
    def stage_resolutions(self) -> tuple[int, ...]:
        grid = self.img_size // self.patch_size
        return tuple(grid // 2**i for i in range(self.num_stages))

    @property
    def num_features(self) -> int:
        return self.stage_dims[-1]

    def kernel_sizes(self, stage: int) -> tuple[int, ...]:
        """Depthwise kernel size of every focal level of ``stage``."""
        window, levels = self.stage_focal_windows[stage], self.stage_focal_levels[stage]
        return tuple(self.focal_factor * lvl + window for lvl in range(levels))

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _listify(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FocalNetConfig:
        return _from_flat_dict(cls, d)


@dataclass(frozen=True, kw_only=True)
class BaselineConfig:
    """The team's current conv patch extractor.

    Args:
        img_size: Input side length; must be divisible by ``2 ** len(channels)``.
        in_chans: Input channels.
        channels: Output channels of each conv block; every block ends in a 2x2 average pool
            (three blocks -> 1/8 resolution).
    """

    img_size: int = 64
    in_chans: int = 3
    channels: tuple[int, ...] = (8, 16, 32)

    def __post_init__(self) -> None:
        _check_int("img_size", self.img_size, 1)
        _check_int("in_chans", self.in_chans, 1)
        ch = self.channels
        if not isinstance(ch, tuple) or not ch or not all(_is_int(c) and c >= 1 for c in ch):
            raise ValueError(f"channels: must be a non-empty list of integers >= 1, got {ch!r}")
        if self.img_size % 2 ** len(ch):
            raise ValueError(
                f"channels: {len(ch)} blocks need img_size divisible by {2 ** len(ch)}, got img_size={self.img_size}"
            )

    @property
    def num_features(self) -> int:
        side = self.img_size // 2 ** len(self.channels)
        return self.channels[-1] * side * side

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _listify(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BaselineConfig:
        return _from_flat_dict(cls, d)


@dataclass(frozen=True, kw_only=True)
class HeadConfig:
    """The regression head: which backbone map it reads and how it turns it into (B, K, 2) coordinates.

    Kinds (all trained end to end with the same coordinate loss, all output patch units):

    * ``pool`` — global average pool -> MLP (the seed's FocalNet design; keeps little absolute position);
    * ``flatten`` — the map flattened -> MLP (the team's baseline design);
    * ``heatmap`` — 1x1 convs -> K heatmaps -> spatial softmax -> expected cell centre (integral
      regression / soft-argmax, Sun et al. 2018);
    * ``simcc`` — 1x1 convs -> K maps, each flattened -> two linears giving per-axis logits over
      ``split_ratio`` bins per pixel -> softmax -> expected bin centre (SimCC, Li et al. 2022, decoded by
      expectation so it needs no label smoothing or classification loss).

    Args:
        kind: One of ``pool``, ``flatten``, ``heatmap``, ``simcc``; None = the backbone's default
            (``pool`` for FocalNet, ``flatten`` for the baseline), resolved by :class:`ModelConfig`.
        hidden: Hidden widths: MLP layers (pool, flatten) or 1x1 conv channels (heatmap, simcc), each
            followed by GELU and dropout; empty = one linear layer / 1x1 conv.
        dropout: Dropout after every hidden layer.
        stage: Backbone stage whose map the head reads (FocalNet stage or baseline conv block; negative
            counts from the last, -1 = last). Every later stage is added to it through a 1x1 conv and
            nearest upsampling (a top-down path), so no backbone parameter is dead and deep context still
            reaches the head; the map's resolution is the stage's.
        beta: Inverse temperature of the heatmap / SimCC softmax (its initial value if learned), in (0, 1000].
        learn_beta: Learn ``beta`` (as a log) instead of keeping it fixed.
        split_ratio: SimCC bins per pixel (the paper's default is 2.0).
    """

    kind: str | None = None
    hidden: tuple[int, ...] = (256,)
    dropout: float = 0.0
    stage: int = -1
    beta: float = 1.0
    learn_beta: bool = False
    split_ratio: float = 2.0

    def __post_init__(self) -> None:
        if self.kind is not None and self.kind not in HEAD_KINDS:
            raise ValueError(f"kind: must be one of {', '.join(HEAD_KINDS)}, got {self.kind!r}")
        hh = self.hidden
        if not isinstance(hh, tuple) or not all(_is_int(h) and h >= 1 for h in hh):
            raise ValueError(f"hidden: must be a list of integers >= 1, got {hh!r}")
        object.__setattr__(self, "dropout", _check_float("dropout", self.dropout, 0.0, 1.0, hi_open=True))
        if not _is_int(self.stage):
            raise ValueError(
                f"stage: must be an integer (negative counts from the last stage), got {self.stage!r}"
            )
        beta = _check_float("beta", self.beta, 0.0, 1000.0)
        if beta <= 0:
            raise ValueError(f"beta: must be a number in (0, 1000], got {self.beta!r}")
        object.__setattr__(self, "beta", beta)
        _check_bool("learn_beta", self.learn_beta)
        object.__setattr__(self, "split_ratio", _check_float("split_ratio", self.split_ratio, 1.0, 16.0))

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _listify(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> HeadConfig:
        return _from_flat_dict(cls, d)


#: Top-level keys of configs, checkpoints and specs written before the head had its own config: the old
#: spelling of ``head.hidden`` / ``head.dropout``. :func:`fold_legacy_head_keys` is the one place that reads them.
LEGACY_HEAD_KEYS = {"head_hidden": "hidden", "head_dropout": "dropout"}


def fold_legacy_head_keys(model: Mapping[str, Any]) -> dict[str, Any]:
    """The head fields of a model mapping, with its legacy top-level head keys folded in.

    Args:
        model: a ``ModelConfig`` dict or a spec's ``[model]`` table. ``model["head"]`` (optional) is a
            ``HeadConfig`` or its dict; ``head_hidden`` / ``head_dropout`` are read as ``hidden`` / ``dropout``.

    Returns:
        A new dict of ``HeadConfig`` fields (the values themselves are not copied).

    Raises:
        ValueError: the head is not a mapping, or a legacy key and its new spelling are both given
            (``"head_hidden: conflicts with head.hidden; give one or the other"``).
    """
    head = model.get("head", {})
    if isinstance(head, HeadConfig):
        head = head.to_dict()
    if not isinstance(head, dict):
        raise ValueError(f"head: must be a mapping of HeadConfig fields, got {type(head).__name__}")
    folded = dict(head)
    for old, new in LEGACY_HEAD_KEYS.items():
        if old in model:
            if new in head:
                raise ValueError(f"{old}: conflicts with head.{new}; give one or the other")
            folded[new] = model[old]
    return folded


def _head_from_dict(d: dict[str, Any]) -> HeadConfig:
    """The HeadConfig of a ModelConfig dict; an error in a legacy key names that key, as the caller wrote it."""
    head = fold_legacy_head_keys(d)
    try:
        return HeadConfig.from_dict(head)
    except ValueError as e:
        field_name = str(e).partition(":")[0]
        old = next((o for o, n in LEGACY_HEAD_KEYS.items() if n == field_name and o in d), None)
        raise ValueError(str(e).replace(field_name, old, 1) if old else f"head.{e}") from None


@dataclass(frozen=True, kw_only=True)
class ModelConfig:
    """Whole keypoint model: optional coordinate channels, a backbone and the regression head.

    Args:
        backbone: ``"focalnet"`` or ``"baseline"``; selects which of the two sub-configs is used.
        num_keypoints: Joints K; the model outputs (B, K, 2).
        focalnet: Backbone config used when ``backbone == "focalnet"``.
        baseline: Backbone config used when ``backbone == "baseline"``.
        head: The head; a ``kind`` of None becomes the backbone's default (FocalNet: ``pool``,
            baseline: ``flatten``), so the default model is the one the project always had.
        coord_channels: Append x/y coordinate channels (CoordConv, Liu et al. 2018) to the normalised
            image before the backbone stem, so position is an input rather than a padding artefact.
    """

    backbone: str = "focalnet"
    num_keypoints: int = 16
    focalnet: FocalNetConfig = field(default_factory=FocalNetConfig)
    baseline: BaselineConfig = field(default_factory=BaselineConfig)
    head: HeadConfig = field(default_factory=HeadConfig)
    coord_channels: bool = False

    def __post_init__(self) -> None:
        if self.backbone not in BACKBONES:
            raise ValueError(f"backbone: must be one of {', '.join(BACKBONES)}, got {self.backbone!r}")
        _check_int("num_keypoints", self.num_keypoints, 1)
        if not isinstance(self.focalnet, FocalNetConfig):
            raise ValueError(f"focalnet: must be a FocalNetConfig, got {type(self.focalnet).__name__}")
        if not isinstance(self.baseline, BaselineConfig):
            raise ValueError(f"baseline: must be a BaselineConfig, got {type(self.baseline).__name__}")
        if not isinstance(self.head, HeadConfig):
            raise ValueError(f"head: must be a HeadConfig, got {type(self.head).__name__}")
        _check_bool("coord_channels", self.coord_channels)
        if self.head.kind is None:
            object.__setattr__(
                self, "head", dataclasses.replace(self.head, kind=DEFAULT_HEADS[self.backbone])
            )
        shapes = self.stage_shapes
        n, stage = len(shapes), self.head.stage
        if not -n <= stage < n:
            raise ValueError(
                f"head.stage: the {self.backbone} has {n} stage(s), so stage must be in [{-n}, {n - 1}], got {stage}"
            )
        if self.head.kind == "heatmap" and shapes[stage][1] < 2:
            raise ValueError(
                f"head.stage: a heatmap head needs a map of at least 2x2, stage {stage} of the {self.backbone} is "
                f"{shapes[stage][1]}x{shapes[stage][1]}; read an earlier stage"
            )

    @property
    def backbone_config(self) -> FocalNetConfig | BaselineConfig:
        return self.focalnet if self.backbone == "focalnet" else self.baseline

    @property
    def img_size(self) -> int:
        return self.backbone_config.img_size

    @property
    def in_chans(self) -> int:
        """Image channels (the coordinate channels are added inside the model)."""
        return self.backbone_config.in_chans

    @property
    def stage_shapes(self) -> tuple[tuple[int, int], ...]:
        """(channels, side) of the map each backbone stage hands to the head, first stage first."""
        if self.backbone == "focalnet":
            c = self.focalnet
            return tuple(zip(c.stage_dims, c.stage_resolutions, strict=True))
        b = self.baseline
        return tuple((ch, b.img_size // 2 ** (i + 1)) for i, ch in enumerate(b.channels))

    def to_dict(self) -> dict[str, Any]:
        return {
            "backbone": self.backbone,
            "num_keypoints": self.num_keypoints,
            "focalnet": self.focalnet.to_dict(),
            "baseline": self.baseline.to_dict(),
            "head": self.head.to_dict(),
            "coord_channels": self.coord_channels,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        """Build from a (possibly partial) nested dict; missing keys take their defaults.

        The top-level ``head_hidden`` / ``head_dropout`` of configs stored before the head had its own
        config are read as ``head.hidden`` / ``head.dropout`` (:func:`fold_legacy_head_keys`)."""
        _check_keys(
            cls, {k: v for k, v in d.items() if k not in LEGACY_HEAD_KEYS} if isinstance(d, dict) else d
        )
        kw = {
            k: _tuplify(v)
            for k, v in d.items()
            if k not in ("focalnet", "baseline", "head", *LEGACY_HEAD_KEYS)
        }
        for key, sub in (("focalnet", FocalNetConfig), ("baseline", BaselineConfig)):
            if key in d and not isinstance(d[key], sub):
                try:
                    kw[key] = sub.from_dict(d[key])
                except ValueError as e:  # name the nested field by its dotted path
                    raise ValueError(f"{key}.{e}") from None
            elif key in d:
                kw[key] = d[key]
        kw["head"] = _head_from_dict(d)
        return cls(**kw)
