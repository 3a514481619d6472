"""Procedural articulated figures: the built-in keypoint dataset.

Each 64x64 RGB patch shows one figure: a kinematic tree of K joints (a `Skeleton`, which is data: the
16-joint human and the 21-joint hand are declared below) with random joint angles within limits, limb
lengths, scale, rotation, mirroring and translation (joints may leave the patch). Limbs are capsules with
soft edges and shading along and across the limb; left limbs are a few percent warmer in hue and right
limbs cooler (the only left/right cue: a figure may be mirrored, so joint identity needs context). Behind
the figure: gradients, smooth random bands (a plaid texture), distractor blobs and stray limbs; in front
of it: occluders.
Blur is rendered as per-patch edge softness (defocus), then uniform sensor noise is added.

Conventions:
- Pixel coordinates, (x, y) order, pixel centres at integers: pixel i spans [i - 0.5, i + 0.5], so the
  patch covers [-0.5, img_size - 0.5] on both axes.
- Visibility (COCO-style): 0 = joint outside the patch (outside [-0.5, img_size - 0.5]), 1 = inside but
  covered by an occluder (the occluder's coverage at the joint exceeds 1/2), 2 = visible.
  Self-occlusion by the figure's own limbs does not count as occluded.

Determinism: only numpy's PCG64 streams (seeded through `SeedSequence`) and IEEE-exact arithmetic
(+, -, *, /, sqrt, floor; trig is a fixed polynomial) touch the pixels, and the patches are rendered in
fixed chunks of `CHUNK`, each with its own stream. The same (GENERATOR_VERSION, params, seed) therefore
gives identical bytes on any machine and any thread count. Bump GENERATOR_VERSION whenever the output changes.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

__all__ = [
    "GENERATOR_VERSION",
    "CHUNK",
    "Skeleton",
    "SKELETONS",
    "HUMAN16",
    "HAND21",
    "SyntheticParams",
    "PRESETS",
    "make_params",
    "render",
]

GENERATOR_VERSION = 2
CHUNK = 256  # patches per random stream; fixed so the output does not depend on the thread count


@dataclass(frozen=True)
class Skeleton:
    """A kinematic tree. Angles in degrees, lengths and widths as fractions of the figure height.

    `rest[j]` is joint j's bone direction relative to its parent's bone (for children of the root:
    relative to "up"); `limits[j] = (lo, hi)` is the random offset range added to it. `side` is
    0 = centre, 1 = left, 2 = right (drives the left/right colour cue). Joint 0..K-1 must be listed
    with parents before children; `root` has parent -1.
    """

    name: str
    joint_names: tuple[str, ...]
    parents: tuple[int, ...]
    rest: tuple[float, ...]
    limits: tuple[tuple[float, float], ...]
    lengths: tuple[float, ...]
    widths: tuple[float, ...]
    side: tuple[int, ...]
    order: tuple[int, ...]  # joints in topological order (parents first); also the limb draw order

    @property
    def num_joints(self) -> int:
        return len(self.joint_names)

    @property
    def edges(self) -> tuple[tuple[int, int], ...]:
        """(child, parent) pairs, one per limb, in draw order."""
        return tuple((j, self.parents[j]) for j in self.order if self.parents[j] >= 0)


def _human16() -> Skeleton:
    # MPII joint order. Image y points down; "up" is -90 degrees.
    J = {  # name: (parent, rest, limits, length, width, side)
        "pelvis": (None, 0, (0, 0), 0.0, 0.0, 0),
        "thorax": ("pelvis", 0, (-25, 25), 0.30, 0.075, 0),
        "upper_neck": ("thorax", 0, (-15, 15), 0.07, 0.035, 0),
        "head_top": ("upper_neck", 0, (-30, 30), 0.13, 0.055, 0),
        "r_hip": ("pelvis", -90, (-10, 10), 0.09, 0.045, 2),
        "l_hip": ("pelvis", 90, (-10, 10), 0.09, 0.045, 1),
        "r_knee": ("r_hip", -90, (-50, 70), 0.24, 0.042, 2),
        "l_knee": ("l_hip", 90, (-70, 50), 0.24, 0.042, 1),
        "r_ankle": ("r_knee", 0, (-100, 20), 0.24, 0.032, 2),
        "l_ankle": ("l_knee", 0, (-20, 100), 0.24, 0.032, 1),
        "r_shoulder": ("thorax", -90, (-15, 15), 0.11, 0.035, 2),
        "l_shoulder": ("thorax", 90, (-15, 15), 0.11, 0.035, 1),
        "r_elbow": ("r_shoulder", -80, (-90, 110), 0.17, 0.032, 2),
        "l_elbow": ("l_shoulder", 80, (-110, 90), 0.17, 0.032, 1),
        "r_wrist": ("r_elbow", 0, (-130, 20), 0.15, 0.026, 2),
        "l_wrist": ("l_elbow", 0, (-20, 130), 0.15, 0.026, 1),
    }
    names = ("r_ankle", "r_knee", "r_hip", "l_hip", "l_knee", "l_ankle", "pelvis", "thorax", "upper_neck",
             "head_top", "r_wrist", "r_elbow", "r_shoulder", "l_shoulder", "l_elbow", "l_wrist")  # fmt: skip
    return _build("human", names, J)


def _hand21() -> Skeleton:
    fingers = {"thumb": (-55, 0.17, 0.040), "index": (-18, 0.30, 0.032), "middle": (0, 0.31, 0.033),
               "ring": (17, 0.29, 0.031), "pinky": (34, 0.25, 0.028)}  # fmt: skip
    J: dict[str, tuple] = {"wrist": (None, 0, (0, 0), 0.0, 0.0, 0)}
    names = ["wrist"]
    for f, (spread, palm, w) in fingers.items():
        parent = "wrist"
        segs = [(spread, (-8, 8), palm), (0, (-10, 50), 0.18), (0, (-5, 60), 0.12), (0, (-5, 45), 0.10)]
        for k, (rest, lim, length) in enumerate(segs):
            if f == "thumb":
                lim, length = ((-20, 20), 0.14) if k else (lim, length)
            name = f"{f}_{k + 1}"
            J[name] = (parent, rest, lim, length, w * (1.0 - 0.12 * k), 0)
            names.append(name)
            parent = name
    return _build("hand", tuple(names), J)


def _build(name: str, names: tuple[str, ...], J: dict[str, tuple]) -> Skeleton:
    idx = {n: i for i, n in enumerate(names)}
    parents = tuple(-1 if J[n][0] is None else idx[J[n][0]] for n in names)
    order: list[int] = []
    while len(order) < len(names):  # topological order, parents first, stable in declaration order
        order += [
            idx[n] for n in J if idx[n] not in order and (parents[idx[n]] < 0 or parents[idx[n]] in order)
        ]
    col = lambda k: tuple(J[n][k] for n in names)  # noqa: E731
    return Skeleton(name, names, parents, col(1), col(2), col(3), col(4), col(5), tuple(order))


HUMAN16 = _human16()
HAND21 = _hand21()
SKELETONS: dict[str, Skeleton] = {"human": HUMAN16, "hand": HAND21}


@dataclass(frozen=True)
class SyntheticParams:
    """Everything that shapes the distribution; ranges are (lo, hi) drawn uniformly per patch.

    The defaults are the "medium" preset, tuned so the baseline extractor reaches a middling PCK@0.05
    (about 40-50 % over seeds) with the default study budget (400 steps x 64, 8000 training patches).
    """

    joints: str = "human"  # key of SKELETONS
    scale: tuple[float, float] = (0.55, 0.85)  # figure height / img_size
    rotation: float = 25.0  # max |in-plane rotation|, degrees
    translate: float = 0.06  # max |figure-centre offset| / img_size
    pose: float = 0.55  # multiplier on the joint-angle limits
    length_jitter: float = 0.08  # relative per-limb length noise
    lr_cue: float = 0.08  # left/right hue shift (fraction of full scale per channel)
    contrast: tuple[float, float] = (0.2, 0.5)  # figure vs background colour distance
    texture: float = 0.15  # amplitude of the background bands
    shapes: int = 3  # max distractor blobs
    strays: int = 1  # max stray limbs (half of them figure-coloured)
    occluders: int = 1  # max occluders drawn over the figure
    blur: tuple[float, float] = (0.8, 1.4)  # edge softness in pixels
    noise: tuple[float, float] = (0.02, 0.04)  # std of uniform pixel noise (fraction of full scale)


PRESETS: dict[str, SyntheticParams] = {
    "easy": SyntheticParams(scale=(0.6, 0.8), rotation=20.0, translate=0.05, pose=0.5, length_jitter=0.05,
                            lr_cue=0.10, contrast=(0.35, 0.6), texture=0.05, shapes=1, strays=0,
                            occluders=0, blur=(0.8, 1.2), noise=(0.01, 0.03)),
    "medium": SyntheticParams(),
    "hard": SyntheticParams(scale=(0.4, 1.0), rotation=180.0, translate=0.2, pose=1.0, length_jitter=0.18,
                            lr_cue=0.05, contrast=(0.1, 0.4), texture=0.25, shapes=5, strays=4,
                            occluders=2, blur=(1.0, 3.0), noise=(0.03, 0.10)),
}  # fmt: skip


def make_params(preset: str, **overrides: object) -> SyntheticParams:
    """A preset with some fields replaced (values coerced to the field's type); raises ValueError."""
    if preset not in PRESETS:
        raise ValueError(f"unknown synthetic preset {preset!r}; expected one of {sorted(PRESETS)}")
    base = PRESETS[preset]
    fields = {f.name: getattr(base, f.name) for f in dataclasses.fields(base)}
    out = {}
    for k, v in overrides.items():
        if k not in fields:
            raise ValueError(f"unknown synthetic parameter {k!r}; expected one of {sorted(fields)}")
        cur = fields[k]
        if isinstance(cur, tuple):
            parts = v.split(",") if isinstance(v, str) else list(v)  # type: ignore[union-attr]
            if len(parts) != len(cur):
                raise ValueError(f"synthetic parameter {k!r}: expected {len(cur)} values, got {v!r}")
            out[k] = tuple(float(p) for p in parts)
        else:
            out[k] = type(cur)(v)
    p = dataclasses.replace(base, **out)
    if p.joints not in SKELETONS:
        raise ValueError(f"unknown skeleton {p.joints!r}; expected one of {sorted(SKELETONS)}")
    return p


# --- deterministic trig (numpy's SIMD sin/cos may differ in the last ulp between CPUs) -------------------


def _sincos(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(a, np.float64)
    x = a - 2 * math.pi * np.floor(a / (2 * math.pi) + 0.5)  # [-pi, pi]
    x2 = x * x
    s, c = np.ones_like(x), np.ones_like(x)
    for k in range(14, 0, -1):  # Taylor series in Horner form; error < 1e-15 on [-pi, pi]
        s = 1.0 - x2 * s / ((2 * k) * (2 * k + 1))
        c = 1.0 - x2 * c / ((2 * k - 1) * (2 * k))
    return x * s, c


# --- rendering ------------------------------------------------------------------------------------------


def _u(rng: np.random.Generator, lo, hi, shape) -> np.ndarray:
    return lo + (hi - lo) * rng.random(shape)


def _capsules(canvas, a, b, r, col, soft, shade=0.0, mask=None, mask_mode=0) -> None:
    """Composite one capsule per patch (segment a-b, radius r, (m,3) colour) into canvas (m,3,H,W).

    Evaluated only in a window around each capsule, gathered/scattered through a sliding-window view; the
    window is clamped into the patch, which keeps the part of the capsule inside the patch. Patches whose
    capsule needs a large window go in a second pass, so one big capsule does not slow down the chunk.
    r < 0 draws nothing. `shade` darkens towards b and towards the rim.
    mask_mode: 1 = mark coverage > 1/2 in `mask`, -1 = clear it there.
    """
    m, _, H, W = canvas.shape
    lo, hi = np.minimum(a, b) - (r + soft / 2)[:, None], np.maximum(a, b) + (r + soft / 2)[:, None]
    need = np.ceil((hi - lo).max(1)) + 2
    draw = (r > 0) & (hi[:, 0] > -0.5) & (hi[:, 1] > -0.5) & (lo[:, 0] < W - 0.5) & (lo[:, 1] < H - 0.5)
    need = np.minimum(need, min(H, W))
    if not draw.any():
        return
    small = int(np.percentile(need[draw], 80, method="higher"))
    for sel in (np.flatnonzero(draw & (need <= small)), np.flatnonzero(draw & (need > small))):
        if len(sel):
            win = int(need[sel].max())
            _draw(
                canvas, sel, win, a[sel], b[sel], r[sel], col[sel], soft[sel], lo[sel], shade, mask, mask_mode
            )


def _draw(canvas, n, win, a, b, r, col, soft, lo, shade, mask, mask_mode) -> None:
    # in-place float32 ops on (m,w,w) planes: few large temporaries (their allocation is what costs)
    _, _, H, W = canvas.shape
    f32 = np.float32
    o = np.floor(lo).astype(np.int64)
    ox, oy = np.clip(o[:, 0], 0, W - win), np.clip(o[:, 1], 0, H - win)
    g = np.arange(win, dtype=f32)
    px = (ox[:, None] + g)[:, None, :] - a[:, 0, None, None]  # (m,1,w) x relative to a
    py = (oy[:, None] + g)[:, :, None] - a[:, 1, None, None]  # (m,w,1)
    d = (b - a).astype(f32)
    inv = (1.0 / np.maximum((d * d).sum(1), 1e-6)).astype(f32)
    t = px * (d[:, 0] * inv)[:, None, None] + py * (d[:, 1] * inv)[:, None, None]
    np.clip(t, 0.0, 1.0, out=t)  # position along the segment
    ex = t * -d[:, 0, None, None]
    ex += px
    ex *= ex
    ey = t * -d[:, 1, None, None]
    ey += py
    ey *= ey
    d2 = np.add(ex, ey, out=ex)  # squared distance to the segment
    s3 = (-1.0 / soft)[:, None, None].astype(f32)
    alpha = np.sqrt(d2, out=ey)
    alpha *= s3
    alpha += (r / soft + 0.5)[:, None, None].astype(f32)  # (r - d) / soft + 1/2
    np.clip(alpha, 0.0, 1.0, out=alpha)
    view = sliding_window_view(canvas, (win, win), axis=(2, 3), writeable=True)  # (m,3,H',W',w,w)
    old = view[n, :, oy, ox]  # (m,3,w,w) copy; windows of different patches never overlap
    if shade:  # k = (1 - t/4) (1 - shade min(d2/r^2, 1)): darker towards b and towards the rim
        d2 *= (-shade / (r * r))[:, None, None].astype(f32)
        np.maximum(d2, -shade, out=d2)
        d2 += 1.0
        t *= -0.25
        t += 1.0
        d2 *= t
        d2 *= alpha
        w = d2
    else:
        w = t
        np.copyto(w, alpha)
    keep = np.subtract(1.0, alpha, out=t if shade else np.empty_like(t))
    old *= keep[:, None]  # old = old (1 - alpha) + alpha k col, exact where alpha = 0
    old += w[:, None] * col[:, :, None, None]
    view[n, :, oy, ox] = old
    if mask_mode and mask is not None:
        mview = sliding_window_view(mask, (win, win), axis=(1, 2), writeable=True)
        cover = alpha > 0.5
        mview[n, oy, ox] = (mview[n, oy, ox] | cover) if mask_mode > 0 else (mview[n, oy, ox] & ~cover)


def _smooth1d(rng, m: int, n: int, knots: int = 6) -> np.ndarray:
    """(m, n, 3) smooth random signals in [-1, 1] (linear interpolation of random knots)."""
    v = rng.random((m, knots + 1, 3), dtype=np.float32) * 2 - 1
    s = np.arange(n) * (knots / max(n - 1, 1))
    i0 = np.minimum(np.floor(s).astype(np.int64), knots - 1)
    w = (s - i0).astype(np.float32)[None, :, None]
    return v[:, i0] * (1 - w) + v[:, i0 + 1] * w


def _pose(rng, m: int, sk: Skeleton, p: SyntheticParams, size: int) -> np.ndarray:
    """(m, K, 2) float64 joint positions in pixels."""
    K = sk.num_joints
    rest = np.radians(np.array(sk.rest))
    lim = np.radians(np.array(sk.limits)) * p.pose
    rel = rest + _u(rng, lim[:, 0], lim[:, 1], (m, K))
    length = np.array(sk.lengths) * _u(rng, 1 - p.length_jitter, 1 + p.length_jitter, (m, K))
    ang, pos = np.zeros((m, K)), np.zeros((m, K, 2))
    for j in sk.order:
        q = sk.parents[j]
        ang[:, j] = (ang[:, q] if q >= 0 else -math.pi / 2) + rel[:, j]
        if q >= 0:
            s, c = _sincos(ang[:, j])
            pos[:, j] = pos[:, q] + length[:, j, None] * np.stack([c, s], -1)
    pos[..., 0] *= np.where(rng.random(m) < 0.5, -1.0, 1.0)[:, None]  # mirror: facing towards/away
    pos -= (pos.max(1, keepdims=True) + pos.min(1, keepdims=True)) / 2  # centre the bounding box
    s, c = _sincos(np.radians(_u(rng, -p.rotation, p.rotation, m)))
    x, y = pos[..., 0], pos[..., 1]
    pos = np.stack([c[:, None] * x - s[:, None] * y, s[:, None] * x + c[:, None] * y], -1)
    height = _u(rng, p.scale[0], p.scale[1], m) * size
    centre = (size - 1) / 2 + _u(rng, -p.translate, p.translate, (m, 2)) * size
    return pos * height[:, None, None] + centre[:, None, :]


def _render_chunk(m: int, p: SyntheticParams, size: int, entropy: list[int], want_mask: bool):
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(entropy)))
    sk = SKELETONS[p.joints]
    f32 = np.float32
    # background, (m,3,H,W) in 0..255: base colour + linear gradient + smooth random bands along y and x
    # (a separable plaid: one full-size pass)
    base = rng.random((m, 3, 1, 1), dtype=f32) * 0.8 + 0.1
    lin = np.arange(size, dtype=f32) / size - 0.5
    gy, gx = (
        (rng.random((m, 3, 1, 1), dtype=f32) - 0.5) * 0.6,
        (rng.random((m, 3, 1, 1), dtype=f32) - 0.5) * 0.6,
    )
    amp = rng.random((m, 1, 1, 1), dtype=f32) * p.texture
    ty = _smooth1d(rng, m, size).transpose(0, 2, 1)[:, :, :, None]  # (m,3,H,1)
    tx = _smooth1d(rng, m, size).transpose(0, 2, 1)[:, :, None, :]  # (m,3,1,W)
    canvas = (base + gy * lin[:, None] + amp * ty) * f32(255) + (gx * lin + amp * tx) * f32(255)
    soft = _u(rng, p.blur[0], p.blur[1], m).astype(f32)
    kp = _pose(rng, m, sk, p, size)
    height = (kp.max(1) - kp.min(1)).max(1)  # proxy for the figure size, in px
    figh = np.maximum(height, 1.0)
    # figure colour: background mean pushed along a random direction by `contrast`
    direc = rng.random((m, 3)) - 0.5
    direc /= np.sqrt((direc * direc).sum(1, keepdims=True)) + 1e-9
    # coarse sample of the background colour; float64 sums of these float32 values are exact (order-free)
    mean = canvas[:, :, ::8, ::8].astype(np.float64).mean((2, 3)) / 255
    step = direc * _u(rng, p.contrast[0], p.contrast[1], m)[:, None] * 1.7
    col = mean + step
    col = np.clip(np.where((col < 0.05) | (col > 0.95), mean - step, col), 0.05, 0.95)
    col = col.astype(f32)
    mask = np.zeros((m, size, size), bool) if want_mask else None

    def rand_seg(lo_len, hi_len):
        a = rng.random((m, 2)) * (size + 8) - 4
        s, c = _sincos(rng.random(m) * 2 * math.pi)
        ln = _u(rng, lo_len, hi_len, m)
        return a.astype(f32), (a + ln[:, None] * np.stack([c, s], -1)).astype(f32)

    def maybe(count: int):  # (m,) number of such items in each patch, 0..count
        return rng.integers(0, count + 1, m)

    nshape, nstray = maybe(p.shapes), maybe(p.strays)
    for i in range(max(p.shapes, 0)):
        a, b = rand_seg(0.0, size * 0.3)
        r = np.where(i < nshape, _u(rng, 2.0, size * 0.12, m), -9.0).astype(f32)
        _capsules(canvas, a, b, r, rng.random((m, 3), dtype=f32) * f32(255), soft)
    for i in range(max(p.strays, 0)):
        a, b = rand_seg(0.1 * figh, 0.25 * figh)
        r = np.where(i < nstray, _u(rng, 0.025, 0.045, m) * figh, -9.0).astype(f32)
        like = rng.random(m) < 0.5  # half the stray limbs are figure-coloured
        c = np.where(like[:, None], col, rng.random((m, 3), dtype=f32)).astype(f32)
        _capsules(canvas, a, b, r, c * f32(255), soft, shade=0.4)
    # the figure
    cue = np.array([[0, 0, 0], [1, 0, -1], [-1, 0, 1]], f32) * p.lr_cue  # centre / left / right
    kp32 = kp.astype(f32)
    for j, q in sk.edges:
        r = (sk.widths[j] * figh).astype(f32)
        c = np.clip(col + cue[sk.side[j]], 0.0, 1.0)
        _capsules(canvas, kp32[:, q], kp32[:, j], r, c * f32(255), soft, shade=0.4, mask=mask, mask_mode=1)
    # occluders, near a random joint of the figure
    vis = np.full(kp.shape[:2], 2, np.uint8)
    nocc = maybe(p.occluders)
    for i in range(max(p.occluders, 0)):
        at = kp[np.arange(m), rng.integers(0, sk.num_joints, m)]
        a = at + (rng.random((m, 2)) - 0.5) * 0.3 * figh[:, None]
        s, c = _sincos(rng.random(m) * 2 * math.pi)
        b = a + _u(rng, 0.0, 0.35, m)[:, None] * figh[:, None] * np.stack([c, s], -1)
        r = np.where(i < nocc, _u(rng, 0.05, 0.12, m) * figh, -9.0)  # -9: not drawn
        a32, b32, r32 = a.astype(f32), b.astype(f32), r.astype(f32)
        _capsules(
            canvas, a32, b32, r32, rng.random((m, 3), dtype=f32) * f32(255), soft, mask=mask, mask_mode=-1
        )
        # the same distance as the renderer, in float32, at the joints
        d = (b32 - a32)[:, None, :]
        pa = kp32 - a32[:, None, :]
        inv = (1.0 / np.maximum((d * d).sum(-1), 1e-6)).astype(f32)
        t = np.clip((pa * d).sum(-1) * inv, 0.0, 1.0)[..., None]
        e = pa - t * d
        vis[np.sqrt((e * e).sum(-1)) < r32[:, None]] = 1
    out = (kp32 < -0.5) | (kp32 > size - 0.5)
    vis[out.any(-1)] = 0
    # sensor noise (uniform, per-patch std) and quantisation
    sigma = _u(rng, p.noise[0], p.noise[1], m).astype(f32) * (255.0 / 73.9)  # int8 uniform has std ~73.9
    noise = np.frombuffer(rng.bytes(canvas.size), np.int8).reshape(canvas.shape)
    canvas += noise * sigma[:, None, None, None]
    np.clip(canvas, 0.0, 255.0, out=canvas)
    return canvas.astype(np.uint8), kp32, vis, mask


def render(
    n: int,
    params: SyntheticParams | None = None,
    seed: int | Sequence[int] = 0,
    *,
    img_size: int = 64,
    threads: int = 0,
    return_mask: bool = False,
) -> tuple[np.ndarray, ...]:
    """Render n patches: images uint8 (n,3,S,S), keypoints float32 (n,K,2) px, visibility uint8 (n,K).

    `seed` is an int or a tuple of non-negative ints (e.g. (seed, split)). With return_mask, a fourth
    array (n,S,S) bool marks the pixels where the figure is on top (coverage > 1/2, not occluded).
    `threads` (0 = up to 8 CPUs) changes speed only, never the output.
    """
    p = params or PRESETS["medium"]
    key = [int(s) for s in ((seed,) if isinstance(seed, int | np.integer) else seed)]
    sizes = [min(CHUNK, n - i) for i in range(0, n, CHUNK)]
    jobs = [(s, p, img_size, [GENERATOR_VERSION, *key, i], return_mask) for i, s in enumerate(sizes)]
    threads = threads or min(os.cpu_count() or 1, 8)
    if threads > 1 and len(jobs) > 1:
        with ThreadPoolExecutor(threads) as ex:
            parts = list(ex.map(lambda a: _render_chunk(*a), jobs))
    else:
        parts = [_render_chunk(*a) for a in jobs]
    K = SKELETONS[p.joints].num_joints
    if not parts:
        parts = [(np.zeros((0, 3, img_size, img_size), np.uint8), np.zeros((0, K, 2), np.float32),
                  np.zeros((0, K), np.uint8), np.zeros((0, img_size, img_size), bool))]  # fmt: skip
    out = tuple(np.concatenate([q[i] for q in parts]) for i in range(4 if return_mask else 3))
    return out
