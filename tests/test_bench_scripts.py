"""Every bench script still imports what it names from the project, inside functions included.

The bench scripts run by hand, not in CI, so a renamed function would otherwise break one unseen until
someone runs it (as happened to bench/bench_overhead.py). This reads each script's imports from its syntax
tree and resolves every project name (``focalnet``, ``search``, ``tests``) without running the script.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted((ROOT / "bench").glob("*.py"))
PROJECT = ("focalnet", "search", "tests")


def _project_imports(path: Path) -> list[tuple[str, str | None]]:
    """``(module, name)`` for every ``from M import name`` and ``(module, None)`` for every ``import M``
    of a project module anywhere in the file."""
    out: list[tuple[str, str | None]] = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith(PROJECT):
            out += [(node.module, alias.name) for alias in node.names]
        elif isinstance(node, ast.Import):
            out += [(alias.name, None) for alias in node.names if alias.name.startswith(PROJECT)]
    return out


def test_there_are_bench_scripts_that_import_the_project() -> None:
    assert len(SCRIPTS) >= 10
    assert sum(bool(_project_imports(p)) for p in SCRIPTS) >= 10


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: p.name)
def test_bench_script_imports_resolve(path: Path) -> None:
    for module, name in _project_imports(path):
        mod = importlib.import_module(module)
        if name is not None:
            assert hasattr(mod, name) or importlib.util.find_spec(f"{module}.{name}") is not None, (
                f"{path.name}: from {module} import {name}: no such name"
            )
