"""bench/record_curves.py: a tiny recording, resumed, refused when it would mix runs."""

from __future__ import annotations

import importlib.util
import itertools
from pathlib import Path

import pytest

from search.efficiency.table import read_table, write_table

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "tests" / "data" / "tiny_spec.toml"


def _recorder():
    spec = importlib.util.spec_from_file_location("record_curves", ROOT / "bench" / "record_curves.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_record_resume_and_refuse(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rec = _recorder()
    out = tmp_path / "t.jsonl.gz"
    args = ["--spec", str(SPEC), "--out", str(out), "--threads", "1", "--steps", "20", "--eval-every", "10"]
    assert rec.main([*args, "--n", "1"]) == 0
    first = read_table(out)
    assert [r["index"] for r in first.rows] == [0] and first.rows[0]["role"] == "baseline"
    base = first.rows[0]
    assert base["trained"] and base["steps"] == [10, 20] and base["costs"]["latency_ratio"] == 1.0
    assert set(base["test"]) >= {"pck_0.05", "pck_0.1", "nme"} and len(base["test"]["pck_0.1"]) == 2
    assert base["train_s_per_step"] > 0 and base["eval_s"] > 0 and base["cost_s"] >= 0
    h = first.header
    assert h["data_hash"] and h["spec_hash"] and h["machine"]["threads"] == 1 and h["code_version"]
    assert "[1/1 trained" in capsys.readouterr().out

    # Resume: the baseline row is kept byte for byte, the sampled rows continue the sequence.
    assert rec.main([*args, "--n", "3"]) == 0
    again = read_table(out)
    assert again.rows[0] == base and again.rows[0]["index"] == 0
    trained = [r for r in again.rows if r["trained"]]
    assert len(trained) == 3 and [r["index"] for r in again.rows] == list(range(len(again.rows)))
    assert all(r["role"] == "search" and r["params"] for r in again.rows[1:])
    assert all(not r["trained"] and not r["feasible"] for r in again.rows if not r["trained"])
    assert len(again.header["sessions"]) == 2
    # The same points, in the same order, as a fresh plan draws (the sampler sequence is fixed).
    plan = itertools.islice(rec.plan(rec.load(str(SPEC), 20), rec.SAMPLE_SEED), len(again.rows))
    assert [p for _, _, _, p, _ in plan] == [r["params"] for r in again.rows]

    # Another thread count would mix curves of different float sums: refused, table untouched.
    before = out.read_bytes()
    assert rec.main([*args[:4], "--threads", "2", *args[6:], "--n", "4"]) == 2
    assert "threads=1" in capsys.readouterr().err and out.read_bytes() == before

    # Code that resolves the same point into another config (a new model field) must not append to it.
    rows = [dict(r) for r in again.rows]
    rows[0]["config"] = {**rows[0]["config"], "train": {**rows[0]["config"]["train"], "lr": 0.5}}
    write_table(out, again.header, rows)
    before = out.read_bytes()
    assert rec.main([*args, "--n", "4"]) == 2
    assert "row 0 was recorded with another config" in capsys.readouterr().err and out.read_bytes() == before


def test_shards_merge_into_the_unsharded_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rec = _recorder()
    args = ["--spec", str(SPEC), "--threads", "1", "--steps", "10", "--eval-every", "10", "--n", "4"]
    a, b, merged = tmp_path / "a.jsonl", tmp_path / "b.jsonl", tmp_path / "m.jsonl.gz"
    assert rec.main([*args, "--shard", "0/2", "--out", str(a)]) == 0
    assert rec.main([*args, "--shard", "1/2", "--out", str(b)]) == 0
    rows_a, rows_b = read_table(a).rows, read_table(b).rows
    assert {r["index"] % 2 for r in rows_a} == {0} and {r["index"] % 2 for r in rows_b} == {1}
    assert sum(r["trained"] for r in rows_a) == 2 and sum(r["trained"] for r in rows_b) == 2
    assert rec.main(["--merge", str(a), str(b), "--out", str(merged)]) == 0
    table = read_table(merged)
    assert [r["index"] for r in table.rows] == sorted(r["index"] for r in rows_a + rows_b)
    assert sum(r["trained"] for r in table.rows) == 4 and len(table.header["sessions"]) == 2
    # The shards drew the same points an unsharded plan draws at those indices.
    plan = dict(
        (i, p)
        for i, _, _, p, _ in itertools.islice(rec.plan(rec.load(str(SPEC), 10), 0), len(table.rows) + 2)
    )
    assert all(plan[r["index"]] == r["params"] for r in table.rows)

    # Another stopping rule or study budget is the same recording (rows do not depend on them).
    from search.efficiency.table import measured_parts

    spec = read_table(a).header["spec"]
    assert measured_parts({**spec, "early_stopping": {"rule": "mo-asha"}, "n_trials": 3}) == measured_parts(
        spec
    )
    assert measured_parts({**spec, "space": {}}) != measured_parts(spec)

    # Tables of different recordings are refused, the output untouched; a bad --shard is one line.
    other = tmp_path / "o.jsonl"
    assert rec.main([*args[:6], "--eval-every", "5", "--n", "1", "--out", str(other)]) == 0
    before = merged.read_bytes()
    assert rec.main(["--merge", str(a), str(other), "--out", str(merged)]) == 2
    assert "eval_every" in capsys.readouterr().err and merged.read_bytes() == before
    assert rec.main([*args, "--shard", "2/2", "--out", str(a)]) == 2
    assert "--shard: expected K/W" in capsys.readouterr().err
