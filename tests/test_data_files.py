"""NPZ and COCO loaders on small fixtures written to tmp_path, and every bad-input case."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from search.task.data import DataError, load_dataset

N, K = 12, 4


def _npz(path, **over):
    rng = np.random.default_rng(0)
    arrays = dict(
        images=rng.integers(0, 256, (N, 32, 32, 3), dtype=np.uint8),
        keypoints=rng.uniform(0, 31, (N, K, 2)).astype(np.float32),
        visibility=np.full((N, K), 2, np.uint8),
        joint_names=np.array(["a", "b", "c", "d"]),
        edges=np.array([[0, 1], [1, 2]]),
    )
    arrays.update(over)
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return f"npz:{path}"


def test_npz_roundtrip_and_resize(tmp_path):
    uri = _npz(tmp_path / "d.npz")
    d = load_dataset(uri, img_size=64, n_train=-1, n_val=3, n_test=2, seed=0)
    assert (len(d.train), len(d.val), len(d.test)) == (7, 3, 2)
    assert d.train.images.shape == (7, 3, 64, 64) and d.train.images.dtype == np.uint8
    assert d.joint_names == ("a", "b", "c", "d") and d.edges == ((0, 1), (1, 2))
    # pixel-centre convention: x' = (x + 0.5) * 2 - 0.5 when upscaling 32 -> 64
    with np.load(tmp_path / "d.npz") as z:
        kp = z["keypoints"]
    all_kp = np.concatenate([d.train.keypoints, d.val.keypoints, d.test.keypoints])
    np.testing.assert_allclose(
        np.sort((kp + 0.5) * 2 - 0.5, axis=None), np.sort(all_kp, axis=None), rtol=1e-6
    )
    # deterministic split by seed; a different seed shuffles differently
    again = load_dataset(uri, img_size=64, n_train=-1, n_val=3, n_test=2, seed=0)
    other = load_dataset(uri, img_size=64, n_train=-1, n_val=3, n_test=2, seed=1)
    assert again.data_hash == d.data_hash != other.data_hash


def test_npz_channels_first_and_defaults(tmp_path):
    rng = np.random.default_rng(1)
    imgs = rng.integers(0, 256, (N, 3, 64, 64), dtype=np.uint8)
    kp = rng.uniform(0, 63, (N, K, 2))
    kp[0, 0] = (70.0, 10.0)  # outside the patch -> visibility 0 by default
    uri = _npz(tmp_path / "c.npz", images=imgs, keypoints=kp, visibility=None, joint_names=None, edges=None)
    d = load_dataset(uri, n_train=N, n_val=0, n_test=0, seed=0)
    assert d.joint_names == ("joint_0", "joint_1", "joint_2", "joint_3") and d.edges == ()
    i = int(np.argwhere((d.train.keypoints[:, 0] == np.float32([70.0, 10.0])).all(-1))[0, 0])
    assert d.train.visibility[i, 0] == 0 and (d.train.visibility.sum() == 2 * (N * K - 1))
    np.testing.assert_array_equal(np.sort(d.train.images.reshape(N, -1), 0), np.sort(imgs.reshape(N, -1), 0))


@pytest.mark.parametrize(
    "over, msg",
    [
        (dict(images=np.zeros((N, 32, 32, 3), np.float32)), "images must be uint8"),
        (dict(images=np.zeros((N, 32, 32), np.uint8)), "images must be uint8"),
        (dict(keypoints=np.zeros((N, K, 3), np.float32)), "keypoints must be numeric"),
        (dict(keypoints=np.zeros((N - 1, K, 2), np.float32)), "keypoints must be numeric"),
        (dict(keypoints=np.full((N, K, 2), np.nan, np.float32)), "NaN or inf"),
        (dict(keypoints=np.full((N, K, 2), np.inf, np.float32)), "NaN or inf"),
        (dict(keypoints=np.full((N, K, 2), 500.0, np.float32)), "far outside"),
        (dict(visibility=np.full((N, K + 1), 2, np.uint8)), "visibility must be"),
        (dict(visibility=np.full((N, K), 3, np.uint8)), "visibility must be"),
        (dict(joint_names=np.array(["a", "b"])), "2 joint names for K=4"),
        (dict(edges=np.array([[0, 9]])), "out of range"),
        (dict(images=None), "missing array 'images'"),
    ],
)
def test_npz_bad_inputs(tmp_path, over, msg):
    uri = _npz(tmp_path / "bad.npz", **over)
    with pytest.raises(DataError, match=msg) as e:
        load_dataset(uri, n_train=2, n_val=0, n_test=0)
    assert str(tmp_path / "bad.npz") in str(e.value) and "\n" not in str(e.value)


def test_npz_missing_corrupt_and_too_few(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        load_dataset(f"npz:{tmp_path}/nope.npz", n_train=1, n_val=0, n_test=0)
    (tmp_path / "junk.npz").write_bytes(b"garbage")
    with pytest.raises(DataError, match="not a readable .npz"):
        load_dataset(f"npz:{tmp_path}/junk.npz", n_train=1, n_val=0, n_test=0)
    uri = _npz(tmp_path / "d.npz")
    with pytest.raises(DataError, match="has 12"):
        load_dataset(uri, n_train=10, n_val=2, n_test=1)


# --- COCO ----------------------------------------------------------------------------------------------


def _coco(tmp_path, mutate=None, write_images=True):
    imgdir = tmp_path / "images"
    imgdir.mkdir(exist_ok=True)
    images, anns = [], []
    for i in range(3):
        if write_images:
            arr = np.zeros((60, 80, 3), np.uint8)
            arr[20:40, 30:50] = (200, 50, 50)
            Image.fromarray(arr).save(imgdir / f"im{i}.png")
        images.append({"id": i + 1, "file_name": f"im{i}.png", "width": 80, "height": 60})
        # box 30..50 x 20..40; joints at the box corners and centre-ish
        kps = [30, 20, 2, 50, 20, 2, 40, 30, 1, 0, 0, 0]
        anns.append({"id": 10 + i, "image_id": i + 1, "category_id": 1, "bbox": [30, 20, 20, 20],
                     "keypoints": kps, "num_keypoints": 3, "iscrowd": 0})  # fmt: skip
    too_few = {
        "id": 99,
        "image_id": 1,
        "category_id": 1,
        "bbox": [0, 0, 5, 5],
        "keypoints": [1, 1, 2] + [0] * 9,
    }
    anns.append(too_few)  # one labelled joint: skipped
    doc = {"images": images, "annotations": anns,
           "categories": [{"id": 1, "name": "thing", "keypoints": ["tl", "tr", "c", "x"],
                           "skeleton": [[1, 2], [2, 3]]}]}  # fmt: skip
    if mutate:
        mutate(doc)
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(doc))
    return f"coco:{path}@{imgdir}"


def test_coco_crop_and_transform(tmp_path):
    d = load_dataset(_coco(tmp_path), img_size=64, n_train=-1, n_val=1, n_test=0)
    assert len(d.train) == 2 and len(d.val) == 1
    assert d.joint_names == ("tl", "tr", "c", "x") and d.edges == ((0, 1), (1, 2))
    # box 20 px + 25 % margin each side -> 30 px crop from (25, 15); scale 64/30
    s = 64 / 30
    kp = d.train.keypoints[0]
    np.testing.assert_allclose(kp[0], [(30 + 0.5 - 25) * s - 0.5, (20 + 0.5 - 15) * s - 0.5], atol=1e-4)
    np.testing.assert_allclose(kp[2], [(40.5 - 25) * s - 0.5, (30.5 - 15) * s - 0.5], atol=1e-4)
    assert d.train.visibility[0].tolist() == [2, 2, 1, 0]
    img = d.train.images[0]
    cx, cy = np.rint(kp[2]).astype(int)
    assert img[0, cy, cx] > 150 and img[1, cy, cx] < 100  # the red square lands where the centre joint is
    assert img[:, 2, 2].max() < 30  # the margin is black background


@pytest.mark.parametrize(
    "mutate, msg",
    [
        (lambda d: d["annotations"][0].update(keypoints=[1, 2, 2]), "3 keypoint values, expected 12"),
        (lambda d: d["annotations"][0].update(keypoints=[9000, 20, 2] + [40, 30, 2] * 3), "far outside"),
        (lambda d: d["annotations"][0].update(bbox=[30, 20, 0, 20]), "empty bbox"),
        (lambda d: d["annotations"][0].update(image_id=77), "annotation 0 is malformed"),
        (lambda d: d.pop("annotations"), "not a COCO keypoints file"),
        (lambda d: d["categories"].append(dict(d["categories"][0], id=2)), "exactly one category"),
        (lambda d: d["categories"][0].update(skeleton=[[0, 1]]), "1-based"),
        (lambda d: d["images"][0].update(file_name="missing.png"), "missing.png not found"),
    ],
)
def test_coco_bad_inputs(tmp_path, mutate, msg):
    uri = _coco(tmp_path, mutate)
    with pytest.raises(DataError, match=msg) as e:
        load_dataset(uri, n_train=1, n_val=0, n_test=0)
    assert "ann.json" in str(e.value) and "\n" not in str(e.value)


def test_coco_malformed_json_and_missing(tmp_path):
    uri = _coco(tmp_path)
    (tmp_path / "ann.json").write_text("{not json")
    with pytest.raises(DataError, match="ann.json: malformed JSON"):
        load_dataset(uri, n_train=1, n_val=0, n_test=0)
    with pytest.raises(DataError, match="file not found"):
        load_dataset(f"coco:{tmp_path}/none.json@{tmp_path}", n_train=1, n_val=0, n_test=0)
    with pytest.raises(DataError, match="expected 'coco:"):
        load_dataset(f"coco:{tmp_path}/ann.json", n_train=1, n_val=0, n_test=0)
