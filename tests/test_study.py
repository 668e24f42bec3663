import math

import optuna
import pytest

from optuna_lrlaw import DIVERGED_ATTR, Scale, observations_from_storage, observations_from_study, set_study_scale

optuna.logging.set_verbosity(optuna.logging.WARNING)


def finished_study(storage, name, scale):
    study = optuna.create_study(storage=storage, study_name=name)
    set_study_scale(study, scale)
    for lr, value in [(1e-3, 3.0), (2e-3, 2.9), (4e-3, 2.95)]:
        study.enqueue_trial({"lr": lr})
        study.optimize(lambda t, v=value: (t.suggest_float("lr", 1e-5, 1e-1, log=True), v)[1], n_trials=1)
    # A diverged run (failed with the flag), a pruned one, and one whose loss is NaN, which
    # Optuna records as a failure: both failures are censored runs, the pruned one is skipped.
    trial = study.ask({"lr": optuna.distributions.FloatDistribution(1e-5, 1e-1, log=True)})
    trial.set_user_attr(DIVERGED_ATTR, True)
    study.tell(trial, state=optuna.trial.TrialState.FAIL)
    trial = study.ask({"lr": optuna.distributions.FloatDistribution(1e-5, 1e-1, log=True)})
    study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    trial = study.ask({"lr": optuna.distributions.FloatDistribution(1e-5, 1e-1, log=True)})
    with pytest.warns(UserWarning, match="nan"):
        study.tell(trial, math.nan)
    return study


def test_reads_trials_with_the_study_scale(tmp_path):
    storage = f"sqlite:///{tmp_path / 'runs.db'}"
    study = finished_study(storage, "small", Scale(1e8, 2e9))
    frame = observations_from_study(study)
    assert len(frame) == 5  # three complete, two failures; the pruned trial is skipped
    assert frame["diverged"].sum() == 2
    assert set(frame["params"]) == {1e8} and set(frame["tokens"]) == {2e9}
    assert frame[~frame["diverged"]]["loss"].tolist() == [3.0, 2.9, 2.95]


def test_reads_every_study_with_a_scale_from_storage(tmp_path):
    storage = f"sqlite:///{tmp_path / 'runs.db'}"
    finished_study(storage, "small", Scale(1e8, 2e9))
    finished_study(storage, "large", Scale(4e8, 8e9, batch_tokens=2**20))
    optuna.create_study(storage=storage, study_name="unrelated")
    frame = observations_from_storage(storage)
    assert set(frame["study"]) == {"small", "large"}
    assert frame.loc[frame["study"] == "large", "batch_tokens"].eq(2**20).all()


def test_trial_without_scale_and_multi_objective_are_errors():
    study = optuna.create_study()
    study.enqueue_trial({"lr": 1e-3})
    study.optimize(lambda t: t.suggest_float("lr", 1e-5, 1e-1), n_trials=1)
    with pytest.raises(ValueError, match="has no scale"):
        observations_from_study(study)
    with pytest.raises(ValueError, match="multi-objective"):
        observations_from_study(optuna.create_study(directions=["minimize", "minimize"]))
