"""User keypoint data from files: NPZ arrays and COCO keypoint annotations (see search.task.data for the URIs).

Both loaders return ((images uint8 (N,3,S,S), keypoints float32 (N,K,2), visibility uint8 (N,K)),
joint_names, edges) at img_size S, with pixel centres at integer coordinates. Every problem with a file
raises one `DataError` whose message names the file and the problem.

- NPZ: images of another size are resized (bilinear, PIL) to S x S and the keypoints scaled with them.
  Without `visibility`, joints inside the image are 2 and outside 0. A labelled joint more than one image
  size outside the image is an error. Visibility of labelled joints outside the (resized) patch becomes 0.
- COCO: the single keypoint category (`keypoints` names, 1-based `skeleton` -> 0-based edges); crowd
  instances and instances with fewer than `min_kp` labelled joints (default 3) are skipped; the crop is
  the box's square hull enlarged by `margin` (default 0.25) on every side, padded with black outside the
  image. Unlabelled joints get visibility 0 and the patch-centre coordinate.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from search.task.errors import DataError

__all__ = ["load_npz", "load_coco"]

Arrays = tuple[np.ndarray, np.ndarray, np.ndarray]


def load_npz(path: str, img_size: int) -> tuple[Arrays, tuple[str, ...], tuple[tuple[int, int], ...]]:
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{path}: file not found")
    try:
        with np.load(p, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except Exception as e:  # noqa: BLE001 - zip/pickle/format errors all mean "not a valid npz"
        raise DataError(f"{path}: not a readable .npz file ({type(e).__name__}: {e})") from None
    for k in ("images", "keypoints"):
        if k not in data:
            raise DataError(f"{path}: missing array {k!r} (has {sorted(data)})")
    img, kp = data["images"], data["keypoints"]
    if img.dtype != np.uint8 or img.ndim != 4 or 3 not in (img.shape[1], img.shape[3]):
        raise DataError(f"{path}: images must be uint8 (N,H,W,3) or (N,3,H,W), got {img.dtype} {img.shape}")
    if img.shape[3] != 3:
        img = img.transpose(0, 2, 3, 1)
    n, h, w, _ = img.shape
    if not np.issubdtype(kp.dtype, np.number) or kp.ndim != 3 or kp.shape[0] != n or kp.shape[2] != 2:
        raise DataError(f"{path}: keypoints must be numeric (N={n},K,2), got {kp.dtype} {kp.shape}")
    kp = kp.astype(np.float64)
    if not np.isfinite(kp).all():
        raise DataError(f"{path}: keypoints contain NaN or inf")
    k = kp.shape[1]
    if "visibility" in data:
        vis = data["visibility"]
        if (
            vis.shape != (n, k)
            or not np.issubdtype(vis.dtype, np.integer)
            or not np.isin(vis, (0, 1, 2)).all()
        ):
            raise DataError(
                f"{path}: visibility must be integers in {{0,1,2}} of shape ({n},{k}), got {vis.dtype} {vis.shape}"
            )
        vis = vis.astype(np.uint8)
    else:
        vis = np.where(_inside(kp, w, h), 2, 0).astype(np.uint8)
    far = (vis > 0) & ((kp < -np.array([w, h])) | (kp > 2 * np.array([w, h]))).any(-1)
    if far.any():
        i, j = np.argwhere(far)[0]
        raise DataError(f"{path}: keypoint [{i},{j}] = {kp[i, j].tolist()} is far outside the {w}x{h} image")
    names = _names(path, data.get("joint_names"), k)
    edges = _edges(path, data.get("edges"), k, one_based=False)
    if (h, w) != (img_size, img_size):
        img = np.stack(
            [np.asarray(Image.fromarray(x).resize((img_size, img_size), Image.BILINEAR)) for x in img]
        )
        kp = (kp + 0.5) * np.array([img_size / w, img_size / h]) - 0.5
    vis = np.where(_inside(kp, img_size, img_size), vis, 0).astype(np.uint8)
    return (np.ascontiguousarray(img.transpose(0, 3, 1, 2)), kp.astype(np.float32), vis), names, edges


def _inside(kp: np.ndarray, w: int, h: int) -> np.ndarray:
    return (kp[..., 0] >= -0.5) & (kp[..., 0] <= w - 0.5) & (kp[..., 1] >= -0.5) & (kp[..., 1] <= h - 0.5)


def _names(path: str, raw: Any, k: int) -> tuple[str, ...]:
    if raw is None:
        return tuple(f"joint_{i}" for i in range(k))
    names = tuple(str(x) for x in np.asarray(raw).reshape(-1))
    if len(names) != k:
        raise DataError(f"{path}: {len(names)} joint names for K={k} keypoints")
    return names


def _edges(path: str, raw: Any, k: int, one_based: bool) -> tuple[tuple[int, int], ...]:
    if raw is None:
        return ()
    try:
        e = np.asarray(raw, dtype=np.int64).reshape(-1, 2) - int(one_based)
    except (ValueError, TypeError):
        raise DataError(f"{path}: edges/skeleton must be pairs of joint indices") from None
    if e.size and (e.min() < 0 or e.max() >= k):
        raise DataError(f"{path}: edge joint index out of range for K={k} (COCO skeletons are 1-based)")
    return tuple((int(a), int(b)) for a, b in e)


def load_coco(
    body: str, img_size: int, query: dict[str, str]
) -> tuple[Arrays, tuple[str, ...], tuple[tuple[int, int], ...]]:
    ann_path, sep, img_dir = body.partition("@")
    if not sep:
        raise DataError(f"coco:{body}: expected 'coco:<annotations.json>@<image dir>'")
    try:
        min_kp, margin = int(query.pop("min_kp", 3)), float(query.pop("margin", 0.25))
    except ValueError as e:
        raise DataError(f"coco:{body}: bad option ({e})") from None
    if query:
        raise DataError(f"coco:{body}: unknown option(s) {sorted(query)}; expected min_kp, margin")
    try:
        doc = json.loads(Path(ann_path).read_text())
    except FileNotFoundError:
        raise DataError(f"{ann_path}: file not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"{ann_path}: malformed JSON ({e})") from None
    try:
        cats = [c for c in doc["categories"] if c.get("keypoints")]
        images = {im["id"]: im for im in doc["images"]}
        anns = doc["annotations"]
    except (KeyError, TypeError) as e:
        raise DataError(f"{ann_path}: not a COCO keypoints file (missing {e})") from None
    if len(cats) != 1:
        raise DataError(f"{ann_path}: expected exactly one category with keypoints, found {len(cats)}")
    names = tuple(str(x) for x in cats[0]["keypoints"])
    k = len(names)
    edges = _edges(ann_path, cats[0].get("skeleton") or None, k, one_based=True)
    out_img, out_kp, out_vis = [], [], []
    cache: dict[Any, Image.Image] = {}
    for i, a in enumerate(anns):
        try:
            if a.get("iscrowd") or a["category_id"] != cats[0]["id"]:
                continue
            raw = np.asarray(a["keypoints"], dtype=np.float64)
            x, y, bw, bh = (float(v) for v in a["bbox"])
            info = images[a["image_id"]]
        except (KeyError, TypeError, ValueError) as e:
            raise DataError(f"{ann_path}: annotation {i} is malformed ({type(e).__name__}: {e})") from None
        if raw.shape != (3 * k,):
            raise DataError(
                f"{ann_path}: annotation {i} has {raw.size} keypoint values, expected {3 * k} (K={k})"
            )
        if not (np.isfinite(raw).all() and all(map(math.isfinite, (x, y, bw, bh)))) or bw <= 0 or bh <= 0:
            raise DataError(f"{ann_path}: annotation {i} has a NaN/inf keypoint or an empty bbox")
        raw = raw.reshape(k, 3)
        lab = raw[:, 2] > 0
        if lab.sum() < min_kp:
            continue
        if a["image_id"] not in cache:
            cache.clear()
            cache[a["image_id"]] = _open(Path(img_dir) / str(info.get("file_name", "")), ann_path)
        im = cache[a["image_id"]]
        if (lab & ((raw[:, :2] < -np.array(im.size)) | (raw[:, :2] > 2 * np.array(im.size))).any(1)).any():
            raise DataError(
                f"{ann_path}: annotation {i} has keypoints far outside its {im.size[0]}x{im.size[1]} image"
            )
        side = max(bw, bh) * (1 + 2 * margin)
        x0, y0 = x + bw / 2 - side / 2, y + bh / 2 - side / 2
        ix0, iy0 = math.floor(x0), math.floor(y0)
        crop = im.crop((ix0, iy0, math.ceil(x0 + side), math.ceil(y0 + side)))
        box = (x0 - ix0, y0 - iy0, x0 - ix0 + side, y0 - iy0 + side)
        out_img.append(np.asarray(crop.resize((img_size, img_size), Image.BILINEAR, box=box)))
        kp = (raw[:, :2] + 0.5 - np.array([x0, y0])) * (img_size / side) - 0.5
        vis = np.where(lab & _inside(kp, img_size, img_size), np.where(raw[:, 2] >= 2, 2, 1), 0)
        out_kp.append(np.where(lab[:, None], kp, (img_size - 1) / 2))
        out_vis.append(vis)
    if not out_img:
        raise DataError(f"{ann_path}: no usable instance (need >= {min_kp} labelled keypoints, not crowd)")
    imgs = np.stack(out_img).transpose(0, 3, 1, 2)
    return (
        (np.ascontiguousarray(imgs), np.stack(out_kp).astype(np.float32), np.stack(out_vis).astype(np.uint8)),
        names,
        edges,
    )


def _open(path: Path, ann_path: str) -> Image.Image:
    if not path.is_file():
        raise DataError(f"{ann_path}: image file {path} not found")
    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except OSError as e:
        raise DataError(f"{path}: cannot read image ({e})") from None
