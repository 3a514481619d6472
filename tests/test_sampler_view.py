"""The sampler learns from search trials only: fixed trials (baseline, variants ...) stay out of its view."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import optuna
import pytest
from optuna.distributions import FloatDistribution, IntDistribution
from optuna.trial import create_trial

from search.spec.parse import load_spec
from search.study.samplers import SearchTrialsSampler, make_sampler

SPACE = {"x": FloatDistribution(0.0, 1.0), "depth": IntDistribution(1, 4)}


def _study_with_baseline(n_search: int) -> optuna.Study:
    study = optuna.create_study(directions=["maximize", "minimize"])
    study.add_trial(create_trial(values=[0.7, 1.0], user_attrs={"role": "baseline"}))
    for i in range(n_search):
        params = {"x": i / n_search, "depth": 1 + i % 4}
        study.add_trial(
            create_trial(
                params=params,
                distributions=SPACE,
                values=[params["x"], params["depth"]],
                user_attrs={"role": "search"},
            )  # fmt: skip
        )
    return study


def test_nsga2_models_the_search_parameters_despite_a_baseline() -> None:
    study = _study_with_baseline(8)
    trial = study.ask()
    bare = optuna.samplers.NSGAIISampler(seed=0)
    wrapped = SearchTrialsSampler(optuna.samplers.NSGAIISampler(seed=0))
    # The baseline has no parameters, so the intersection Optuna models is empty without the view.
    assert bare.infer_relative_search_space(study, study._storage.get_trial(trial._trial_id)) == {}
    space = wrapped.infer_relative_search_space(study, study._storage.get_trial(trial._trial_id))
    assert set(space) == {"x", "depth"}


def test_the_view_hides_every_fixed_role_and_keeps_untagged_trials() -> None:
    study = _study_with_baseline(3)
    for role in ("variant", "cell", "verify"):
        study.add_trial(create_trial(values=[0.5, 2.0], user_attrs={"role": role}))
    study.add_trial(create_trial(params={"x": 0.5, "depth": 2}, distributions=SPACE, values=[0.5, 2.0]))
    seen: list[list[int]] = []

    class Spy(optuna.samplers.RandomSampler):
        def infer_relative_search_space(self, study, trial):  # type: ignore[no-untyped-def]
            seen.append([t.number for t in study._get_trials(deepcopy=False)])
            seen.append([t.number for t in study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))])
            return {}

    study.sampler = SearchTrialsSampler(Spy(seed=0))
    study.ask().suggest_float("x", 0.0, 1.0)  # relative sampling happens at the first suggest
    assert seen[0] == [1, 2, 3, 7, 8]  # 3 search, 1 untagged, the asked trial; not 0 and 4-6
    assert seen[1] == [1, 2, 3, 7]


@pytest.mark.parametrize("sampler", ["tpe", "nsga2", "gp", "random"])
def test_every_spec_sampler_is_wrapped_and_runs_a_study_with_a_baseline(sampler: str) -> None:
    spec = dataclasses.replace(load_spec("studies/example.toml"), sampler=sampler, n_trials=12)
    made = make_sampler(spec)
    assert isinstance(made, SearchTrialsSampler)
    study = optuna.create_study(sampler=made, directions=["maximize", "minimize"])
    study.add_trial(create_trial(values=[0.7, 1.0], user_attrs={"role": "baseline"}))

    def objective(trial: optuna.Trial) -> tuple[float, float]:
        x = trial.suggest_float("x", 0.0, 1.0)
        depth = trial.suggest_int("depth", 1, 4)
        return x, float(depth)

    study.optimize(objective, n_trials=12)
    search = [t for t in study.trials if "x" in t.params]
    assert len(search) == 12 and all(t.state.is_finished() for t in search)
    if sampler == "nsga2":
        # 12 trials with a population of 6: the last ones are children of generation 0, not random draws.
        generations = {t.system_attrs.get("NSGAIISampler:generation") for t in search}
        assert 1 in generations


@pytest.mark.parametrize("sampler", ["random", "tpe"])
def test_two_workers_with_the_same_seed_do_not_repeat_each_other(sampler: str, tmp_path) -> None:
    """Every worker builds the spec's seeded sampler; a trial's draw must depend on its number, not on
    how many draws this worker made (two workers of a live study once trained one architecture twice)."""
    import dataclasses

    from search.spec.parse import load_spec
    from search.spec.space import sample_params

    spec = dataclasses.replace(
        load_spec(Path(__file__).parents[1] / "studies" / "default.toml"), sampler=sampler
    )
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(tmp_path / "j.log"))
    )
    a = optuna.create_study(
        study_name="s", storage=storage, sampler=make_sampler(spec), directions=spec.objectives.directions
    )
    b = optuna.load_study(study_name="s", storage=storage, sampler=make_sampler(spec))
    draws = {}
    for i in range(8):  # the two workers take turns, as two processes would
        study = (a, b)[i % 2]
        trial = study.ask()
        draws[trial.number] = sample_params(trial, spec)
        study.tell(trial, [0.5 + 0.01 * i, 1e5 * (i + 1), 1.0 + i])
    assert len({json.dumps(d, sort_keys=True) for d in draws.values()}) == 8
    # and a trial's draw is the same whichever worker made it, in another run
    c = optuna.create_study(sampler=make_sampler(spec), directions=spec.objectives.directions)
    first = c.ask()
    assert sample_params(first, spec) == draws[0]
