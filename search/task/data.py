"""Keypoint datasets: URIs in, a `KeypointData` (train/val/test splits of 64x64 patches) out.

URIs:
- `synthetic:easy|medium|hard[?joints=hand&noise=0.01,0.02&...]`: procedural figures (search.task.synthetic);
  any `SyntheticParams` field can be overridden in the query (tuples as comma-separated numbers).
  Cached on disk (see below). Splits come from disjoint random streams: (seed, 0|1|2).
- `npz:path/to/file.npz[?strict=1&normalized=1&min_kp=1]` and
  `coco:annotations.json@images/[?category=hand_left&min_kp=3&margin=0.25&strict=1]`: user files, read by
  search.task.files (formats, skip rules, visibility rule there).

Splits of file data: a dataset (the *pool*) is cut into train/val/test by search.task.splits.cut, which
keeps the instances of one source image (COCO `image_id`, npz `groups`/`image_ids`) in one split, drawn by
`seed`; `n_train=-1` takes every instance left. Datasets that ship their own splits give them as explicit
sources (`train=`, `val=`, `test=`): a split with its own source takes n of it (-1 = all); the splits
without one are cut from the pool, which is `uri` or, without it, the train source. The data hash covers
the pixels, labels, names and edges of every split and, for files, which instance of which image went where.

Relative file paths resolve against `base_dir` (a spec file's or run.json's folder; default the current one).

Conventions: keypoints are (x, y) pixels with pixel centres at integers (pixel i spans [i-0.5, i+0.5]);
visibility 0 = outside the patch (or unlabelled), 1 = occluded, 2 = visible.

Cache: `cache_dir` or $FOCALNET_SEARCH_CACHE or ~/.cache/focalnet-search. Each synthetic split is one npz
named by a hash of (generator version, params, img_size, seed, split, n) that also stores that key and a
sha256 of its arrays; a file whose key or checksum does not match is regenerated, never used. Files are
written to a temporary name and renamed, so parallel workers never see half a file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sys
import tempfile
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import numpy as np

from search.task import files, splits, synthetic
from search.task.errors import DataError

__all__ = [
    "DataError",
    "DataConfigError",
    "Split",
    "KeypointData",
    "DATA_KEYS",
    "data_config",
    "load_data_config",
    "load_dataset",
    "default_cache_dir",
    "parse_uri",
    "resolve_uri",
]

SPLITS = ("train", "val", "test")
#: Keys of a data config ([data] of a spec, "data" of run.json, a trial's config["data"]), in documented order.
DATA_KEYS = ("dataset", "train", "val", "test", "n_train", "n_val", "n_test", "seed", "strict", "normalized")
_DEFAULT_N = {"train": 8000, "val": 1000, "test": 1000}
_FILE_SCHEMES = ("npz:", "coco:")


@dataclass(frozen=True)
class Split:
    images: np.ndarray  # uint8 (N,3,H,W)
    keypoints: np.ndarray  # float32 (N,K,2) pixels
    visibility: np.ndarray  # uint8 (N,K): 0 outside/unlabelled, 1 occluded, 2 visible
    index: np.ndarray | None = None  # int64 (N,): position in its file (None for synthetic data)
    groups: np.ndarray | None = None  # str (N,): source image of each instance (None for synthetic data)

    def __len__(self) -> int:
        return len(self.images)


@dataclass(frozen=True)
class KeypointData:
    train: Split
    val: Split
    test: Split
    joint_names: tuple[str, ...]
    edges: tuple[tuple[int, int], ...]
    img_size: int
    uri: str
    data_hash: str  # sha256 hex over every split's arrays (and, for files, indices and groups), names, edges
    skipped: dict[str, dict[str, int]] = field(default_factory=dict)  # file -> reason -> instances skipped

    @property
    def num_keypoints(self) -> int:
        return len(self.joint_names)


class DataConfigError(DataError):
    """A data config key is invalid: ``key`` names it, ``problem`` says what is wrong and what is allowed."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"data.{key}: {problem}")
        self.key, self.problem = key, problem


def default_cache_dir() -> Path:
    return Path(os.environ.get("FOCALNET_SEARCH_CACHE") or Path.home() / ".cache" / "focalnet-search")


def parse_uri(uri: str) -> tuple[str, str, dict[str, str]]:
    """'kind:body?k=v&...' -> (kind, body, query). Raises DataError for an unknown kind."""
    kind, sep, rest = uri.partition(":")
    if not sep or kind not in ("synthetic", "npz", "coco"):
        raise DataError(f"{uri}: expected 'synthetic:<preset>', 'npz:<file>' or 'coco:<json>@<image dir>'")
    body, _, query = rest.partition("?")
    try:
        q = dict(parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query)))
    except ValueError as e:
        raise DataError(f"{uri}: malformed query string ({e})") from None
    return kind, body, q


def resolve_uri(uri: str, base_dir: str | os.PathLike | None) -> str:
    """The URI with its relative file paths (npz file, COCO json and image folder) joined to `base_dir`."""
    kind, sep, rest = uri.partition(":")
    if kind not in ("npz", "coco") or not sep or base_dir is None:
        return uri
    body, q, query = rest.partition("?")

    def join(p: str) -> str:
        p = os.path.expanduser(p)
        return p if not p or os.path.isabs(p) else os.path.normpath(os.path.join(base_dir, p))

    parts = body.split("@", 1) if kind == "coco" else [body]
    return f"{kind}:{'@'.join(join(p) for p in parts)}{q}{query}"


# ----------------------------------------------------------------------------------------------------------
# data configs


def _n(key: str, v: Any, *, own_source: bool, file_pool: bool) -> int:
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    if isinstance(v, bool) or not isinstance(v, int):
        raise DataConfigError(key, f"expected an integer, got {type(v).__name__} {v!r}")
    if v == -1 and (own_source or (key == "n_train" and file_pool)):
        return v
    if v < 1:
        allowed = "-1 (all of its own source) or >= 1" if own_source else ">= 1"
        if key == "n_train":
            allowed = "-1 (every instance left) or >= 1" if file_pool else ">= 1 (-1 needs a file dataset)"
        raise DataConfigError(key, f"must be {allowed}, got {v}")
    return v


def data_config(d: Mapping[str, Any]) -> dict[str, Any]:
    """Validate and complete a data config. Always has dataset, n_train, n_val, n_test, seed; train, val,
    test, strict, normalized only when set (so configs written before they existed keep their hash).
    Raises DataConfigError naming the key."""
    for k in d:
        if k not in DATA_KEYS:
            raise DataConfigError(k, f"unknown key; allowed: {', '.join(DATA_KEYS)}")
    for k in ("dataset", *SPLITS):
        if k in d and not isinstance(d[k], str):
            raise DataConfigError(k, f"expected a string, got {type(d[k]).__name__} {d[k]!r}")
    for k in ("strict", "normalized"):
        if k in d and not isinstance(d[k], bool):
            raise DataConfigError(k, f"expected true or false, got {type(d[k]).__name__} {d[k]!r}")
    own = {s: d[s] for s in SPLITS if d.get(s)}
    for s, uri in own.items():
        if not uri.startswith(_FILE_SCHEMES) or uri in _FILE_SCHEMES:
            raise DataConfigError(s, f"bad split source {uri!r}; allowed: npz:<path>, coco:<json>@<dir>")
    if d.get("dataset") and "train" in own:
        raise DataConfigError(
            "train",
            "conflicts with data.dataset: give the file to cut as dataset, or each split its own source",
        )
    dataset = d.get("dataset") or ("" if "train" in own else "synthetic:medium")
    if dataset and (not dataset.startswith(("synthetic:", *_FILE_SCHEMES)) or dataset.endswith(":")):
        raise DataConfigError(
            "dataset",
            f"bad dataset URI {dataset!r}; allowed: synthetic:<level>, npz:<path>, coco:<json>@<dir>",
        )
    file_pool = "train" in own or dataset.startswith(_FILE_SCHEMES)
    if own and not file_pool:
        first = next(iter(own))
        raise DataConfigError(
            first,
            "a split source needs a file to cut the other splits from: set data.train or an npz:/coco: data.dataset",
        )
    for k in ("strict", "normalized"):
        schemes = ("npz:",) if k == "normalized" else _FILE_SCHEMES
        if d.get(k) and not any(str(u).startswith(schemes) for u in (dataset, *own.values())):
            raise DataConfigError(k, f"applies to {' and '.join(schemes)} files only; this data has none")
    out: dict[str, Any] = {"dataset": dataset}
    for s in SPLITS:
        key = f"n_{s}"
        default = -1 if s in own else _DEFAULT_N[s]
        out[key] = _n(key, d.get(key, default), own_source=s in own, file_pool=file_pool)
    seed = d.get("seed", 0)
    if isinstance(seed, float) and seed.is_integer():
        seed = int(seed)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise DataConfigError("seed", f"expected an integer >= 0, got {seed!r}")
    out["seed"] = seed
    out.update(own)
    out.update({k: True for k in ("strict", "normalized") if d.get(k)})
    return out


def load_data_config(
    d: Mapping[str, Any],
    *,
    base_dir: str | os.PathLike | None = None,
    cache_dir: Any = None,
    img_size: int = 64,
) -> KeypointData:
    """`load_dataset` from a data config (see `data_config`); a stored `hash` key is ignored here."""
    c = data_config({k: v for k, v in d.items() if k != "hash"})
    return load_dataset(
        c["dataset"] or None, img_size=img_size, n_train=c["n_train"], n_val=c["n_val"], n_test=c["n_test"],
        seed=c["seed"], cache_dir=cache_dir, train=c.get("train"), val=c.get("val"), test=c.get("test"),
        strict=c.get("strict", False), normalized=c.get("normalized", False), base_dir=base_dir,
    )  # fmt: skip


# ----------------------------------------------------------------------------------------------------------
# loading


def load_dataset(
    uri: str | None = None,
    *,
    img_size: int = 64,
    n_train: int,
    n_val: int,
    n_test: int,
    seed: int = 0,
    cache_dir: str | os.PathLike | None = None,
    train: str | None = None,
    val: str | None = None,
    test: str | None = None,
    strict: bool = False,
    normalized: bool = False,
    base_dir: str | os.PathLike | None = None,
) -> KeypointData:
    """Load (or generate) a dataset; see the module docstring. Raises DataError.

    Args:
        uri: the dataset to cut into splits (None when `train` is given instead).
        n_train, n_val, n_test: instances per split; -1 = every instance left (train) or all of a split's
            own source.
        seed: synthetic generator streams / the split draw.
        train, val, test: explicit file sources for splits that ship separately.
        strict: skipped instances become errors. normalized: npz keypoints in [0, 1] are scaled to pixels.
        base_dir: folder that relative file paths resolve against.
    """
    own = {s: src for s, src in zip(SPLITS, (train, val, test), strict=True) if src}
    label = uri or own.get("train") or "data"
    counts = {"n_train": n_train, "n_val": n_val, "n_test": n_test}
    for name, n in counts.items():
        low = -1 if name == "n_train" or name[2:] in own else 0
        if not isinstance(n, int | np.integer) or isinstance(n, bool) or n < low:
            raise DataError(
                f"{label}: {name} must be a non-negative int (-1 = all: n_train or a split's own source), got {n!r}"
            )
    if img_size < 8:
        raise DataError(f"{label}: img_size must be >= 8, got {img_size}")
    if uri and "train" in own:
        raise DataError(f"{label}: give a dataset to cut or an explicit train source, not both")
    if not uri and "train" not in own:
        raise DataError("data: no dataset: give a URI or an explicit train source")
    kind = parse_uri(uri)[0] if uri else "file"
    if kind == "synthetic":
        if own:
            raise DataError(f"{uri}: explicit split sources need a file dataset to cut the others from")
        return _synthetic(uri, img_size, n_train, n_val, n_test, seed, cache_dir)
    opts = dict(img_size=img_size, strict=strict, normalized=normalized, base_dir=base_dir)
    pool = _read(uri or own["train"], **opts)
    sources = {"train": pool}  # the pool: train and every split without its own source are cut from it
    for s in ("val", "test"):
        if s in own:
            sources[s] = f = _read(own[s], **opts)
            if os.path.realpath(f.source) == os.path.realpath(pool.source):
                raise DataError(
                    f"{f.source}: the {s} source is the train data's file; leave {s} out to cut it"
                )
            if f.joint_names != pool.joint_names:
                raise DataError(
                    f"{f.source}: the {s} source has joints {list(f.joint_names)}, the train data "
                    f"{list(pool.joint_names)}; every split needs the same joints in the same order"
                )
    n_cut = {s: 0 if s in sources and s != "train" else counts[f"n_{s}"] for s in ("val", "test")}
    cut = splits.cut(
        pool.source, pool.groups, n_train=n_train, n_val=n_cut["val"], n_test=n_cut["test"], seed=seed
    )
    parts = []
    for i, s in enumerate(SPLITS):
        f, idx = pool, cut[i]
        if s != "train" and s in sources:
            f = sources[s]
            idx = splits.take(f.source, np.arange(len(f.groups)), counts[f"n_{s}"], seed, stream=4 + i)
        arrays = (f.images, f.keypoints, f.visibility, f.index, f.groups)
        parts.append(Split(*(np.ascontiguousarray(a[idx]) for a in arrays)))
    skipped = {f.source: f.skipped for f in sources.values() if f.skipped}
    if skipped:
        print(_skip_line(sources), file=sys.stderr, flush=True)
    layout = {s: "own" if s in own else "cut" for s in SPLITS}
    names, edges = pool.joint_names, pool.edges
    return KeypointData(*parts, names, edges, img_size, uri or f"train={own['train']}",
                        _hash(parts, names, edges, layout), skipped)  # fmt: skip


def _read(uri: str, *, img_size: int, strict: bool, normalized: bool, base_dir: Any) -> files.FileData:
    kind, body, query = parse_uri(resolve_uri(uri, base_dir))
    reader = files.load_npz if kind == "npz" else files.load_coco
    return reader(body, img_size, query, strict=strict, normalized=normalized)


def _skip_line(sources: dict[str, files.FileData]) -> str:
    parts = []
    for f in sources.values():
        if f.skipped:
            what = ", ".join(f"{n} {reason}" for reason, n in f.skipped.items())
            parts.append(f"{f.source}: skipped {sum(f.skipped.values())} of {f.n_read} instances ({what})")
    return "; ".join(parts) + "; strict=1 (or [data] strict = true) makes these errors"


def _synthetic(
    uri: str, img_size: int, n_train: int, n_val: int, n_test: int, seed: int, cache_dir: Any
) -> KeypointData:
    if n_train < 0:
        raise DataError(f"{uri}: synthetic data needs an explicit n_train")
    _, body, query = parse_uri(uri)
    try:
        params = synthetic.make_params(body, **query)
    except (ValueError, TypeError) as e:
        raise DataError(f"{uri}: {e}") from None
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    parts = [
        _synthetic_split(params, img_size, seed, i, n, cache) for i, n in enumerate((n_train, n_val, n_test))
    ]
    sk = synthetic.SKELETONS[params.joints]
    names, edges = sk.joint_names, sk.edges
    return KeypointData(*parts, tuple(names), tuple(edges), img_size, uri, _hash(parts, names, edges))


def _hash(parts: list[Split], names, edges, layout: dict[str, str] | None = None) -> str:
    h = hashlib.sha256()
    for s in parts:
        for a in (s.images, s.keypoints, s.visibility):
            h.update(f"{a.dtype.str}{a.shape}".encode())
            h.update(np.ascontiguousarray(a).data)
        if s.index is not None:  # files: which instance of which image went where
            h.update(np.ascontiguousarray(s.index, dtype=np.int64).data)
            h.update("\0".join(s.groups.tolist()).encode())
    h.update(json.dumps([list(names), [list(e) for e in edges]]).encode())
    if layout is not None:
        h.update(json.dumps(layout, sort_keys=True).encode())
    return h.hexdigest()


def _checksum(arrays: list[np.ndarray]) -> str:
    h = hashlib.sha256()
    for a in arrays:
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(np.ascontiguousarray(a).data)
    return h.hexdigest()


def _synthetic_split(
    p: synthetic.SyntheticParams, img_size: int, seed: int, split: int, n: int, cache: Path
) -> Split:
    meta = {"version": synthetic.GENERATOR_VERSION, "params": dataclasses.asdict(p), "img_size": img_size,
            "seed": seed, "split": split, "n": n}  # fmt: skip
    key = json.dumps(meta, sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:24]
    path = cache / f"synthetic-{p.joints}-{['train', 'val', 'test'][split]}-{n}-{digest}.npz"
    arrays = _read_cache(path, key)
    if arrays is None:
        arrays = list(synthetic.render(n, p, (seed, split), img_size=img_size))
        _write_cache(path, key, arrays)
    return Split(*arrays)


def _read_cache(path: Path, key: str) -> list[np.ndarray] | None:
    """The cached arrays, or None when the file is missing, unreadable, stale or corrupt."""
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = [z["images"], z["keypoints"], z["visibility"]]
            ok = str(z["key"]) == key and str(z["checksum"]) == _checksum(arrays)
    except Exception:  # noqa: BLE001 - any unreadable file is simply regenerated
        ok = False
    if not ok:
        warnings.warn(f"{path}: stale or corrupt cache entry, regenerating", stacklevel=3)
        return None
    return arrays


def _write_cache(path: Path, key: str, arrays: list[np.ndarray]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(f, images=arrays[0], keypoints=arrays[1], visibility=arrays[2], key=np.array(key),
                         checksum=np.array(_checksum(arrays)))  # fmt: skip
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    except OSError as e:
        warnings.warn(f"{path}: could not write the dataset cache ({e}); continuing without it", stacklevel=3)
