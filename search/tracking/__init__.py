"""MLflow: one parent run per study, one child run per trial.

Modules: `params` (pure: redaction, flattened params, run names), `store` (where runs go and retried,
batched writes), `runs` (the run lifecycle, `StudyTracker`).
"""

from search._lazy import lazy_exports

__all__ = ["StudyTracker", "default_tracking_uri", "redact_url", "run_name"]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "StudyTracker": "runs",
        "default_tracking_uri": "store",
        "redact_url": "params",
        "run_name": "params",
    },
)
