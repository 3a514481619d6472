"""NPZ and COCO readers on small files written to tmp_path: formats as people export them, and every bad input."""

from __future__ import annotations

import json
import math

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


def _all(d, field):
    return np.concatenate([getattr(s, field) for s in (d.train, d.val, d.test)])


def test_npz_roundtrip_and_resize(tmp_path):
    uri = _npz(tmp_path / "d.npz")
    d = load_dataset(uri, img_size=64, n_train=-1, n_val=3, n_test=2, seed=0)
    assert (len(d.train), len(d.val), len(d.test)) == (7, 3, 2)
    assert d.train.images.shape == (7, 3, 64, 64) and d.train.images.dtype == np.uint8
    assert d.joint_names == ("a", "b", "c", "d") and d.edges == ((0, 1), (1, 2))
    # pixel-centre convention: x' = (x + 0.5) * 2 - 0.5 when upscaling 32 -> 64; `index` says which sample
    with np.load(tmp_path / "d.npz") as z:
        kp = z["keypoints"]
    np.testing.assert_allclose(_all(d, "keypoints"), (kp[_all(d, "index")] + 0.5) * 2 - 0.5, rtol=1e-6)
    assert sorted(_all(d, "index").tolist()) == list(range(N))
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
    np.testing.assert_array_equal(d.train.images, imgs[d.train.index])


def test_npz_non_square_is_padded_and_keypoints_follow(tmp_path):
    """A 16x32 (h x w) image is padded to 32x32 (8 black rows above and below), then resized to 64."""
    imgs = np.full((N, 16, 32, 3), 90, np.uint8)
    kp = np.tile(np.array([[5.0, 3.0], [20.0, 12.0], [31.0, 0.0], [0.0, 15.0]]), (N, 1, 1))
    imgs[:, 3, 5] = imgs[:, 12, 20] = (250, 0, 0)  # red pixels under joints 0 and 1
    d = load_dataset(_npz(tmp_path / "w.npz", images=imgs, keypoints=kp), n_train=N, n_val=0, n_test=0)
    want = (kp[0] + [0, 8] + 0.5) * 2 - 0.5
    np.testing.assert_allclose(d.train.keypoints[0], want, atol=1e-5)
    img = d.train.images[0]
    for x, y in np.rint(want[:2]).astype(int):
        assert img[0, y, x] > 150 and img[1, y, x] < 60, (x, y)  # the red pixel is where its joint went
    assert img[:, :14].max() == 0 and img[:, 50:].max() == 0  # padding above and below, not stretching
    assert img[:, 20:44].min() > 0  # the image itself, full width
    assert d.train.visibility.min() == 2  # edge joints stay inside the patch


def test_npz_16_bit_scaled_and_grayscale(tmp_path):
    imgs = np.full((N, 32, 32), 1000, np.uint16)  # grayscale (N,H,W)
    imgs[:, :16] = 65535
    uri = _npz(tmp_path / "g.npz", images=imgs)
    d = load_dataset(uri, n_train=N, n_val=0, n_test=0)
    img = d.train.images[0]
    assert img.shape == (3, 64, 64) and (img[:, :30] == 255).all()
    assert (img[:, 34:] == round(1000 * 255 / 65535)).all()  # 4: scaled, not clipped to 255


def test_npz_nan_bool_float_visibility_and_byte_names(tmp_path):
    kp = np.random.default_rng(2).uniform(2, 30, (N, K, 2))
    vis = np.ones((N, K), bool)
    kp[0, 1] = np.nan
    vis[0, 1] = False  # "not labelled": NaN accepted with visibility 0
    names = np.array([b"wrist", b"thumb", b"index", b"pinky"])
    d = load_dataset(
        _npz(tmp_path / "n.npz", keypoints=kp, visibility=vis, joint_names=names),
        n_train=N,
        n_val=0,
        n_test=0,
    )
    assert d.joint_names == ("wrist", "thumb", "index", "pinky")
    row = int(np.argwhere(d.train.index == 0)[0, 0])
    assert d.train.visibility[row].tolist() == [2, 0, 2, 2]  # booleans: true = 2, false = 0
    assert np.isfinite(d.train.keypoints).all() and d.train.keypoints[row, 1].tolist() == [31.5, 31.5]
    fvis = np.full((N, K), 2.0)
    fvis[:, 0] = 1.0
    d = load_dataset(_npz(tmp_path / "f.npz", visibility=fvis), n_train=N, n_val=0, n_test=0)
    assert set(d.train.visibility[:, 0].tolist()) == {1}


def test_npz_normalised_keypoints_refused_or_scaled(tmp_path):
    kp = np.random.default_rng(3).uniform(0.1, 0.9, (N, K, 2))
    uri = _npz(tmp_path / "u.npz", keypoints=kp)
    with pytest.raises(DataError, match=r"lies in \[0, 1\].*normalized=1") as e:
        load_dataset(uri, n_train=N, n_val=0, n_test=0)
    assert "\n" not in str(e.value) and "u.npz" in str(e.value)
    for d in (
        load_dataset(uri + "?normalized=1", n_train=N, n_val=0, n_test=0),
        load_dataset(uri, n_train=N, n_val=0, n_test=0, normalized=True),
    ):
        # 0 and 1 are the 32 px image's edges; then the 2x resize to 64
        np.testing.assert_allclose(
            d.train.keypoints, ((kp * 32 - 0.5)[d.train.index] + 0.5) * 2 - 0.5, rtol=1e-5
        )
    with pytest.raises(DataError, match="look like pixels"):
        load_dataset(_npz(tmp_path / "p.npz") + "?normalized=1", n_train=N, n_val=0, n_test=0)


def test_npz_skips_are_counted_in_one_line_and_strict_refuses(tmp_path, capsys):
    kp = np.random.default_rng(4).uniform(2, 30, (N, K, 2))
    vis = np.full((N, K), 2, np.uint8)
    kp[3, 2] = (500.0, 5.0)  # far outside its 32 px image
    kp[7, 0] = (-90.0, 5.0)
    vis[9] = 0  # nothing labelled
    uri = _npz(tmp_path / "s.npz", keypoints=kp, visibility=vis)
    d = load_dataset(uri, n_train=-1, n_val=0, n_test=0)
    assert len(d.train) == N - 3 and not {3, 7, 9} & set(d.train.index.tolist())
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "skipped 3 of 12" in err[0], err
    assert (
        "2 labelled keypoint more than one image size outside" in err[0] and "1 fewer than min_kp=1" in err[0]
    )
    assert d.skipped == {
        str(tmp_path / "s.npz"): {
            "labelled keypoint more than one image size outside the image": 2,
            "fewer than min_kp=1 labelled joints": 1,
        }
    }
    for strict in ({"uri": uri + "?strict=1"}, {"uri": uri, "strict": True}):
        with pytest.raises(DataError, match=r"s.npz: sample 3: labelled keypoint .* \(strict"):
            load_dataset(strict.pop("uri"), n_train=-1, n_val=0, n_test=0, **strict)


@pytest.mark.parametrize(
    "over, msg",
    [
        (dict(images=np.zeros((N, 32, 32, 3), np.float32)), "images must be uint8 or uint16"),
        (dict(images=np.zeros((N, 32, 32, 2), np.uint8)), "images must be uint8 or uint16"),
        (dict(images=np.zeros((0, 32, 48, 3), np.uint8), keypoints=np.zeros((0, K, 2))), "has no samples"),
        (dict(keypoints=np.zeros((N, K, 3), np.float32)), "keypoints must be numeric"),
        (dict(keypoints=np.zeros((N - 1, K, 2), np.float32)), "keypoints must be numeric"),
        (dict(keypoints=np.full((N, K, 2), np.nan, np.float32)), r"sample 0: joint 0 \(a\) is \[nan, nan\]"),
        (dict(keypoints=np.full((N, K, 2), np.inf, np.float32)), "needs visibility 0"),
        (dict(keypoints=np.full((N, K, 2), 500.0, np.float32)), "no usable sample of 12"),
        (dict(visibility=np.full((N, K + 1), 2, np.uint8)), "visibility must be"),
        (
            dict(visibility=np.full((N, K), 3, np.uint8)),
            r"sample 0: visibility of joint 0 is 3; allowed 0, 1, 2",
        ),
        (dict(visibility=np.full((N, K), 0.5)), "visibility of joint 0 is 0.5"),
        (dict(joint_names=np.array(["a", "b"])), "2 joint names for K=4"),
        (dict(joint_names=np.array([b"\xff", b"b", b"c", b"d"])), "is not UTF-8"),
        (dict(edges=np.array([[0, 9]])), "out of range"),
        (dict(images=None), "missing array 'images'"),
        (dict(groups=np.arange(N - 1)), r"groups must be integers or strings of shape \(12,\)"),
        (dict(groups=np.arange(N), image_ids=np.arange(N)), "not both"),
    ],
)
def test_npz_bad_inputs(tmp_path, over, msg):
    uri = _npz(tmp_path / "bad.npz", **over)
    with pytest.raises(DataError, match=msg) as e:
        load_dataset(uri, n_train=2, n_val=0, n_test=0)
    assert str(tmp_path / "bad.npz") in str(e.value) and "\n" not in str(e.value)


def test_npz_missing_corrupt_too_few_and_bad_options(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        load_dataset(f"npz:{tmp_path}/nope.npz", n_train=1, n_val=0, n_test=0)
    (tmp_path / "junk.npz").write_bytes(b"garbage")
    with pytest.raises(DataError, match="not a readable .npz"):
        load_dataset(f"npz:{tmp_path}/junk.npz", n_train=1, n_val=0, n_test=0)
    uri = _npz(tmp_path / "d.npz")
    with pytest.raises(DataError, match="the file has 12"):
        load_dataset(uri, n_train=10, n_val=2, n_test=1)
    with pytest.raises(DataError, match=r"asked for the rest \(n_train=-1\) train \+ 8 val \+ 8 test"):
        load_dataset(uri, n_train=-1, n_val=8, n_test=8)
    with pytest.raises(DataError, match="unknown option 'margin'"):
        load_dataset(uri + "?margin=1", n_train=1, n_val=0, n_test=0)
    with pytest.raises(DataError, match="option strict: expected 1/0/true/false"):
        load_dataset(uri + "?strict=maybe", n_train=1, n_val=0, n_test=0)


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
    assert d.skipped[str(tmp_path / "ann.json")] == {"fewer than min_kp=3 labelled joints": 1}


def test_coco_exif_rotated_jpeg_is_read_upright(tmp_path):
    """A phone photo: pixels stored landscape with EXIF Orientation 6, annotated upright (portrait)."""
    up = np.full((60, 40, 3), 20, np.uint8)  # upright: 40 wide, 60 tall
    up[40:50, 5:15] = (230, 20, 20)  # a red block low on the left when upright
    stored = np.rot90(up, k=1)  # orientation 6 = "turn 90 degrees clockwise to view"
    exif = Image.Exif()
    exif[0x0112] = 6
    (tmp_path / "images").mkdir()
    Image.fromarray(np.ascontiguousarray(stored)).save(tmp_path / "images" / "p.jpg", quality=95, exif=exif)
    doc = {
        "images": [{"id": 1, "file_name": "p.jpg", "width": 40, "height": 60}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [2, 36, 16, 18],
             "keypoints": [10, 45, 2, 7, 42, 2, 12, 47, 2]},
        ],
        "categories": [{"id": 1, "name": "p", "keypoints": ["centre", "tl", "br"]}],
    }  # fmt: skip
    (tmp_path / "a.json").write_text(json.dumps(doc))
    uri = f"coco:{tmp_path}/a.json@{tmp_path}/images"
    d = load_dataset(uri, n_train=1, n_val=0, n_test=0)
    img, kp = d.train.images[0], d.train.keypoints[0]
    for x, y in np.rint(kp).astype(int):
        assert img[0, y, x] > 150 and img[1, y, x] < 90, (x, y)  # each joint is on the red block
    doc["images"][0].update(width=60, height=40)  # the stored, un-rotated size: labels' frame is ambiguous
    (tmp_path / "a.json").write_text(json.dumps(doc))
    with pytest.raises(DataError, match="declared 60x40 but the image is 40x60; .*EXIF orientation 6"):
        load_dataset(uri, n_train=1, n_val=0, n_test=0)


def test_coco_16_bit_png_scaled_not_clipped(tmp_path):
    arr = np.full((40, 40), 30000, np.uint16)
    arr[10:30, 10:30] = 65535
    (tmp_path / "images").mkdir()
    Image.fromarray(arr).save(tmp_path / "images" / "g.png")
    assert Image.open(tmp_path / "images" / "g.png").mode.startswith("I")  # really a 16-bit PNG
    doc = {
        "images": [{"id": 1, "file_name": "g.png", "width": 40, "height": 40}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 40, 40],
                         "keypoints": [20, 20, 2, 12, 12, 2, 28, 28, 2]}],
        "categories": [{"id": 1, "name": "g", "keypoints": ["a", "b", "c"]}],
    }  # fmt: skip
    (tmp_path / "a.json").write_text(json.dumps(doc))
    d = load_dataset(f"coco:{tmp_path}/a.json@{tmp_path}/images?margin=0", n_train=1, n_val=0, n_test=0)
    img = d.train.images[0]
    assert (img[:, 32, 32] == 255).all() and (
        img[:, 2, 2] == round(30000 * 255 / 65535)
    ).all()  # 117, not 255


def test_coco_nan_bool_float_visibility(tmp_path):
    def mutate(doc):
        a = doc["annotations"]
        a[0]["keypoints"] = [30, 20, True, 50, 20, 2.0, 40, 30, 1.0, None, None, 0]
        a[1]["keypoints"] = [30, 20, 2, 50, 20, 2, 40, 30, 2, math.nan, math.nan, False]

    d = load_dataset(_coco(tmp_path, mutate), n_train=3, n_val=0, n_test=0)
    by_id = dict(zip(d.train.index.tolist(), range(3), strict=True))
    assert d.train.visibility[by_id[0]].tolist() == [2, 2, 1, 0]
    assert d.train.visibility[by_id[1]].tolist() == [2, 2, 2, 0]
    assert d.train.keypoints[by_id[1], 3].tolist() == [31.5, 31.5]  # unlabelled: the patch centre


def _two_hands(doc):
    doc["categories"] = [
        {"id": 1, "name": "hand_left", "keypoints": ["tl", "tr", "c", "x"]},
        {"id": 2, "name": "hand_right", "keypoints": ["TL", "TR", "C", "X"]},
        {"id": 3, "name": "background"},
    ]
    doc["annotations"][1]["category_id"] = 2


def test_coco_multi_category_choose_by_name_or_id(tmp_path):
    uri = _coco(tmp_path, _two_hands)
    with pytest.raises(
        DataError, match=r"2 categories have keypoints \(1 'hand_left', 2 'hand_right'\); choose"
    ):
        load_dataset(uri, n_train=1, n_val=0, n_test=0)
    left = load_dataset(uri + "?category=hand_left", n_train=2, n_val=0, n_test=0)
    assert left.joint_names == ("tl", "tr", "c", "x") and sorted(left.train.index.tolist()) == [0, 2]
    right = load_dataset(uri + "?category=2&min_kp=1", n_train=1, n_val=0, n_test=0)
    assert right.joint_names == ("TL", "TR", "C", "X") and right.train.index.tolist() == [1]
    with pytest.raises(
        DataError, match="category 'foot' not found; categories with keypoints: 1 'hand_left'"
    ):
        load_dataset(uri + "?category=foot", n_train=1, n_val=0, n_test=0)
    with pytest.raises(DataError, match="category 'background' has no keypoints"):
        load_dataset(uri + "?category=background", n_train=1, n_val=0, n_test=0)


def test_coco_skips_counted_and_strict(tmp_path, capsys):
    def mutate(doc):
        a = doc["annotations"]
        a.append(dict(a[0], id=20, iscrowd=1))
        a.append(dict(a[0], id=21, bbox=[30, 20, 0, 20]))
        a.append(dict(a[0], id=22, keypoints=[9000, 20, 2] + [40, 30, 2] * 3))

    uri = _coco(tmp_path, mutate)
    d = load_dataset(uri, n_train=3, n_val=0, n_test=0)
    assert sorted(d.train.index.tolist()) == [0, 1, 2]
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert (
        "ann.json: skipped 4 of 7 instances (1 fewer than min_kp=3 labelled joints, 1 crowd instance" in line
    )
    assert "1 empty bbox, 1 labelled keypoint more than one image size outside the image)" in line
    with pytest.raises(
        DataError, match=r"ann.json: annotation id=99 \(#3\): fewer than min_kp=3 .*strict"
    ) as e:
        load_dataset(uri + "?strict=1", n_train=3, n_val=0, n_test=0)
    assert "\n" not in str(e.value)
    d.skipped.clear()
    doc = json.loads((tmp_path / "ann.json").read_text())
    doc["annotations"] = [a for a in doc["annotations"] if a["id"] != 99]
    (tmp_path / "ann.json").write_text(json.dumps(doc))
    with pytest.raises(DataError, match=r"annotation id=20 \(#3\): crowd instance \(strict"):
        load_dataset(uri, n_train=3, n_val=0, n_test=0, strict=True)


@pytest.mark.parametrize(
    "mutate, msg",
    [
        (
            lambda d: d["annotations"][0].update(keypoints=[1, 2, 2]),
            r"id=10 \(#0\): keypoints has 3 values, expected 12",
        ),
        (
            lambda d: d["annotations"][0].update(keypoints=[30, 20, 0.5] + [0] * 9),
            r"joint 0 \(tl\) is 0.5; allowed 0, 1",
        ),
        (lambda d: d["annotations"][0].update(keypoints=[None, 20, 2] + [0] * 9), "needs visibility 0"),
        (lambda d: d["annotations"][0].update(keypoints=["a", 20, 2] + [0] * 9), "'a' is not a number"),
        (lambda d: d["annotations"][0].update(bbox=[30, 20, 20]), r"id=10 \(#0\): bbox must be"),
        (lambda d: d["annotations"][0].update(image_id=77), r"id=10 \(#0\): image_id 77 is not in 'images'"),
        (lambda d: d["annotations"][0].update(category_id=5), "category_id 5 is not in 'categories'"),
        (lambda d: d["annotations"][0].update(image_id=[1]), r"image_id \[1\] is not in 'images'"),
        (lambda d: d.update(images=[{"file_name": "x.png"}]), r"not a COCO keypoints file \(missing 'id'\)"),
        (lambda d: d.pop("annotations"), "not a COCO keypoints file"),
        (lambda d: d["categories"].append(dict(d["categories"][0], id=2)), "2 categories have keypoints"),
        (lambda d: d["categories"][0].update(skeleton=[[0, 1]]), "1-based"),
        (
            lambda d: d["images"][0].update(file_name="missing.png"),
            "image id=1: image file .*missing.png not found",
        ),
        (lambda d: d["images"][1].update(width=81), "image id=2: declared 81x60 but the image is 80x60"),
        (lambda d: d["annotations"].clear(), "no annotation of category 1"),
        (
            lambda d: [
                a.update(keypoints=[0.1, 0.2, 2, 0.5, 0.5, 2, 0.9, 0.9, 2, 0, 0, 0]) for a in d["annotations"]
            ],
            r"lies in \[0, 1\].*COCO keypoints are pixels",
        ),
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
    with pytest.raises(DataError, match="normalized: COCO keypoints are pixels"):
        load_dataset(_coco(tmp_path), n_train=1, n_val=0, n_test=0, normalized=True)
    (tmp_path / "images" / "im1.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match=r"ann.json: image id=2: cannot read image .*im1.png") as e:
        load_dataset(_coco(tmp_path, write_images=False), n_train=1, n_val=0, n_test=0)
    assert "\n" not in str(e.value)
