"""Leak-free splits of user data, explicit split sources, data configs ([data], run.json) and the CLI on bad data."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from harness_utils import ROOT, cli, quick_spec, write_spec
from PIL import Image

from search.cli import main
from search.spec.parse import SpecError, load_spec
from search.study.setup import spec_data
from search.task.data import DataConfigError, DataError, data_config, load_dataset

PER_IMAGE = [1, 2, 3, 4] * 3  # 12 images, 30 instances: several people per image


def _coco(tmp: Path, name: str = "ann.json", *, images: range = range(12), names=("a", "b", "c")) -> str:
    """A COCO file whose image i holds PER_IMAGE[i] overlapping instances; returns its URI."""
    imgdir = tmp / "imgs"
    imgdir.mkdir(exist_ok=True)
    doc = {
        "images": [],
        "annotations": [],
        "categories": [{"id": 1, "name": "hand", "keypoints": list(names)}],
    }
    for i in images:
        if not (imgdir / f"{i}.png").exists():
            Image.fromarray(np.full((48, 48, 3), 10 * i, np.uint8)).save(imgdir / f"{i}.png")
        doc["images"].append({"id": 100 + i, "file_name": f"{i}.png", "width": 48, "height": 48})
        for j in range(PER_IMAGE[i]):
            x = 4 + 6 * j
            doc["annotations"].append({
                "id": len(doc["annotations"]) + 1, "image_id": 100 + i, "category_id": 1,
                "bbox": [x, 8, 20, 20], "keypoints": [x + 2, 10, 2, x + 10, 18, 2, x + 18, 26, 1],
            })  # fmt: skip
    (tmp / name).write_text(json.dumps(doc))
    return f"coco:{tmp / name}@{imgdir}"


def _groups_by_split(d) -> list[set[str]]:
    return [set(s.groups.tolist()) for s in (d.train, d.val, d.test)]


def test_coco_instances_of_one_image_never_straddle_splits(tmp_path):
    uri = _coco(tmp_path)
    d = load_dataset(uri, n_train=-1, n_val=6, n_test=6, seed=0)
    tr, va, te = _groups_by_split(d)
    assert not (tr & va or tr & te or va & te)  # no image in two splits
    assert va and te and tr
    index = np.concatenate([d.train.index, d.val.index, d.test.index])
    assert sorted(index.tolist()) == list(range(30))  # n_train=-1: every instance used once
    for s in (d.val, d.test):  # whole images: each split holds every instance of its images
        assert len(s) == sum(PER_IMAGE[int(g) - 100] for g in set(s.groups.tolist()))
    again = load_dataset(uri, n_train=-1, n_val=6, n_test=6, seed=0)
    assert again.data_hash == d.data_hash and all(
        np.array_equal(a.index, b.index)
        for a, b in zip((d.train, d.val, d.test), (again.train, again.val, again.test), strict=True)
    )
    other = [load_dataset(uri, n_train=-1, n_val=6, n_test=6, seed=s) for s in (1, 2, 3)]
    assert any(_groups_by_split(o)[2] != te for o in other)  # another seed, another split
    assert all(o.data_hash != d.data_hash for o in other if _groups_by_split(o)[2] != te)


def test_n_train_subset_stays_out_of_val_and_test_images(tmp_path):
    uri = _coco(tmp_path)
    d = load_dataset(uri, n_train=10, n_val=6, n_test=6, seed=4)
    tr, va, te = _groups_by_split(d)
    assert len(d.train) == 10 and not (tr & va or tr & te)
    # 28 + 1 + 1 = 30 instances exist, but whole images for val and test take more than one each
    with pytest.raises(DataError, match=r"leaving 2\d for n_train=28; lower n_train or use n_train = -1"):
        load_dataset(uri, n_train=28, n_val=1, n_test=1, seed=0)


def test_npz_groups_and_image_ids_keep_images_whole(tmp_path):
    rng = np.random.default_rng(0)
    arrays = dict(
        images=rng.integers(0, 256, (20, 16, 16, 3), dtype=np.uint8),
        keypoints=rng.uniform(2, 13, (20, 3, 2)),
    )
    np.savez(tmp_path / "g.npz", groups=np.arange(20) // 4, **arrays)
    np.savez(tmp_path / "i.npz", image_ids=np.array([f"img{i // 5}" for i in range(20)]), **arrays)
    np.savez(tmp_path / "n.npz", **arrays)
    for name, per in (("g", 4), ("i", 5)):
        d = load_dataset(f"npz:{tmp_path}/{name}.npz", n_train=-1, n_val=per, n_test=per, seed=7)
        tr, va, te = _groups_by_split(d)
        assert (len(d.val), len(d.test)) == (per, per) and not (tr & va or tr & te or va & te)
    d = load_dataset(
        f"npz:{tmp_path}/n.npz", n_train=11, n_val=3, n_test=5, seed=7
    )  # no groups: exact counts
    assert (len(d.train), len(d.val), len(d.test)) == (11, 3, 5)
    # the hash covers the split: same pixels and labels, other grouping -> other split -> other hash
    g = load_dataset(f"npz:{tmp_path}/g.npz", n_train=-1, n_val=4, n_test=4, seed=7)
    n = load_dataset(f"npz:{tmp_path}/n.npz", n_train=-1, n_val=4, n_test=4, seed=7)
    assert g.data_hash != n.data_hash


def test_explicit_train_val_test_sources(tmp_path):
    tr = _coco(tmp_path, "train.json", images=range(0, 8))
    va = _coco(tmp_path, "val.json", images=range(8, 10))
    te = _coco(tmp_path, "test.json", images=range(10, 12))
    d = load_dataset(train=tr, val=va, test=te, n_train=-1, n_val=-1, n_test=-1, seed=0)
    assert (len(d.train), len(d.val), len(d.test)) == (sum(PER_IMAGE[:8]), 1 + 2, 3 + 4)
    assert _groups_by_split(d) == [{str(100 + i) for i in r} for r in (range(8), range(8, 10), range(10, 12))]
    part = load_dataset(train=tr, val=va, test=te, n_train=-1, n_val=2, n_test=-1, seed=0)
    assert len(part.val) == 2 and part.data_hash != d.data_hash
    # train and val given, test cut from train, whole images
    d2 = load_dataset(train=tr, val=va, n_train=-1, n_val=-1, n_test=4, seed=0)
    a, b, c = _groups_by_split(d2)
    assert b == {"108", "109"} and c and not a & c and a | c == {str(100 + i) for i in range(8)}
    with pytest.raises(DataError, match="the val source is the train data's file"):
        load_dataset(train=tr, val=tr + "?min_kp=1", n_train=-1, n_val=-1, n_test=2)
    (tmp_path / "x").mkdir()
    bad = _coco(tmp_path / "x", "v.json", images=range(2), names=("a", "c", "b"))
    with pytest.raises(
        DataError, match=r"v.json: the val source has joints \['a', 'c', 'b'\], the train data"
    ):
        load_dataset(train=tr, val=bad, n_train=-1, n_val=-1, n_test=2)
    with pytest.raises(DataError, match="not both"):
        load_dataset(tr, train=tr, n_train=-1, n_val=1, n_test=1)


@pytest.mark.parametrize(
    "d, key, msg",
    [
        ({"dataset": "npz:a.npz", "train": "npz:b.npz"}, "train", "conflicts with data.dataset"),
        ({"val": "npz:v.npz"}, "val", "needs a file to cut the other splits from"),
        ({"dataset": "synthetic:easy", "test": "npz:t.npz"}, "test", "needs a file"),
        ({"train": "synthetic:easy"}, "train", "bad split source"),
        ({"dataset": "npz:a.npz", "n_val": -1}, "n_val", "must be >= 1"),
        ({"n_train": -1}, "n_train", "-1 needs a file dataset"),
        ({"dataset": "npz:a.npz", "n_train": 0}, "n_train", "every instance left"),
        ({"strict": 1}, "strict", "expected true or false"),
        ({"strict": True}, "strict", "applies to npz: and coco: files only"),
        ({"dataset": "coco:a.json@i", "normalized": True}, "normalized", "applies to npz: files only"),
        ({"n_test": "5"}, "n_test", "expected an integer"),
        ({"sead": 1}, "sead", "unknown key"),
        ({"dataset": "coco:"}, "dataset", "bad dataset URI"),
    ],
)
def test_bad_data_configs(d, key, msg):
    with pytest.raises(DataConfigError, match=msg) as e:
        data_config(d)
    assert e.value.key == key and str(e.value).startswith(f"data.{key}: ") and "\n" not in str(e.value)


def test_data_config_defaults():
    assert data_config({}) == {
        "dataset": "synthetic:medium",
        "n_train": 8000,
        "n_val": 1000,
        "n_test": 1000,
        "seed": 0,
    }
    c = data_config({"train": "coco:t.json@i", "val": "coco:v.json@i", "strict": True, "normalized": False})
    assert c == {"dataset": "", "n_train": -1, "n_val": -1, "n_test": 1000, "seed": 0, "train": "coco:t.json@i",
                 "val": "coco:v.json@i", "strict": True}  # fmt: skip


def test_spec_split_sources_resolve_against_the_spec_folder(tmp_path, monkeypatch):
    (tmp_path / "data").mkdir()
    _coco(tmp_path / "data", "train.json", images=range(0, 8))
    _coco(tmp_path / "data", "val.json", images=range(8, 12))
    studies = tmp_path / "studies"
    studies.mkdir()
    spec = quick_spec(data={"train": "coco:../data/train.json@../data/imgs", "val": "coco:../data/val.json@../data/imgs",
                            "n_test": 4, "strict": False})  # fmt: skip
    spec["data"].pop("dataset")
    for k in ("n_train", "n_val"):
        spec["data"].pop(k)
    write_spec(studies / "hand.toml", spec)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # relative paths must not depend on the current directory
    s = load_spec("../studies/hand.toml")
    assert (s.data.dataset, s.data.n_train, s.data.n_val, s.data.n_test) == ("", -1, -1, 4)
    assert (
        s.data.to_dict()["train"] == "coco:../data/train.json@../data/imgs"
        and "base_dir" not in s.data.to_dict()
    )
    d = spec_data(s)
    assert len(d.val) == 3 + 4 + 1 + 2 and len(d.train) + len(d.test) == sum(PER_IMAGE[:8])
    assert not _groups_by_split(d)[0] & _groups_by_split(d)[2]
    spec["data"]["dataset"] = "npz:x.npz"
    write_spec(studies / "bad.toml", spec)
    with pytest.raises(SpecError, match=r"bad.toml: data.train: conflicts with data.dataset"):
        load_spec(studies / "bad.toml")


# --- the CLI: `search train` (run.json) and `search run` on bad data exit 2 with one line, write nothing ----


def _npz_k5(path: Path, n: int = 12) -> None:
    rng = np.random.default_rng(0)
    np.savez(
        path,
        images=rng.integers(0, 256, (n, 64, 64, 3), dtype=np.uint8),
        keypoints=rng.uniform(4, 60, (n, 5, 2)),
    )


RUN = {
    "model": {"backbone": "baseline", "baseline": {"channels": [4, 4, 4]}, "head_hidden": []},
    "train": {"steps": 2, "batch_size": 4, "warmup_steps": 0, "eval_every": 2, "threads": 1, "device": "cpu"},
    "data": {"dataset": "npz:data.npz", "n_train": -1, "n_val": 2, "n_test": 2},
}


def test_search_train_takes_k_from_the_data_and_refuses_a_mismatch(tmp_path):
    cfg_dir, cwd = tmp_path / "cfg", tmp_path / "cwd"
    cfg_dir.mkdir()
    cwd.mkdir()
    _npz_k5(cfg_dir / "data.npz")  # a relative path in run.json resolves against run.json's folder
    (cfg_dir / "run.json").write_text(json.dumps(RUN))
    r = cli(["train", "--config", str(cfg_dir / "run.json"), "--out", "out", "--no-progress"], cwd)
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads((cwd / "out" / "metrics.json").read_text())
    assert out["config"]["model"]["num_keypoints"] == 5 and out["config"]["data"]["dataset"] == "npz:data.npz"
    bad = dict(RUN, model=dict(RUN["model"], num_keypoints=16))
    (cfg_dir / "k16.json").write_text(json.dumps(bad))
    r = cli(["train", "--config", str(cfg_dir / "k16.json"), "--out", "out16"], cwd)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1, r.stderr[-2000:]
    assert "k16.json: model.num_keypoints: 16, but the dataset has 5 joints" in lines[0]
    assert not (cwd / "out16").exists() and not (cwd / "mlruns").exists()


@pytest.mark.parametrize(
    "data, needle",
    [
        (
            {"dataset": "npz:empty.npz", "n_train": -1, "n_val": 8, "n_test": 8},
            "empty.npz: the file has no samples",
        ),
        (
            {"dataset": "npz:data.npz", "n_train": -1, "n_val": 8, "n_test": 8},
            "asked for the rest (n_train=-1) train",
        ),
        ({"dataset": "npz:nan.npz", "n_train": -1, "n_val": 2, "n_test": 2}, "nan.npz: sample 1: joint 2"),
        ({"dataset": "npz:data.npz", "n_train": -1, "n_val": -1, "n_test": 2}, "data.n_val: must be >= 1"),
        (
            {"dataset": "npz:data.npz", "n_val": 2, "n_test": 2, "strict": "yes"},
            "data.strict: expected true or false",
        ),
        (
            {"dataset": "npz:data.npz", "n_train": -1, "n_val": 2, "n_test": 2, "hash": "abc"},
            "data.hash: the dataset now hashes",
        ),
    ],
)
def test_search_train_bad_data_is_one_line(tmp_path, capsys, data, needle):
    _npz_k5(tmp_path / "data.npz")
    np.savez(tmp_path / "empty.npz", images=np.zeros((0, 32, 48, 3), np.uint8), keypoints=np.zeros((0, 5, 2)))
    kp = np.random.default_rng(1).uniform(4, 60, (12, 5, 2))
    kp[1, 2] = np.nan
    np.savez(
        tmp_path / "nan.npz",
        images=np.zeros((12, 64, 64, 3), np.uint8),
        keypoints=kp,
        visibility=np.full((12, 5), 2),
    )
    (tmp_path / "run.json").write_text(json.dumps(dict(RUN, data=data)))
    assert main(["train", "--config", str(tmp_path / "run.json"), "--out", str(tmp_path / "out")]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], lines
    assert not (tmp_path / "out").exists()


def test_run_example_json_and_a_trial_config_are_valid_run_configs():
    from search.cli import _validate_run_config
    from search.spec.space import resolve_config

    path = ROOT / "studies" / "run.example.json"
    cfg = json.loads(path.read_text())
    model, train, data = _validate_run_config(cfg, path)
    assert set(cfg) == {"model", "train", "data"} and data["dataset"].startswith("synthetic:")
    assert train.steps == cfg["train"]["steps"] and model.backbone == cfg["model"]["backbone"]
    trial = resolve_config(
        load_spec(ROOT / "studies" / "quick.toml"), {"arch.num_stages": 1, "arch.embed_dim": 8}
    )
    trial["data"]["hash"] = "0" * 64  # what the objective stores
    _, _, data = _validate_run_config(json.loads(json.dumps(trial)), path)
    assert data["hash"] == "0" * 64 and data["n_train"] == 512


def test_readme_documents_every_run_json_key():
    import dataclasses

    from focalnet import BaselineConfig, FocalNetConfig, ModelConfig
    from search.task.data import DATA_KEYS
    from search.task.train_config import TrainConfig

    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("### One training run") : readme.index("## The search")]
    keys = [
        f.name
        for c in (ModelConfig, FocalNetConfig, BaselineConfig, TrainConfig)
        for f in dataclasses.fields(c)
    ]
    missing = [k for k in (*keys, "hash") if f"`{k}`" not in section]
    missing += [k for k in DATA_KEYS if f"`{k}`" not in readme[readme.index("**`[data]` keys**") :]]
    assert not missing, f"README does not document run.json keys {missing}"


def test_search_run_with_a_malformed_coco_file_writes_nothing(tmp_path):
    (tmp_path / "studies").mkdir()
    uri = _coco(tmp_path / "studies", "ann.json")
    doc = json.loads((tmp_path / "studies" / "ann.json").read_text())
    doc["annotations"][4]["keypoints"][2] = 0.5  # a confidence, not a visibility
    (tmp_path / "studies" / "ann.json").write_text(json.dumps(doc))
    assert uri.startswith(f"coco:{tmp_path}/studies/")
    spec = quick_spec(data={"dataset": "coco:ann.json@imgs", "n_train": -1, "n_val": 4, "n_test": 4})
    spec["study"]["name"] = "badcoco"
    write_spec(tmp_path / "studies" / "bad.toml", spec)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    r = cli(["run", "../studies/bad.toml"], cwd)  # the spec's relative path resolves next to the spec
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1, r.stderr[-2000:]
    assert "studies/ann.json: annotation id=5 (#4): visibility of joint 0 (a) is 0.5" in lines[0]
    assert not (cwd / "mlruns").exists() and not (tmp_path / "studies" / "mlruns").exists()
    shutil.rmtree(tmp_path / "studies" / "imgs")
    r = cli(["run", "../studies/bad.toml"], cwd)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and not (cwd / "mlruns").exists()
