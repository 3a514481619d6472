"""Keypoint datasets: one URI in, a `KeypointData` (train/val/test splits of 64x64 patches) out.

URIs:
- `synthetic:easy|medium|hard[?joints=hand&noise=0.01,0.02&...]`: procedural figures (search.task.synthetic);
  any `SyntheticParams` field can be overridden in the query (tuples as comma-separated numbers).
  Cached on disk (see below). Splits come from disjoint random streams: (seed, 0|1|2).
- `npz:path/to/file.npz`: `images` (N,H,W,3) or (N,3,H,W) uint8, `keypoints` (N,K,2) pixels, optional
  `visibility` (N,K) in {0,1,2}, `joint_names` (K,) str, `edges` (E,2) int (0-based).
- `coco:annotations.json@images/[?min_kp=3&margin=0.25]`: COCO keypoints; each instance's box is cropped
  with a margin, aspect kept, and resized to img_size.
For file datasets the samples are shuffled by `seed` and cut into train/val/test in that order;
`n_train=-1` takes every sample left after val and test. Asking for more samples than exist is an error.

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
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl

import numpy as np

from search.task import files, synthetic
from search.task.errors import DataError

__all__ = ["DataError", "Split", "KeypointData", "load_dataset", "default_cache_dir", "parse_uri"]


@dataclass(frozen=True)
class Split:
    images: np.ndarray  # uint8 (N,3,H,W)
    keypoints: np.ndarray  # float32 (N,K,2) pixels
    visibility: np.ndarray  # uint8 (N,K): 0 outside/unlabelled, 1 occluded, 2 visible

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
    data_hash: str  # sha256 hex over every split's arrays, the joint names and the edges

    @property
    def num_keypoints(self) -> int:
        return len(self.joint_names)


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


def load_dataset(
    uri: str,
    *,
    img_size: int = 64,
    n_train: int,
    n_val: int,
    n_test: int,
    seed: int = 0,
    cache_dir: str | os.PathLike | None = None,
) -> KeypointData:
    """Load (or generate) a dataset named by `uri`; see the module docstring. Raises DataError."""
    for name, n in (("n_val", n_val), ("n_test", n_test), ("n_train", n_train)):
        if not isinstance(n, int | np.integer) or n < (-1 if name == "n_train" else 0):
            raise DataError(f"{uri}: {name} must be a non-negative int (n_train may be -1), got {n!r}")
    if img_size < 8:
        raise DataError(f"{uri}: img_size must be >= 8, got {img_size}")
    kind, body, query = parse_uri(uri)
    if kind == "synthetic":
        if n_train < 0:
            raise DataError(f"{uri}: synthetic data needs an explicit n_train")
        try:
            params = synthetic.make_params(body, **query)
        except (ValueError, TypeError) as e:
            raise DataError(f"{uri}: {e}") from None
        cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        splits = [
            _synthetic_split(params, img_size, seed, i, n, cache)
            for i, n in enumerate((n_train, n_val, n_test))
        ]
        sk = synthetic.SKELETONS[params.joints]
        names, edges = sk.joint_names, sk.edges
    else:
        if kind == "npz":
            arrays, names, edges = files.load_npz(body, img_size)
        else:
            arrays, names, edges = files.load_coco(body, img_size, query)
        splits = _cut(uri, arrays, n_train, n_val, n_test, seed)
    return KeypointData(*splits, tuple(names), tuple(edges), img_size, uri, _hash(splits, names, edges))


def _cut(uri: str, arrays: tuple[np.ndarray, ...], n_train: int, n_val: int, n_test: int, seed: int):
    total = len(arrays[0])
    if n_train < 0:
        n_train = total - n_val - n_test
    if n_train < 0 or n_train + n_val + n_test > total:
        raise DataError(f"{uri}: asked for {n_train}+{n_val}+{n_test} samples but the file has {total}")
    perm = np.random.Generator(np.random.PCG64(seed)).permutation(total)
    bounds = np.cumsum([0, n_train, n_val, n_test])
    return [
        Split(*(np.ascontiguousarray(a[perm[lo:hi]]) for a in arrays))
        for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)
    ]


def _hash(splits: list[Split], names, edges) -> str:
    h = hashlib.sha256()
    for s in splits:
        for a in (s.images, s.keypoints, s.visibility):
            h.update(f"{a.dtype.str}{a.shape}".encode())
            h.update(np.ascontiguousarray(a).data)
    h.update(json.dumps([list(names), [list(e) for e in edges]]).encode())
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
