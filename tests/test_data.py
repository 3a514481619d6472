"""Synthetic generator and dataset cache: determinism, label correctness, visibility, cache behaviour."""

from __future__ import annotations

import numpy as np
import pytest

from search.task import synthetic
from search.task.data import DataError, load_dataset
from search.task.synthetic import PRESETS, make_params, render


def test_render_shapes_and_dtypes():
    img, kp, vis = render(10, PRESETS["medium"], 0)
    assert img.shape == (10, 3, 64, 64) and img.dtype == np.uint8
    assert kp.shape == (10, 16, 2) and kp.dtype == np.float32
    assert vis.shape == (10, 16) and vis.dtype == np.uint8 and set(np.unique(vis)) <= {0, 1, 2}


def test_render_deterministic_and_seed_dependent():
    a = render(300, PRESETS["hard"], 7, threads=1)  # crosses a chunk boundary
    b = render(300, PRESETS["hard"], 7, threads=2)
    for x, y in zip(a, b, strict=True):
        assert x.tobytes() == y.tobytes()
    c = render(300, PRESETS["hard"], 8)
    assert a[0].tobytes() != c[0].tobytes() and not np.array_equal(a[1], c[1])


def test_render_golden_hash():
    """Pins the output bytes: if this changes, bump GENERATOR_VERSION (caches are keyed by it)."""
    import hashlib

    img, kp, vis = render(8, PRESETS["medium"], 123)
    h = hashlib.sha256(img.tobytes() + kp.tobytes() + vis.tobytes()).hexdigest()
    assert h == GOLDEN, f"generator output changed (got {h}); bump synthetic.GENERATOR_VERSION"


GOLDEN = "b3315b66e6d9babd67f49068f9961fbcbe7246522edddea8565d5ad1d726e5ae"


@pytest.mark.parametrize("preset", ["easy", "medium", "hard"])
def test_labels_on_figure(preset):
    """A visible joint lies on the figure: the figure mask (coverage > 1/2, not occluded) is set there."""
    img, kp, vis, mask = render(200, PRESETS[preset], 1, return_mask=True)
    n, k = np.nonzero(vis == 2)
    px = np.clip(np.rint(kp[n, k]).astype(int), 0, 63)
    on = mask[n, px[:, 1], px[:, 0]]
    assert len(n) > 1000 and on.mean() > 0.98  # rounding to the pixel centre may graze an occluder edge
    # occluded joints are (almost always) under the occluder, not the figure
    n1, k1 = np.nonzero(vis == 1)
    if len(n1):
        px1 = np.clip(np.rint(kp[n1, k1]).astype(int), 0, 63)
        assert mask[n1, px1[:, 1], px1[:, 0]].mean() < 0.1


def test_figure_mask_coverage():
    """Every patch shows a figure covering a plausible fraction of it."""
    p = make_params("easy", noise="0,0")
    img, kp, vis, mask = render(50, p, 3, return_mask=True)
    assert mask.any(axis=(1, 2)).all()
    assert 0.01 < mask.mean() < 0.5


def test_visibility_semantics():
    img, kp, vis = render(500, make_params("hard", occluders=0), 2)
    inside = ((kp >= -0.5) & (kp <= 63.5)).all(-1)
    assert np.array_equal(vis == 0, ~inside)
    assert not (vis == 1).any()  # no occluders, no occluded joints
    assert (vis == 0).any()  # hard: some joints leave the patch
    _, _, vis2 = render(500, make_params("hard", occluders=3), 2)
    assert (vis2 == 1).mean() > 0.01


def test_hand_skeleton_and_overrides():
    img, kp, vis = render(4, make_params("easy", joints="hand"), 0)
    assert kp.shape == (4, 21, 2)
    sk = synthetic.HAND21
    assert len(sk.edges) == 20 and all(sk.parents[c] == p for c, p in sk.edges)
    with pytest.raises(ValueError, match="unknown synthetic parameter"):
        make_params("easy", bogus=1)


def test_load_dataset_synthetic(tmp_path, monkeypatch):
    monkeypatch.setenv("FOCALNET_SEARCH_CACHE", str(tmp_path))
    d = load_dataset("synthetic:easy", n_train=40, n_val=10, n_test=10, seed=5)
    assert (len(d.train), len(d.val), len(d.test)) == (40, 10, 10)
    assert d.num_keypoints == 16 and d.joint_names[0] == "r_ankle" and len(d.edges) == 15
    assert d.train.images.shape == (40, 3, 64, 64) and len(d.data_hash) == 64
    # splits come from disjoint streams
    assert not np.array_equal(d.train.keypoints[:10], d.val.keypoints)
    assert not np.array_equal(d.val.keypoints, d.test.keypoints)
    assert len(list(tmp_path.glob("*.npz"))) == 3
    e = load_dataset("synthetic:easy", n_train=40, n_val=10, n_test=10, seed=6)
    assert e.data_hash != d.data_hash
    h = load_dataset("synthetic:easy?joints=hand", n_train=4, n_val=0, n_test=0, seed=5)
    assert h.num_keypoints == 21 and len(h.val) == 0 and h.val.images.shape == (0, 3, 64, 64)


def test_cache_hit_miss_corruption(tmp_path):
    kw = dict(n_train=20, n_val=0, n_test=0, seed=1, cache_dir=tmp_path)
    a = load_dataset("synthetic:medium", **kw)
    (f,) = [p for p in tmp_path.glob("*train*.npz")]
    mtime = f.stat().st_mtime_ns
    b = load_dataset("synthetic:medium", **kw)  # hit: file untouched, same data
    assert f.stat().st_mtime_ns == mtime and b.data_hash == a.data_hash
    # corrupt: flip bytes in the middle of the file -> detected and regenerated
    raw = bytearray(f.read_bytes())
    raw[len(raw) // 2 : len(raw) // 2 + 64] = bytes(64)
    f.write_bytes(bytes(raw))
    with pytest.warns(UserWarning, match="corrupt"):
        c = load_dataset("synthetic:medium", **kw)
    assert c.data_hash == a.data_hash
    # stale: a valid npz whose stored key does not match -> regenerated
    with np.load(f) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["images"] = arrays["images"] // 2
    arrays["key"] = np.array("something else")
    np.savez(f, **arrays)
    with pytest.warns(UserWarning, match="stale"):
        d = load_dataset("synthetic:medium", **kw)
    assert d.data_hash == a.data_hash
    f.write_bytes(b"not a zip")
    with pytest.warns(UserWarning):
        assert load_dataset("synthetic:medium", **kw).data_hash == a.data_hash
    assert not list(tmp_path.glob("*.tmp"))


@pytest.mark.parametrize(
    "uri, kw, msg",
    [
        ("synthetic:extreme", {}, "unknown synthetic preset"),
        ("synthetic:easy?joints=tail", {}, "unknown skeleton"),
        ("synthetic:easy?scale=1", {}, "expected 2 values"),
        ("imagenet:foo", {}, "expected 'synthetic"),
        ("synthetic:easy", {"n_val": -3}, "n_val must be"),
    ],
)
def test_bad_synthetic_uris(tmp_path, uri, kw, msg):
    args = dict(n_train=2, n_val=0, n_test=0, cache_dir=tmp_path) | kw
    with pytest.raises(DataError, match=msg) as e:
        load_dataset(uri, **args)
    assert "\n" not in str(e.value) and str(e.value).startswith(uri.split("?")[0].split(":")[0])


def test_parallel_workers_share_the_cache(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    def load(_):
        return load_dataset(
            "synthetic:hard", n_train=30, n_val=5, n_test=5, seed=2, cache_dir=tmp_path
        ).data_hash

    with ThreadPoolExecutor(4) as ex:
        hashes = set(ex.map(load, range(4)))
    assert len(hashes) == 1 and len(list(tmp_path.glob("*.npz"))) == 3 and not list(tmp_path.glob("*.tmp"))
