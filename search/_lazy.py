"""Lazy re-exports for the sub-packages' ``__init__`` (PEP 562).

A package's public names are importable from the package (``from search.spec import load_spec``) without
importing every module at ``import search.spec``: the finished-study fast path (`search.report.finished`)
must answer without loading torch or MLflow, which some of these modules pull in. Code inside ``search/``
imports from the defining module, so the import graph that ``tests/test_layout.py`` checks is the real one.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_exports(package: str, names: dict[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package``, exporting ``name`` from ``package.<names[name]>``."""

    def __getattr__(name: str) -> Any:
        module = names.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{module}"), name)

    def __dir__() -> list[str]:
        return sorted(names)

    return __getattr__, __dir__
