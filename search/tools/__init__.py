"""Tools around a study: the simulator, the plan, reproduce, modulator maps, the UI.

Modules: `simulate` (studies replayed against a table), `reproduce`,
`modulators` (`inspect`), `ui` (the MLflow server).
"""

from search._lazy import lazy_exports

__all__ = ["reproduce", "simulate"]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "reproduce": "reproduce",
        "simulate": "simulate",
    },
)
