"""`python -m search ui`: a light MLflow server, the direct link to the study's runs table, and no process
left behind after SIGTERM or Ctrl-C (a real `mlflow server`; tens of seconds on 2 busy cores)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from conftest import free_port, wait_for
from harness_utils import ROOT

pytestmark = pytest.mark.slow


def _descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            ppid = int(stat.read_text().rpartition(")")[2].split()[1])
            children.setdefault(ppid, []).append(int(stat.parent.name))
    out, todo = set(), [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.add(c)
            todo.append(c)
    return out


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_ui_prints_runs_link_and_leaves_no_process(tmp_path: Path, sig: int) -> None:
    from search.tracking.runs import StudyTracker

    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    (tmp_path / "mlruns").mkdir()
    tracker = StudyTracker(tracking_uri=uri, study_name="ui-study")
    tracker.parent_run_id(spec={}, params={}, tags={})
    port = free_port()
    out = open(tmp_path / "ui.out", "w")  # noqa: SIM115 (closed below)
    proc = subprocess.Popen(
        [sys.executable, "-m", "search", "ui", "ui-study", "--tracking-uri", uri, "--port", str(port)],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=out,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        link = f"http://127.0.0.1:{port}/#/experiments/{tracker.experiment_id}/runs?workflowType=machine_learning"
        wait_for(lambda: link in (tmp_path / "ui.out").read_text() or proc.poll() is not None, timeout=300,
                 what="the UI's runs link")  # fmt: skip
        assert proc.poll() is None, (tmp_path / "ui.out").read_text()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=10) as r:
            assert r.status == 200
        tree = _descendants(proc.pid)
        assert tree, "the server runs as a child process"
        proc.send_signal(sig)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        out.close()
    left = [p for p in tree if _alive(p)]
    for p in left:  # do not leak them into the rest of the test session
        with contextlib.suppress(ProcessLookupError):
            os.kill(p, signal.SIGKILL)
    assert left == [], f"processes left after {signal.Signals(sig).name}: {left}"
    text = (tmp_path / "ui.out").read_text()
    assert "Traceback" not in text and len(text.strip().splitlines()) <= 4, text
