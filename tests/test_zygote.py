"""The test zygote (`tests/zygote.py`): a forked command is indistinguishable from a fresh interpreter."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from harness_utils import ROOT
from zygote import run_search, spawn


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), **extra}


def test_a_forked_command_answers_as_a_fresh_interpreter(tmp_path: Path) -> None:
    (tmp_path / "bad.toml").write_text('[study]\nname = "x"\nsampler = "nope"\n')
    for args in (["run", "bad.toml"], ["run", "missing.toml"], ["list"], ["--help"]):
        fresh = subprocess.run(
            [sys.executable, "-m", "search", *args], cwd=tmp_path, env=_env(), capture_output=True, text=True
        )
        forked = run_search(args, tmp_path, _env(), timeout=120)
        assert (forked.returncode, forked.stdout, forked.stderr) == (
            fresh.returncode,
            fresh.stdout,
            fresh.stderr,
        )
    assert fresh.returncode == 0 and "usage" in fresh.stdout  # the last pair really ran the CLI
    bad = run_search(["run", "bad.toml"], tmp_path, _env(), timeout=120)
    assert bad.returncode == 2 and "sampler" in bad.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.toml"]  # neither wrote anything


def test_a_child_gets_its_own_directory_environment_arguments_and_exit(tmp_path: Path) -> None:
    code = (
        "import os, sys, atexit\n"
        "atexit.register(lambda: print('atexit ran'))\n"
        "print(os.getcwd(), os.environ['ZYGOTE_TEST'], os.getpid(), *sys.argv[1:], sep='\\n')\n"
        "print('to stderr', file=sys.stderr)\n"
        "sys.exit(3)\n"
    )
    child = spawn(["a", "b"], tmp_path, _env(ZYGOTE_TEST="here"), code=code)
    out, err = child.communicate(timeout=60)
    assert child.returncode == 3
    assert out.splitlines() == [str(tmp_path), "here", str(child.pid), "a", "b", "atexit ran"]
    assert child.pid != os.getpid() and err == "to stderr\n"


def test_a_child_past_its_timeout_is_killed(tmp_path: Path) -> None:
    child = spawn([], tmp_path, _env(), code="import time; time.sleep(600)")
    with pytest.raises(subprocess.TimeoutExpired):
        child.communicate(timeout=0.5)
    assert child.returncode == -9  # SIGKILL, reaped by the zygote
    with pytest.raises(ProcessLookupError):
        os.kill(child.pid, 0)
