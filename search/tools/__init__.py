"""Tools around a study: learning-curve tables, the simulator, the plan, reproduce, modulator maps, the UI.

Modules: `table` (the table format), `simulate` (studies replayed against a table), `reproduce`,
`modulators` (`inspect`), `ui` (the MLflow server).
"""

from search._lazy import lazy_exports

__all__ = ["read_table", "reproduce", "simulate"]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "read_table": "table",
        "reproduce": "reproduce",
        "simulate": "simulate",
    },
)
