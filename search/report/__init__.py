"""What a study says: trial records read back from storage, the text report, plots, seed check, ablation verdicts.

Modules: `records` (records, Pareto membership, region of interest), `plots` (PNG figures), `seed_check`
(the post-search retraining plan and its statistics), `ablation` (cell means, paired differences,
verdicts), `text` (the terminal report), `publish` (the MLflow parent run's artifacts), `refresh`
(redrawing them beside training), `finished` (the finished-study fast path).
"""

from search._lazy import lazy_exports

__all__ = ["refresh_parent", "report_text", "study_records"]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "refresh_parent": "publish",
        "report_text": "text",
        "study_records": "records",
    },
)
