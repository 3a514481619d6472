"""What a trial costs and which trials are worth it: costs before training, Pareto maths, early stopping.

Modules: `costs` (params, FLOPs, latency, constraints), `pareto` (non-dominated sorting, hypervolume,
knee), `stopping` (Pareto-aware asynchronous successive halving and the cost-peer rules), `table`
(learning-curve tables: what trials cost and learn, recorded once, replayed by the simulator and the
warm start).
"""

from search._lazy import lazy_exports

__all__ = [
    "Costs",
    "constraint_values",
    "hypervolume",
    "knee_point",
    "measure_costs",
    "pareto_mask",
    "pruner_for",
    "read_table",
    "stop_at_rung",
]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "Costs": "costs",
        "constraint_values": "costs",
        "hypervolume": "pareto",
        "knee_point": "pareto",
        "measure_costs": "costs",
        "pareto_mask": "pareto",
        "pruner_for": "stopping",
        "read_table": "table",
        "stop_at_rung": "stopping",
    },
)
