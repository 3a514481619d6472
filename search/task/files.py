"""User keypoint data from files: NPZ arrays and COCO keypoint annotations (see search.task.data for the URIs).

Both readers return a `FileData` at img_size S: images uint8 (N,3,S,S), keypoints float32 (N,K,2) pixels
with pixel centres at integers, visibility uint8 (N,K) in {0,1,2}, and per instance the source image it
came from (`groups`, for leak-free splits) and its position in the file (`index`).

Errors: every problem with a file raises one `DataError` naming the file, the item (``sample 5``,
``annotation id=17``) and the problem. Problems that only make one instance unusable are *skipped* and
counted instead (`FileData.skipped`): a crowd instance, an empty bbox, fewer labelled joints than `min_kp`,
a labelled keypoint more than one image size outside its image. With ``strict`` they are errors too.

Conventions shared by both formats:
- Visibility: 0 = not labelled, 1 = labelled but occluded, 2 = visible. Integers and integral floats
  (``2.0``) are taken as they are; booleans mean true = 2 (visible), false = 0 (not labelled); anything
  else (``0.5``, ``3``, NaN) is an error. A NaN/inf/null coordinate is accepted only with visibility 0.
  Unlabelled joints get the patch-centre coordinate; labelled joints outside the patch get visibility 0.
- Normalised keypoints: if every labelled keypoint of a file lies in [0, 1] (on images of 8 px or more)
  they are refused with a hint. NPZ only: ``normalized`` scales them, 0 and 1 being the image edges
  (pixel = value * size - 0.5).
- Joint names may be str or bytes (decoded as UTF-8).

NPZ: `images` (N,H,W,3), (N,3,H,W) or (N,H,W), uint8 or uint16; `keypoints` (N,K,2); optional
`visibility` (N,K) (without it: NaN joints are unlabelled, joints inside the image 2, outside 0),
`joint_names` (K,), `edges` (E,2) 0-based, `groups` or `image_ids` (N,) (instances with the same value come
from one image and never straddle splits). A non-square image is padded to a square (black, centred)
before resizing, so the aspect is kept and the keypoints follow. Options: strict, normalized, min_kp (1).

COCO: the chosen category (`category` = name or id; default the only one with keypoints), its `keypoints`
names and 1-based `skeleton`; annotations of other categories are ignored. Images are read upright (EXIF)
and their real size must equal the JSON `width`/`height` when given. Each instance's crop is the box's
square hull enlarged by `margin` (0.25) on every side, padded with black outside the image.
Options: strict, category, min_kp (3), margin (0.25).
"""

from __future__ import annotations

import json
import math
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from search.task.errors import DataError
from search.task.images import read_image, resize_square, square_pad, to_uint8

__all__ = ["FileData", "load_npz", "load_coco", "parse_options"]

_VIS_RULE = "allowed 0, 1, 2 or true (= 2) / false (= 0)"


@dataclass(frozen=True)
class FileData:
    images: np.ndarray  # uint8 (N,3,S,S)
    keypoints: np.ndarray  # float32 (N,K,2)
    visibility: np.ndarray  # uint8 (N,K)
    groups: np.ndarray  # str (N,): source image of each instance
    index: np.ndarray  # int64 (N,): position in the file (npz sample, COCO annotation)
    joint_names: tuple[str, ...]
    edges: tuple[tuple[int, int], ...]
    source: str  # the file, for messages
    n_read: int  # instances considered before skipping
    skipped: dict[str, int] = field(default_factory=dict)


class _Skips:
    """Counts skipped instances by reason, or raises at the first one when strict."""

    def __init__(self, source: str, strict: bool) -> None:
        self.source, self.strict, self.counts = source, strict, {}

    def __call__(self, reason: str, item: str) -> None:
        if self.strict:
            raise DataError(f"{self.source}: {item}: {reason} (strict: skipping is off)")
        self.counts[reason] = self.counts.get(reason, 0) + 1


def parse_options(label: str, query: dict[str, str], defaults: dict[str, Any]) -> dict[str, Any]:
    """URI query → options typed like `defaults` (bools take 1/0/true/false/yes/no). Raises DataError."""
    out = dict(defaults)
    for k, v in query.items():
        if k not in defaults:
            raise DataError(f"{label}: unknown option {k!r}; allowed: {', '.join(defaults)}")
        d = defaults[k]
        try:
            if isinstance(d, bool):
                if v.lower() not in ("1", "0", "true", "false", "yes", "no"):
                    raise ValueError(f"expected 1/0/true/false, got {v!r}")
                out[k] = v.lower() in ("1", "true", "yes")
            elif isinstance(d, int):
                out[k] = int(v)
            elif isinstance(d, float):
                out[k] = float(v)
                if not math.isfinite(out[k]):
                    raise ValueError(f"must be finite, got {v!r}")
            else:
                out[k] = v
        except ValueError as e:
            raise DataError(f"{label}: option {k}: {e}") from None
    return out


# ----------------------------------------------------------------------------------------------------------
# NPZ


def load_npz(path: str, img_size: int, query: dict[str, str], *, strict: bool, normalized: bool) -> FileData:
    opts = parse_options(f"npz:{path}", query, {"strict": strict, "normalized": normalized, "min_kp": 1})
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
    img = _npz_images(path, data["images"])
    n, h, w, _ = img.shape
    kp = data["keypoints"]
    if not np.issubdtype(kp.dtype, np.number) or kp.ndim != 3 or kp.shape[0] != n or kp.shape[2] != 2:
        raise DataError(f"{path}: keypoints must be numeric (N={n},K,2), got {kp.dtype} {kp.shape}")
    kp = kp.astype(np.float64)
    k = kp.shape[1]
    names = _names(path, data.get("joint_names"), k)
    edges = _edges(path, data.get("edges"), k, one_based=False)
    finite = np.isfinite(kp).all(-1)
    if "visibility" in data:
        vis = _vis_array(path, data["visibility"], (n, k))
        bad = (vis > 0) & ~finite
        if bad.any():
            i, j = np.argwhere(bad)[0]
            raise DataError(
                f"{path}: sample {i}: joint {j} ({names[j]}) is {kp[i, j].tolist()} with visibility {vis[i, j]}; "
                "a NaN/inf keypoint needs visibility 0"
            )
    else:
        vis = np.where(finite, 2, 0).astype(np.uint8)
    kp = np.where(finite[..., None], kp, 0.0)
    if opts["normalized"]:
        if (vis > 0).any() and np.abs(kp[vis > 0]).max() > 3:
            raise DataError(
                f"{path}: normalized=1 but keypoints reach {np.abs(kp[vis > 0]).max():.1f}: these look like pixels"
            )
        kp = kp * np.array([w, h]) - 0.5  # 0 and 1 are the image edges
    else:
        _refuse_normalised(path, kp[vis > 0], min(w, h), "add ?normalized=1 (or [data] normalized = true)")
    if "visibility" not in data:
        vis = np.where(_inside(kp, w, h), vis, 0).astype(np.uint8)
    skip = _Skips(path, opts["strict"])
    keep = []
    size = np.array([w, h])
    for i in range(n):
        lab = vis[i] > 0
        if lab.sum() < opts["min_kp"]:
            skip(f"fewer than min_kp={opts['min_kp']} labelled joints", f"sample {i}")
        elif (lab[:, None] & ((kp[i] < -size) | (kp[i] > 2 * size))).any():
            skip("labelled keypoint more than one image size outside the image", f"sample {i}")
        else:
            keep.append(i)
    if not keep:
        raise DataError(f"{path}: no usable sample of {n} ({_counts(skip.counts)})")
    idx = np.array(keep)
    groups = _npz_groups(path, data, n)[idx]
    out_img = np.empty((len(idx), img_size, img_size, 3), np.uint8)
    for o, i in enumerate(idx):
        padded, offset = square_pad(img[i])
        out_img[o] = resize_square(padded, img_size)
    kp = (kp[idx] + np.array(offset) + 0.5) * (img_size / max(h, w)) - 0.5
    vis = np.where(_inside(kp, img_size, img_size), vis[idx], 0).astype(np.uint8)
    kp = np.where(finite[idx, :, None], kp, (img_size - 1) / 2)  # NaN (unlabelled) joints: the patch centre
    return FileData(
        np.ascontiguousarray(out_img.transpose(0, 3, 1, 2)), kp.astype(np.float32), vis, groups,
        idx.astype(np.int64), names, edges, path, n, skip.counts,
    )  # fmt: skip


def _npz_images(path: str, img: np.ndarray) -> np.ndarray:
    """(N,H,W,3) uint8 from (N,H,W,3) / (N,3,H,W) / (N,H,W), uint8 or uint16."""
    shape_ok = img.ndim == 3 or (img.ndim == 4 and 3 in (img.shape[1], img.shape[3]))
    if img.dtype not in (np.uint8, np.uint16) or not shape_ok:
        raise DataError(
            f"{path}: images must be uint8 or uint16 (N,H,W,3), (N,3,H,W) or (N,H,W), got {img.dtype} {img.shape}"
        )
    if img.shape[0] == 0:
        raise DataError(f"{path}: the file has no samples (images has shape {img.shape})")
    if img.ndim == 3:
        img = np.repeat(img[..., None], 3, axis=3)
    elif img.shape[3] != 3:
        img = img.transpose(0, 2, 3, 1)
    if min(img.shape[1:3]) < 1:
        raise DataError(f"{path}: images are empty ({img.shape})")
    return to_uint8(img, path)


def _npz_groups(path: str, data: dict[str, np.ndarray], n: int) -> np.ndarray:
    given = [k for k in ("groups", "image_ids") if k in data]
    if len(given) == 2:
        raise DataError(f"{path}: give 'groups' or 'image_ids', not both")
    if not given:
        return np.arange(n).astype(str)
    g = data[given[0]]
    if g.shape != (n,) or not (np.issubdtype(g.dtype, np.integer) or g.dtype.kind in "US"):
        raise DataError(
            f"{path}: {given[0]} must be integers or strings of shape ({n},), got {g.dtype} {g.shape}"
        )
    return np.array([_text(path, x) for x in g.tolist()], dtype=str) if g.dtype.kind == "S" else g.astype(str)


def _vis_array(path: str, v: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    if v.shape != shape or not (v.dtype == np.bool_ or np.issubdtype(v.dtype, np.number)):
        raise DataError(
            f"{path}: visibility must be numbers or booleans of shape {shape}, got {v.dtype} {v.shape}"
        )
    if v.dtype == np.bool_:
        return np.where(v, 2, 0).astype(np.uint8)
    bad = ~np.isin(v, (0, 1, 2))
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise DataError(f"{path}: sample {i}: visibility of joint {j} is {v[i, j].item()!r}; {_VIS_RULE}")
    return v.astype(np.uint8)


def _refuse_normalised(path: str, pts: np.ndarray, min_side: int, hint: str) -> None:
    """Every labelled keypoint in [0, 1] on images of 8 px or more: normalised labels, not pixels."""
    if pts.size and min_side >= 8 and pts.min() >= 0 and pts.max() <= 1:
        raise DataError(
            f"{path}: every labelled keypoint lies in [0, 1] on images of {min_side} px or more: they look "
            f"normalised, the task wants pixels; {hint}"
        )


# ----------------------------------------------------------------------------------------------------------
# COCO


def load_coco(body: str, img_size: int, query: dict[str, str], *, strict: bool, normalized: bool) -> FileData:
    ann_path, sep, img_dir = body.partition("@")
    if not sep:
        raise DataError(f"coco:{body}: expected 'coco:<annotations.json>@<image dir>'")
    defaults = {"strict": strict, "category": "", "min_kp": 3, "margin": 0.25}
    opts = parse_options(f"coco:{body}", query, defaults)
    if normalized:
        raise DataError(
            f"{ann_path}: normalized: COCO keypoints are pixels; only npz files can be normalised"
        )
    if opts["margin"] < 0:
        raise DataError(f"coco:{body}: option margin: must be >= 0, got {opts['margin']}")
    try:
        doc = json.loads(Path(ann_path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{ann_path}: file not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"{ann_path}: malformed JSON ({e})") from None
    try:
        images = {im["id"]: im for im in doc["images"]}
        anns, cats = list(doc["annotations"]), list(doc["categories"])
        cat_ids = [c["id"] for c in cats]
    except (KeyError, TypeError) as e:
        raise DataError(f"{ann_path}: not a COCO keypoints file (missing {e})") from None
    cat = _category(ann_path, cats, opts["category"])
    names = _names(ann_path, cat["keypoints"], len(cat["keypoints"]))
    k = len(names)
    edges = _edges(ann_path, cat.get("skeleton") or None, k, one_based=True)
    skip = _Skips(ann_path, opts["strict"])
    todo = []  # (annotation index, image id, keypoints (K,2), visibility (K,), bbox)
    n_read = 0
    for i, a in enumerate(anns):
        item = f"annotation id={a.get('id', '?')} (#{i})" if isinstance(a, dict) else f"annotation #{i}"
        if not isinstance(a, dict):
            raise DataError(f"{ann_path}: {item}: expected an object, got {type(a).__name__}")
        if a.get("category_id") not in cat_ids:
            raise DataError(
                f"{ann_path}: {item}: category_id {a.get('category_id')!r} is not in 'categories'"
            )
        if a["category_id"] != cat["id"]:
            continue
        n_read += 1
        if a.get("iscrowd"):
            skip("crowd instance", item)
            continue
        if not isinstance(a.get("image_id"), int | float | str) or a["image_id"] not in images:
            raise DataError(f"{ann_path}: {item}: image_id {a.get('image_id')!r} is not in 'images'")
        xy, vis = _coco_keypoints(ann_path, item, a.get("keypoints"), names)
        box = a.get("bbox")
        if not (
            isinstance(box, list) and len(box) == 4 and all(_is_num(v) and math.isfinite(v) for v in box)
        ):
            raise DataError(
                f"{ann_path}: {item}: bbox must be [x, y, width, height] finite numbers, got {box!r}"
            )
        if not box[2] > 0 or not box[3] > 0:
            skip("empty bbox", item)
        elif (vis > 0).sum() < opts["min_kp"]:
            skip(f"fewer than min_kp={opts['min_kp']} labelled joints", item)
        else:
            todo.append((i, item, a["image_id"], xy, vis, [float(v) for v in box]))
    if n_read == 0:
        raise DataError(f"{ann_path}: no annotation of category {cat['id']} ({cat.get('name', '')!r})")
    if todo:
        sides = [min(im.get("width"), im.get("height")) for im in images.values()
                 if _is_num(im.get("width")) and _is_num(im.get("height"))]  # fmt: skip
        pts = np.concatenate([xy[vis > 0] for _, _, _, xy, vis, _ in todo])
        _refuse_normalised(ann_path, pts, int(min(sides, default=64)), "COCO keypoints are pixels")
    out_img, out_kp, out_vis, groups, index = [], [], [], [], []
    cache: OrderedDict[Any, np.ndarray] = OrderedDict()
    for i, item, image_id, xy, vis, (x, y, bw, bh) in todo:
        im = cache.get(image_id)
        if im is None:
            im = _coco_image(ann_path, img_dir, images[image_id])
            cache[image_id] = im
            if len(cache) > 8:
                cache.popitem(last=False)
        size = np.array([im.shape[1], im.shape[0]])
        lab = vis > 0
        if (lab[:, None] & ((xy < -size) | (xy > 2 * size))).any():
            skip("labelled keypoint more than one image size outside the image", item)
            continue
        side = max(bw, bh) * (1 + 2 * opts["margin"])
        x0, y0 = x + bw / 2 - side / 2, y + bh / 2 - side / 2
        ix0, iy0 = math.floor(x0), math.floor(y0)
        crop = Image.fromarray(im).crop((ix0, iy0, math.ceil(x0 + side), math.ceil(y0 + side)))
        box = (x0 - ix0, y0 - iy0, x0 - ix0 + side, y0 - iy0 + side)
        out_img.append(np.asarray(crop.resize((img_size, img_size), Image.BILINEAR, box=box)))
        kp = (xy + 0.5 - np.array([x0, y0])) * (img_size / side) - 0.5
        v = np.where(lab & _inside(kp, img_size, img_size), np.where(vis >= 2, 2, 1), 0)
        out_kp.append(np.where(lab[:, None], kp, (img_size - 1) / 2))
        out_vis.append(v)
        groups.append(str(image_id))
        index.append(i)
    if not out_img:
        raise DataError(f"{ann_path}: no usable instance of {n_read} ({_counts(skip.counts)})")
    return FileData(
        np.ascontiguousarray(np.stack(out_img).transpose(0, 3, 1, 2)), np.stack(out_kp).astype(np.float32),
        np.stack(out_vis).astype(np.uint8), np.array(groups, dtype=str), np.array(index, dtype=np.int64),
        names, edges, ann_path, n_read, skip.counts,
    )  # fmt: skip


def _category(ann_path: str, cats: list[dict], want: str) -> dict:
    with_kp = [c for c in cats if c.get("keypoints")]
    listing = ", ".join(f"{c['id']} {c.get('name', '')!r}" for c in with_kp) or "none"
    if want:
        found = [c for c in cats if str(c["id"]) == want] or [c for c in cats if c.get("name") == want]
        if not found:
            raise DataError(f"{ann_path}: category {want!r} not found; categories with keypoints: {listing}")
        if not found[0].get("keypoints"):
            raise DataError(
                f"{ann_path}: category {want!r} has no keypoints; categories with keypoints: {listing}"
            )
        return found[0]
    if len(with_kp) != 1:
        raise DataError(
            f"{ann_path}: {len(with_kp)} categories have keypoints ({listing}); choose one with ?category=<name or id>"
        )
    return with_kp[0]


def _coco_keypoints(
    ann_path: str, item: str, raw: Any, names: tuple[str, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """[x1, y1, v1, ...] → (xy (K,2) float, v (K,) uint8) under the visibility rule; NaN/null only with v=0."""
    k = len(names)
    if not isinstance(raw, list) or len(raw) != 3 * k:
        got = f"{len(raw)} values" if isinstance(raw, list) else repr(raw)
        raise DataError(f"{ann_path}: {item}: keypoints has {got}, expected {3 * k} (K={k})")
    xy = np.zeros((k, 2))
    vis = np.zeros(k, np.uint8)
    for j in range(k):
        x, y, v = raw[3 * j : 3 * j + 3]
        if isinstance(v, bool):
            vis[j] = 2 if v else 0
        elif _is_num(v) and v in (0, 1, 2):
            vis[j] = int(v)
        else:
            raise DataError(f"{ann_path}: {item}: visibility of joint {j} ({names[j]}) is {v!r}; {_VIS_RULE}")
        for c, val in enumerate((x, y)):
            if val is not None and not _is_num(val):
                raise DataError(
                    f"{ann_path}: {item}: joint {j} ({names[j]}) coordinate {val!r} is not a number"
                )
            xy[j, c] = math.nan if val is None else float(val)
        if vis[j] and not np.isfinite(xy[j]).all():
            raise DataError(
                f"{ann_path}: {item}: joint {j} ({names[j]}) is {[x, y]} with visibility {vis[j]}; "
                "a NaN/null keypoint needs visibility 0"
            )
    return np.where(np.isfinite(xy), xy, 0.0), vis


def _coco_image(ann_path: str, img_dir: str, info: dict) -> np.ndarray:
    what = f"{ann_path}: image id={info['id']}"
    arr, stored, orientation = read_image(Path(img_dir) / str(info.get("file_name", "")), what=what)
    w, h = info.get("width"), info.get("height")
    if w is None or h is None:
        return arr
    if not (_is_num(w) and _is_num(h)):
        raise DataError(f"{what}: width/height must be numbers, got {w!r}x{h!r}")
    real = (arr.shape[1], arr.shape[0])
    if (w, h) != real:
        hint = ""
        if (w, h) == stored:
            hint = (f"; that is the size before EXIF orientation {orientation} turns it upright: labels made on "
                    "the unrotated pixels? re-export upright or remove the EXIF tag")  # fmt: skip
        raise DataError(f"{what}: declared {w}x{h} but the image is {real[0]}x{real[1]}{hint}")
    return arr


# ----------------------------------------------------------------------------------------------------------
# shared


def _is_num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _inside(kp: np.ndarray, w: int, h: int) -> np.ndarray:
    return (kp[..., 0] >= -0.5) & (kp[..., 0] <= w - 0.5) & (kp[..., 1] >= -0.5) & (kp[..., 1] <= h - 0.5)


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {reason}" for reason, n in counts.items()) or "none usable"


def _text(path: str, x: Any) -> str:
    if isinstance(x, bytes):
        try:
            return x.decode("utf-8")
        except UnicodeDecodeError:
            raise DataError(f"{path}: {x!r} is not UTF-8 text") from None
    return str(x)


def _names(path: str, raw: Any, k: int) -> tuple[str, ...]:
    if raw is None:
        return tuple(f"joint_{i}" for i in range(k))
    names = tuple(_text(path, x) for x in np.asarray(raw).reshape(-1).tolist())
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
