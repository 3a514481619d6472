"""describe() and the ``python -m focalnet describe`` CLI."""

import json

import pytest

from focalnet import FocalNetConfig, ModelConfig, build_model, count_params, describe
from focalnet.__main__ import main
from focalnet.describe import receptive_fields


def test_receptive_fields():
    assert receptive_fields([3, 5, 7], "sequential") == [3, 7, 13]
    assert receptive_fields([3, 5, 7], "independent") == [3, 5, 7]


def test_describe_table():
    text = describe(FocalNetConfig(embed_dim=16, depths=(1, 2, 1), focal_levels=3, contexts="independent"))
    assert "stage 2" in text and "RF ind*" in text
    assert "3,7,13,all" in text and "3,5,7,all" in text
    assert "1 MAC = 2 FLOPs" in text and "baseline (8, 16, 32)" in text
    assert "16->8" in text and "64->16" in text


def test_describe_accepts_model_config_dict():
    text = describe({"backbone": "baseline", "num_keypoints": 5, "focalnet": {"embed_dim": 8, "depths": [1]}})
    assert "K=5" in text and "embed_dim 8" in text


def test_cli_describe_flags(capsys):
    rc = main(["describe", "--embed-dim", "8", "--depths", "1", "1", "2", "--focal-levels", "2",
               "--contexts", "independent", "--overlapped-embed", "--patch-size", "8"])  # fmt: skip
    out = capsys.readouterr().out
    assert rc == 0
    assert "overlapped embed" in out and "depths (1, 1, 2)" in out and "15x15/s8/p4" in out


def test_describe_lists_the_head():
    text = describe(ModelConfig(focalnet=FocalNetConfig(embed_dim=8, depths=(1, 1, 1))))
    assert "head pool" in text and "stage 2" in text and "global average pool -> MLP (256,)" in text
    cfg = {"focalnet": {"embed_dim": 8, "depths": [1, 1, 1]}, "head": {"kind": "heatmap", "stage": 0},
           "coord_channels": True, "num_keypoints": 5}  # fmt: skip
    text = describe(cfg)
    row = next(line for line in text.splitlines() if line.startswith("head heatmap"))
    assert "16" in row and "8->5x2" in row  # reads the 16x16 stage-0 map
    assert "stages 1-2 top-down" in text and "5 heatmaps -> softmax" in text and "3+2xy->8" in text
    model = build_model(cfg)
    assert f"{count_params(model):,} params" in text and f"{count_params(model.head):,}" in row
    assert "baseline + flatten head (256,)" in text  # the comparison is the team's model


def test_cli_describe_head_flags(capsys):
    assert main(["describe", "--embed-dim", "8", "--depths", "1", "1", "--head", "simcc", "--head-stage", "0",
                 "--head-hidden", "16", "--coord-channels"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert (
        "head simcc" in out and "simcc on stage 0" in out and "1x1 convs (16,)" in out and "coordinate" in out
    )
    assert main(["describe", "--depths", "1", "1", "--head-stage", "2"]) == 2
    assert "head.stage" in capsys.readouterr().err


def test_cli_describe_config_file(tmp_path, capsys):
    path = tmp_path / "cfg.json"
    path.write_text(json.dumps(ModelConfig(focalnet=FocalNetConfig(embed_dim=8, depths=(1, 1))).to_dict()))
    assert main(["describe", "--config", str(path), "--focal-windows", "5"]) == 0
    assert "focal_windows 5" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["describe", "--patch-size", "5"], "focalnet.patch_size:"),
        (["describe", "--patch-size", "16", "--depths", "2", "2", "2", "2"], "focalnet.depths:"),
        (["describe", "--focal-windows", "4"], "focalnet.focal_windows:"),
        (["describe", "--config", "/nonexistent/cfg.json"], "config:"),
    ],
)
def test_cli_bad_input_exits_2_with_one_line(argv, needle, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert needle in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_cli_argparse_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as info:
        main(["describe", "--patch-size", "x"])
    assert info.value.code == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
