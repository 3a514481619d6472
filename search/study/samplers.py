"""The study's sampler, which learns from search trials only.

A study also holds fixed trials (the baseline, variants, ablation cells, verify re-runs). They carry
no search parameters, only ``fixed_overrides``. Optuna's NSGA-II and GP samplers model the
*intersection* of the parameters every finished trial has; one baseline trial makes that set empty
and both fall back to independent random sampling for every parameter. TPE (``group=True``) survives,
but still counts the fixed trials among its start-up trials and in its below/above split.

``SearchTrialsSampler`` wraps any sampler and hands it a view of the study in which the fixed trials
do not exist. Everything else (storage, directions, system attributes the sampler writes) is the real
study's, so the wrapped sampler is still storage-shared and asynchronous.
"""

from __future__ import annotations

import warnings
from collections.abc import Container, Sequence
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution
from optuna.samplers._lazy_random_state import LazyRandomState
from optuna.trial import FrozenTrial, TrialState

__all__ = ["SearchTrialsSampler", "is_search_trial", "make_sampler"]


def is_search_trial(trial: FrozenTrial) -> bool:
    """True for a trial the sampler proposed (role ``search``, or not yet tagged)."""
    return trial.user_attrs.get("role", "search") == "search"


class _SearchOnlyStudy:
    """The study, minus its fixed trials, as far as a sampler can tell."""

    def __init__(self, study: optuna.Study) -> None:
        self._study = study

    def __getattr__(self, name: str) -> Any:
        return getattr(self._study, name)

    def _get_trials(
        self,
        deepcopy: bool = True,
        states: Container[TrialState] | None = None,
        use_cache: bool = False,
    ) -> list[FrozenTrial]:
        trials = self._study._get_trials(deepcopy=deepcopy, states=states, use_cache=use_cache)
        return [t for t in trials if is_search_trial(t)]

    def get_trials(
        self, deepcopy: bool = True, states: Container[TrialState] | None = None
    ) -> list[FrozenTrial]:
        return self._get_trials(deepcopy=deepcopy, states=states)

    @property
    def trials(self) -> list[FrozenTrial]:
        return self.get_trials()


class SearchTrialsSampler(optuna.samplers.BaseSampler):
    """Wrap ``sampler`` so that it never sees the study's fixed trials.

    With a ``seed``, the sampler's random state is re-seeded before every trial from (seed, trial number).
    Several workers build the same seeded sampler; without this each would draw the same sequence, so the
    i-th draw of every worker repeated the others' (a live study with two workers trained one architecture
    twice). Now a trial's draw depends on its number only, whichever worker runs it.

    Args:
        sampler: the sampler that does the work (TPE, NSGA-II, GP, random ...).
        seed: the study's sampler seed (None: leave the sampler's own random state alone).
    """

    def __init__(self, sampler: optuna.samplers.BaseSampler, *, seed: int | None = None) -> None:
        self.sampler = sampler
        self.seed = seed

    def __str__(self) -> str:
        return f"{type(self).__name__}({self.sampler})"

    def infer_relative_search_space(
        self, study: optuna.Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        return self.sampler.infer_relative_search_space(_SearchOnlyStudy(study), trial)

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        return self.sampler.sample_relative(_SearchOnlyStudy(study), trial, search_space)

    def sample_independent(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        return self.sampler.sample_independent(_SearchOnlyStudy(study), trial, param_name, param_distribution)

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        if self.seed is not None:
            _reseed(self.sampler, self.seed, trial.number)
        self.sampler.before_trial(_SearchOnlyStudy(study), trial)

    def after_trial(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        state: TrialState,
        values: Sequence[float] | None,
    ) -> None:
        self.sampler.after_trial(_SearchOnlyStudy(study), trial, state, values)

    def reseed_rng(self) -> None:
        self.sampler.reseed_rng()


def _reseed(sampler: Any, seed: int, number: int) -> None:
    """Give ``sampler`` (and the random sampler TPE and NSGA-II keep inside) a random state derived from
    (seed, trial number). Optuna keeps it in ``_rng``, a ``LazyRandomState``: private, so a sampler
    without one is left as it is."""
    state = int(np.random.SeedSequence([seed, number]).generate_state(1)[0])
    for obj in (sampler, getattr(sampler, "_random_sampler", None)):
        if isinstance(getattr(obj, "_rng", None), LazyRandomState):
            obj._rng = LazyRandomState(state)


def make_sampler(spec: Any) -> optuna.samplers.BaseSampler:
    """The spec's sampler, wrapped so it learns from search trials only (:class:`SearchTrialsSampler`)."""
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    seed = spec.seed
    budget = spec.n_trials or 20
    if spec.sampler == "tpe":
        inner = optuna.samplers.TPESampler(
            seed=seed, multivariate=True, group=True, n_startup_trials=max(4, min(10, budget // 3))
        )
    elif spec.sampler == "nsga2":
        # Optuna's default population (50) is larger than most budgets here, and a study that never
        # leaves generation 0 is random search; a quarter of the budget gives it a few generations.
        inner = optuna.samplers.NSGAIISampler(seed=seed, population_size=max(6, min(50, budget // 4)))
    elif spec.sampler == "gp":
        inner = optuna.samplers.GPSampler(seed=seed)
    else:
        inner = optuna.samplers.RandomSampler(seed=seed)
    return SearchTrialsSampler(inner, seed=seed)
