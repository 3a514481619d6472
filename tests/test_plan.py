"""`search plan`: a dry run that writes nothing, with a trainable share that matches a direct count."""

from __future__ import annotations

import re
from pathlib import Path

from focalnet import build_model, count_params
from search.spec.parse import parse_spec
from search.tools.plan import _draws, num_keypoints, trainable_share
from tests.harness_utils import cli, toml_dumps
from tests.test_simulate import DATA, tiny_spec


def _two_widths(max_params: int):
    raw = dict(tiny_spec().raw)
    raw["space"] = {"arch.embed_dim": {"choices": [8, 64]}, "arch.focal_levels": {"low": 1, "high": 2}}
    raw["constraints"] = {"max_params": max_params}
    return parse_spec(raw, source="two.toml")


def test_trainable_share_equals_a_direct_count() -> None:
    # every width-8 model is under the limit and every width-64 model over it, so the share is the
    # share of width-8 draws
    spec = _two_widths(10**9)
    sizes = {}
    for ed in (8, 64):
        for fl in (1, 2):
            cfg = dict(_draws(spec, 1)[0]["model"])
            cfg["focalnet"] = {**cfg["focalnet"], "embed_dim": ed, "focal_levels": fl}
            sizes[(ed, fl)] = count_params(build_model(cfg))
    limit = max(v for (ed, _), v in sizes.items() if ed == 8)
    assert limit < min(v for (ed, _), v in sizes.items() if ed == 64)
    spec = _two_widths(limit)
    draws = _draws(spec, 20)
    share, ok = trainable_share(spec, draws)
    direct = sum(d["model"]["focalnet"]["embed_dim"] == 8 for d in draws) / len(draws)
    assert share == direct and 0 < share < 1 and len(ok) == round(direct * 20)


def test_joint_count_comes_from_the_uri() -> None:
    raw = dict(tiny_spec().raw, data={**tiny_spec().raw["data"], "dataset": "synthetic:hard?joints=hand"})
    assert num_keypoints(parse_spec(raw, source="x")) == 21 and num_keypoints(tiny_spec()) == 16


def test_plan_writes_nothing(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    spec = tmp_path / "s.toml"
    spec.write_text(toml_dumps(dict(tiny_spec().raw, study={**tiny_spec().raw["study"], "timeout_min": 5})))
    before = sorted(p for p in tmp_path.rglob("*"))
    r = cli(["plan", str(spec), "--draws", "8"], cwd=tmp_path, env={"FOCALNET_SEARCH_CACHE": str(cache)})
    assert r.returncode == 0, r.stderr
    assert sorted(p for p in tmp_path.rglob("*")) == before  # no storage, no mlruns, no dataset cache
    out = r.stdout
    assert (
        "valid" in out
        and "arch.embed_dim" in out
        and "trainable:" in out
        and "seconds per trained trial" in out
    )
    assert "budget: timeout_min 5" in out
    # no bundled table answers this spec: timed here, and the line says under what load
    assert re.search(r"ms/step x \d+ steps \+ 10% for evaluation, at load \d+\.\d", out), out


def test_plan_reads_seconds_off_a_table_that_answers_the_spec(tmp_path: Path) -> None:
    r = cli(["plan", str(DATA / "tiny_spec.toml"), "--draws", "4"], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "seconds per trained trial" in r.stdout


def test_plan_bad_spec_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[study]\nname = 'x'\nn_trail = 3\n")
    r = cli(["plan", str(bad)], cwd=tmp_path)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "study.n_trail" in r.stderr


def test_plan_names_the_warm_start_or_why_there_is_none(tmp_path: Path) -> None:
    import dataclasses

    from search.tools.plan import plan
    from tests.test_simulate import synthetic_table

    table = synthetic_table(tiny_spec(), tmp_path / "t.jsonl.gz")
    same = dataclasses.replace(tiny_spec(), warm_start=str(table.path))
    raw = dict(same.raw, data={**same.raw["data"], "seed": 1})
    other = dataclasses.replace(parse_spec(raw, source="o.toml"), warm_start=str(table.path))
    warm = [line for line in plan(same, draws=4) if line.startswith("warm start:")]
    assert len(warm) == 1 and "trials from" in warm[0] and "none" not in warm[0]
    warm = [line for line in plan(other, draws=4) if line.startswith("warm start:")]
    assert warm == ["warm start: none: t.jsonl.gz was recorded on other data ([data] of tiny)"]


def test_plan_says_when_trials_stop_early() -> None:
    from search.tools.plan import plan

    steps = tiny_spec().train["steps"]
    es = {"enabled": True, "rungs": [steps // 2], "rule": "behind-baseline", "fraction": 0.7}
    spec = parse_spec(dict(tiny_spec().raw, early_stopping=es), source="s.toml")
    lines = [line for line in plan(spec, draws=4) if line.startswith("early stopping:")]
    assert lines == [
        f"early stopping: behind-baseline at step {steps // 2} (fraction 0.7 of the reference baseline's "
        f"val); a trial stopped at step {steps // 2} costs ~50% of a trained one, so more trials start"
    ]
    off = parse_spec(dict(tiny_spec().raw, early_stopping={**es, "enabled": False}), source="s.toml")
    assert not [line for line in plan(off, draws=4) if line.startswith("early stopping:")]
