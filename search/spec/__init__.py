"""Study specs: one TOML file → a validated, frozen `StudySpec`.

Modules, bottom up: `schema` (the dataclasses, constants and `SpecError`), `space` (sample a trial's
parameters, resolve them into a full config, check a space), `grid` (an ablation's factor grid → fixed
trials), `parse` (TOML → `StudySpec`, one parser a section).
"""

from search._lazy import lazy_exports

__all__ = [
    "Dimension",
    "SpecError",
    "StudySpec",
    "check_space",
    "fixed_trials",
    "load_spec",
    "parse_spec",
    "resolve_config",
    "sample_params",
]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "Dimension": "schema",
        "SpecError": "schema",
        "StudySpec": "schema",
        "check_space": "space",
        "fixed_trials": "space",
        "load_spec": "parse",
        "parse_spec": "parse",
        "resolve_config": "space",
        "sample_params": "space",
    },
)
