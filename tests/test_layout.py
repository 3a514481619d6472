"""The house rules: the task package knows nothing of Optuna/MLflow, no two modules import each other,
the sub-packages of `search` form layers that import only downward, no function runs over 120 lines, and
the legacy head keys are read in one place."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TASK_MODULES = sorted(
    f"search.task.{p.stem}" for p in (ROOT / "search" / "task").glob("*.py") if p.stem != "__init__"
)


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, package: str) -> set[str]:
    """Every `search.*`/`focalnet.*` module a file imports, at top level or inside functions."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)
    return {m for m in out if m.split(".")[0] == package}


def _graph(package: str) -> dict[str, set[str]]:
    files = {_module_name(p): p for p in (ROOT / package).rglob("*.py")}
    return {
        name: {m for m in _imports(path, package) if m in files and m != name} for name, path in files.items()
    }


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


@pytest.mark.parametrize("package", ["search", "focalnet"])
def test_no_import_circles(package: str) -> None:
    graph = _graph(package)
    assert len(graph) > 5
    assert _cycle(graph) is None, f"import circle: {' -> '.join(_cycle(graph) or [])}"


def test_cycle_finder_finds_a_circle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_task_package_never_imports_the_search_machinery() -> None:
    graph = _graph("search")
    for name in TASK_MODULES:
        outside = {m for m in graph[name] if not m.startswith("search.task")}
        assert not outside, f"{name} imports {sorted(outside)}"


#: The layers of `search`, bottom up: a module may import its own package and the packages below it.
LAYERS = ("task", "spec", "efficiency", "tracking", "storage", "report", "study", "tools")
#: Modules at the top of `search/` (at most 12): the CLI on top, the lazy-export helper at the bottom.
TOP = {"search": -1, "search._lazy": -1, "search.__main__": len(LAYERS), "search.cli": len(LAYERS)}


def _layer(module: str) -> int:
    if module in TOP:
        return TOP[module]
    return LAYERS.index(module.split(".")[1])


def _upward_imports(graph: dict[str, set[str]]) -> list[str]:
    return sorted(
        f"{name} -> {dep}" for name, deps in graph.items() for dep in deps if _layer(dep) > _layer(name)
    )


def test_packages_import_only_downward() -> None:
    graph = _graph("search")
    assert _upward_imports(graph) == []
    packages = {name.split(".")[1] for name in graph if name not in TOP}
    assert packages == set(LAYERS), f"a package is missing from LAYERS: {packages ^ set(LAYERS)}"
    assert len([p for p in (ROOT / "search").glob("*.py")]) <= 12


def test_layer_check_finds_an_upward_import() -> None:
    graph = {"search.spec.space": {"search.study.workers"}, "search.study.workers": {"search.spec.space"}}
    assert _upward_imports(graph) == ["search.spec.space -> search.study.workers"]


def test_code_imports_names_from_their_defining_module() -> None:
    """`from search.spec import load_spec` is for users; inside `search/` a lazy package re-export would hide
    the real edge from the layer check, so code imports from the module that defines the name."""
    packages = {f"search.{p}" for p in LAYERS}
    offenders = []
    for path in (ROOT / "search").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module in packages and node.level == 0:
                modules = {p.stem for p in (ROOT / node.module.replace(".", "/")).glob("*.py")}
                offenders += [
                    f"{path.name}: {node.module}.{a.name}" for a in node.names if a.name not in modules
                ]
    assert offenders == []


#: What reads specs and reports imports no torch (~1.3 s a process): `report`, `list` and a bad spec stay quick.
TORCH_FREE = (
    "focalnet",
    "focalnet.config",
    "search.cli",
    "search.spec.parse",
    "search.report.text",
    "search.report.publish",
    "search.storage.connect",
)


def test_spec_and_report_modules_import_without_torch() -> None:
    code = (
        "import importlib, sys\n"
        f"for name in {TORCH_FREE!r}:\n"
        "    importlib.import_module(name)\n"
        "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.')))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip() == "[]"


def test_focalnet_names_load_on_first_use() -> None:
    import focalnet

    assert set(focalnet.__all__) <= set(dir(focalnet))
    assert all(callable(getattr(focalnet, name)) for name in focalnet.__all__)
    with pytest.raises(AttributeError, match="no attribute 'not_a_name'"):
        focalnet.not_a_name  # noqa: B018


def test_task_modules_import_without_optuna_or_mlflow() -> None:
    # A None entry in sys.modules makes `import optuna` raise ImportError, as if it were not installed.
    code = (
        "import sys\n"
        "for blocked in ('optuna', 'mlflow'):\n"
        "    sys.modules[blocked] = None\n"
        "import importlib\n"
        f"for name in {TASK_MODULES!r}:\n"
        "    importlib.import_module(name)\n"
        "print('ok', len(sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("ok")
    assert len(TASK_MODULES) >= 7


def test_cli_help_for_every_command() -> None:
    from search.cli import build_parser

    parser = build_parser()
    commands = sorted(parser._subparsers._group_actions[0].choices)  # argparse keeps them here
    assert {"run", "report", "reproduce", "list", "train", "inspect", "ui", "worker"} <= set(commands)
    for command in ["", *commands]:
        args = [command, "--help"] if command else ["--help"]
        out = subprocess.run(
            [sys.executable, "-m", "search", *args], cwd=ROOT, capture_output=True, text=True, timeout=120
        )
        assert out.returncode == 0, out.stderr
        assert "usage:" in out.stdout


def _third_party_imports() -> dict[str, set[str]]:
    """Top-level third-party modules imported anywhere in focalnet/, search/, bench/, tests/ → importing dirs."""
    local = {"focalnet", "search", "tests", "bench"} | {p.stem for p in (ROOT / "tests").glob("*.py")}
    out: dict[str, set[str]] = {}
    for folder in ("focalnet", "search", "bench", "tests"):
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                names = []
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    names = [node.module]
                for name in names:
                    top = name.split(".")[0]
                    if top not in sys.stdlib_module_names and top not in local:
                        out.setdefault(top, set()).add(folder)
    return out


def test_every_imported_package_is_declared() -> None:
    import importlib.metadata as md
    import re
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {
        re.split(r"[<>=!~\[; ]", req, maxsplit=1)[0].lower().replace("_", "-")
        for req in [*project["dependencies"], *(r for reqs in project["optional-dependencies"].values() for r in reqs)]
    }  # fmt: skip
    dists = md.packages_distributions()
    imports = _third_party_imports()
    imports.pop("timm", None)  # bench/bench_timm.py installs it into a throw-away folder: never a dependency
    imports.pop("moocore", None)  # bench/bench_pareto.py compares with it only when installed by hand
    assert {"torch", "optuna", "scipy"} <= set(imports)
    missing = {
        module: sorted(folders)
        for module, folders in imports.items()
        if not {d.lower().replace("_", "-") for d in dists.get(module, [module])} & declared
    }
    assert not missing, f"imported but not declared in pyproject.toml: {missing}"


#: Short, single-purpose functions (issue 21): no function or method in focalnet/ or search/ is longer.
MAX_FUNCTION_LINES = 120


def _long_functions(limit: int, *folders: str) -> list[str]:
    """``"path: name (N lines)"`` for every function longer than ``limit`` lines (``def`` to its last line)."""
    out = []
    for path in sorted(p for folder in folders for p in (ROOT / folder).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                n = node.end_lineno - node.lineno + 1
                if n > limit:
                    out.append(f"{path.relative_to(ROOT)}: {node.name} ({n} lines)")
    return out


def test_no_function_over_120_lines() -> None:
    long = _long_functions(MAX_FUNCTION_LINES, "focalnet", "search")
    assert long == [], f"split these into named steps: {long}"


#: The legacy top-level head keys (``head_hidden`` / ``head_dropout``, before the head had its own config)
#: are read in one place: `focalnet.config.fold_legacy_head_keys`, next to `LEGACY_HEAD_KEYS`.
LEGACY_HEAD_KEY_RE = re.compile(r"\bhead_(hidden|dropout)\b")
LEGACY_HEAD_KEY_HOME = "focalnet/config.py"
#: `python -m focalnet describe --head-hidden N` sets head.hidden: argparse names its dest after the flag.
LEGACY_HEAD_KEY_ALLOWED = {("focalnet/__main__.py", "head_hidden")}


def _legacy_head_key_uses(source: str, rel: str) -> list[str]:
    """String constants (docstrings aside) in ``source`` that spell a legacy head key, as ``"rel:line: text"``."""
    tree = ast.parse(source)
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    constants = sorted(
        (node for node in ast.walk(tree) if isinstance(node, ast.Constant)),
        key=lambda n: (n.lineno, n.col_offset),
    )
    return [
        f"{rel}:{node.lineno}: {node.value!r}"
        for node in constants
        if isinstance(node.value, str)
        and id(node) not in docstrings
        and LEGACY_HEAD_KEY_RE.search(node.value)
        and (rel, node.value) not in LEGACY_HEAD_KEY_ALLOWED
    ]


def test_legacy_head_keys_have_one_home() -> None:
    uses = [
        use
        for folder in ("focalnet", "search")
        for path in sorted((ROOT / folder).rglob("*.py"))
        if (rel := path.relative_to(ROOT).as_posix()) != LEGACY_HEAD_KEY_HOME
        for use in _legacy_head_key_uses(path.read_text(encoding="utf-8"), rel)
    ]
    assert uses == [], f"use focalnet.config.fold_legacy_head_keys / LEGACY_HEAD_KEYS instead: {uses}"


def test_legacy_head_key_check_finds_a_use() -> None:
    source = '"""Reads head_hidden."""\nx = d["head_dropout"]\ny = f"model.head_hidden[{i}]"\n'
    assert _legacy_head_key_uses(source, "m.py") == ["m.py:2: 'head_dropout'", "m.py:3: 'model.head_hidden['"]
