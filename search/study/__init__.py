"""Running a study: workers, the objective (one trial), the sampler view, the study lifecycle.

Modules: `threads` (torch threads per worker), `samplers` (`make_sampler`, search trials only),
`objective` (spec → config → costs → train → log), `lifecycle` (leases, the parent run's status),
`workers` (create or join the study, run trials in one or more processes).
"""

from search._lazy import lazy_exports

__all__ = ["Objective", "make_sampler", "run_study", "run_worker"]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "Objective": "objective",
        "make_sampler": "samplers",
        "run_study": "workers",
        "run_worker": "workers",
    },
)
