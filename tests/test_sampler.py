"""LRLawSampler: Optuna's conformance suite, and the behaviour of the LR search itself."""

import math
import warnings
from pathlib import Path

import numpy as np
import optuna
import pytest
from optuna.testing.pytest_samplers import BasicSamplerTestCase, RelativeSamplerTestCase, SingleOnlySamplerTestCase
from synthetic import draw_problem

from optuna_lrlaw import (
    DIVERGED_ATTR,
    LawFromStorage,
    LRLawConvergence,
    LRLawSampler,
    Scale,
    fit_law,
    set_study_scale,
)
from optuna_lrlaw.integration.sampler import BELIEF_ATTR

optuna.logging.set_verbosity(optuna.logging.WARNING)

TRUE_LR = 3e-3


def lr_loss(lr: float, best: float = TRUE_LR) -> float:
    """A loss curve in log LR: steep above the optimum, diverged far above it (``inf``: a
    completed run that blew up; a NaN would be recorded as a plain failure)."""
    u = math.log(lr / best)
    if u > 2.5:
        return math.inf
    return 2.5 + 0.02 * (math.expm1(u) - u)


class WithInnerSamplers:
    """The suite's cases with TPE (the default), multivariate TPE and a random sampler inside."""

    @pytest.fixture(params=["tpe", "multivariate-tpe", "random"])
    def sampler(self, request):
        inner = {
            "tpe": None,
            "multivariate-tpe": optuna.samplers.TPESampler(multivariate=True, seed=1),
            "random": optuna.samplers.RandomSampler(seed=1),
        }[request.param]
        return lambda: LRLawSampler(inner=inner, seed=0)


class TestBasic(WithInnerSamplers, BasicSamplerTestCase):
    pass


class TestRelative(WithInnerSamplers, RelativeSamplerTestCase):
    pass


class TestSingleOnly(WithInnerSamplers, SingleOnlySamplerTestCase):
    pass


class FromOptunaHub:
    """The same suite against the class OptunaHub loads from ``package/samplers/lr_scaling_law``."""

    @pytest.fixture
    def sampler(self):
        optunahub = pytest.importorskip("optunahub")
        registry = Path(__file__).resolve().parents[1] / "package"
        module = optunahub.load_local_module("samplers/lr_scaling_law", registry_root=str(registry))
        assert module.LRLawSampler is LRLawSampler  # the package re-exports the tested code, no copy
        return lambda: module.LRLawSampler(seed=0)


class TestBasicFromOptunaHub(FromOptunaHub, BasicSamplerTestCase):
    pass


class TestRelativeFromOptunaHub(FromOptunaHub, RelativeSamplerTestCase):
    pass


class TestSingleOnlyFromOptunaHub(FromOptunaHub, SingleOnlySamplerTestCase):
    pass


class TestLRPathUnderTheConformanceSuite:
    """The suite's float test again, with the parameter it samples ("x") as the LR."""

    @pytest.fixture
    def sampler(self):
        return lambda: LRLawSampler(lr_param="x", seed=0)

    @pytest.mark.parametrize(
        "distribution",
        [
            optuna.distributions.FloatDistribution(0.0, 1.0),
            optuna.distributions.FloatDistribution(1e-7, 1.0, log=True),
            optuna.distributions.FloatDistribution(0.0, 10, step=0.1),
        ],
    )
    def test_float(self, sampler, distribution):
        BasicSamplerTestCase.test_float(self, sampler, distribution)


def lr_study(sampler, n_trials, objective=lambda t: lr_loss(t.suggest_float("lr", 1e-6, 1.0, log=True))):
    study = optuna.create_study(sampler=sampler)
    study.optimize(objective, n_trials=n_trials)
    return study


def stated_noise(trial, loss):
    """The objective states its runs' seed noise (0.1%: the test curve has none)."""
    trial.set_user_attr("lrlaw.noise", 1e-3)
    return loss


def test_first_trial_is_the_prior_median_and_the_search_converges():
    objective = lambda t: stated_noise(t, lr_loss(t.suggest_float("lr", 1e-6, 1.0, log=True)))  # noqa: E731
    study = lr_study(LRLawSampler(seed=0), 25, objective)
    assert study.trials[0].params["lr"] == pytest.approx(1e-3)  # the middle of [1e-6, 1] in log
    belief = study.sampler.belief(study)
    lo, hi = belief.interval(0.9)
    assert abs(math.log(belief.best_lr / TRUE_LR)) < 0.05
    # The posterior median is within 10% (the fitted shapes bias it a little on this curve).
    assert abs(math.log(belief.lr / TRUE_LR)) < 0.1 and hi / lo < 2
    assert belief.expected_regret < 1e-3


def test_a_law_puts_the_first_trial_at_its_median():
    """The median is the default one-shot LR: it beat the hedged LR on held-out real rungs."""
    runs = draw_problem(np.random.default_rng(3)).observations
    law = fit_law(runs)
    scale = Scale(params=runs["params"].max() * 4, tokens=runs["tokens"].max() * 4)
    study = lr_study(LRLawSampler(law, scale=scale, seed=0), 1)
    assert study.trials[0].params["lr"] == pytest.approx(law.predict(scale).lr)
    assert study.trials[0].system_attrs[BELIEF_ATTR]["from_law"] is True


def test_the_scale_comes_from_the_study_or_is_asked_for():
    runs = draw_problem(np.random.default_rng(3)).observations
    law = fit_law(runs)
    study = optuna.create_study(sampler=LRLawSampler(law))
    with pytest.raises(ValueError, match="set_study_scale"):
        study.ask({"lr": optuna.distributions.FloatDistribution(1e-5, 1.0, log=True)})
    set_study_scale(study, Scale(params=1e9, tokens=2e10))
    trial = study.ask({"lr": optuna.distributions.FloatDistribution(1e-5, 1.0, log=True)})
    lo, hi = law.predict(Scale(params=1e9, tokens=2e10)).interval(0.999)
    assert lo < trial.params["lr"] < hi


def test_draws_stay_inside_linear_stepped_bounds_and_warn_when_the_law_points_outside():
    runs = draw_problem(np.random.default_rng(3)).observations
    law = fit_law(runs)
    scale = Scale(params=1e9, tokens=2e10)
    far = 10.0 ** math.ceil(math.log10(law.predict(scale).lr * 1e3))
    sampler = LRLawSampler(law, scale=scale, seed=0)
    study = optuna.create_study(sampler=sampler)
    with pytest.warns(UserWarning, match="outside the range"):
        study.optimize(lambda t: t.suggest_float("lr", far, 10 * far, step=far / 8), n_trials=6)
    values = [t.params["lr"] for t in study.trials]
    assert all(far <= v <= 10 * far for v in values)
    assert np.allclose(np.round((np.array(values) - far) / (far / 8)), (np.array(values) - far) / (far / 8))


def test_diverged_runs_push_the_search_below_them_and_plain_failures_do_not():
    """Runs that blew up (``inf``, failed with ``lrlaw.diverged``, or failed after reporting a
    diverging curve) censor the optimum from above; the same LRs failing for no stated reason
    (Optuna records a returned NaN so) do not, and the sampler says so once, with the remedy."""

    def searched(objective):
        study = optuna.create_study(sampler=LRLawSampler(seed=0))
        for lr in (1e-2, 3e-2, 1e-1):
            study.enqueue_trial({"lr": lr})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            study.optimize(objective, n_trials=3, catch=(RuntimeError,))
        return study.sampler.belief(study)

    def blew_up(trial):
        return lr_loss(trial.suggest_float("lr", 1e-6, 1.0, log=True), best=1e-4)

    def flagged(trial):
        trial.suggest_float("lr", 1e-6, 1.0, log=True)
        trial.set_user_attr(DIVERGED_ATTR, True)
        raise RuntimeError("loss spike")

    def reported_nan(trial):
        trial.suggest_float("lr", 1e-6, 1.0, log=True)
        trial.report(3.0, 0)
        trial.report(math.nan, 1)
        return math.nan

    def plain(trial):
        trial.suggest_float("lr", 1e-6, 1.0, log=True)
        return math.nan

    assert searched(blew_up).posterior.interval(0.99)[1] < 1e-2
    assert searched(flagged).posterior.interval(0.99)[1] < 1e-2
    assert searched(reported_nan).posterior.interval(0.99)[1] < 1e-2
    assert searched(plain).posterior.interval(0.99)[1] > 1e-2

    study = optuna.create_study(sampler=LRLawSampler(seed=0))
    with pytest.warns(UserWarning, match=r"trial 0 .* failed.*return float\('inf'\)") as caught:
        study.optimize(plain, n_trials=3)
    assert sum("says nothing about the optimal LR" in str(w.message) for w in caught) == 1  # once a study
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a failure the sampler can read as a divergence is not warned about
        optuna.create_study(sampler=LRLawSampler(seed=0)).optimize(reported_nan, n_trials=2)


def test_non_lr_parameters_go_to_the_inner_sampler():
    class Recording(optuna.samplers.RandomSampler):
        names: list = []

        def sample_independent(self, study, trial, name, distribution):
            self.names.append(name)
            return super().sample_independent(study, trial, name, distribution)

    inner = Recording(seed=0)
    lr_study(
        LRLawSampler(inner=inner, seed=0),
        3,
        lambda t: lr_loss(t.suggest_float("lr", 1e-6, 1.0, log=True)) + t.suggest_float("wd", 0, 1),
    )
    assert set(inner.names) == {"wd"}


def test_seeded_searches_are_reproducible():
    first = [t.params["lr"] for t in lr_study(LRLawSampler(seed=7), 8).trials]
    second = [t.params["lr"] for t in lr_study(LRLawSampler(seed=7), 8).trials]
    assert first == second


def test_threads_share_one_sampler_without_repeating_an_lr():
    study = optuna.create_study(sampler=LRLawSampler(seed=0))
    study.optimize(lambda t: lr_loss(t.suggest_float("lr", 1e-6, 1.0, log=True)), n_trials=24, n_jobs=4)
    lrs = [t.params["lr"] for t in study.trials]
    assert len(lrs) == 24 and len(set(lrs)) == 24


def test_running_trials_are_avoided():
    study = optuna.create_study(sampler=LRLawSampler(seed=0))
    study.optimize(lambda t: lr_loss(t.suggest_float("lr", 1e-6, 1.0, log=True)), n_trials=6)
    distribution = {"lr": optuna.distributions.FloatDistribution(1e-6, 1.0, log=True)}
    pending = [study.ask(distribution) for _ in range(3)]
    gaps = np.diff(np.sort(np.log([t.params["lr"] for t in pending])))
    sd = study.sampler.belief(study).posterior.log_lr_sd
    assert gaps.min() > 0.25 * sd


def test_a_maximizing_study_is_refused_for_the_lr():
    study = optuna.create_study(direction="maximize", sampler=LRLawSampler())
    with pytest.raises(ValueError, match="minimize"):
        study.ask({"lr": optuna.distributions.FloatDistribution(1e-5, 1.0, log=True)})
    with pytest.raises(ValueError, match="suggest_float"):
        optuna.create_study(sampler=LRLawSampler()).ask({"lr": optuna.distributions.IntDistribution(1, 10)})


def test_convergence_callback_stops_the_search():
    study = optuna.create_study(sampler=LRLawSampler(seed=0))
    study.optimize(
        lambda t: lr_loss(t.suggest_float("lr", 1e-6, 1.0, log=True)),
        n_trials=200,
        callbacks=[LRLawConvergence(max_expected_regret=1e-3)],
    )
    assert 3 <= len(study.trials) < 60
    assert study.sampler.belief(study).expected_regret <= 1e-3
    with pytest.raises(TypeError, match="LRLawSampler"):
        optuna.create_study().optimize(lambda t: 1.0, n_trials=1, callbacks=[LRLawConvergence()])


def test_law_from_storage_learns_from_finished_studies_and_skips_the_current_one(tmp_path):
    storage = f"sqlite:///{tmp_path / 'ladder.db'}"
    source = LawFromStorage(storage)
    truth = {1e7: 1e-2, 4e7: 6e-3, 1.6e8: 3.6e-3}  # eta* ~ N^-0.37
    for params, best in truth.items():
        study = optuna.create_study(storage=storage, study_name=f"N={params:g}", sampler=LRLawSampler(source, seed=0))
        set_study_scale(study, Scale(params=params, tokens=20 * params))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            study.optimize(
                lambda t, b=best: stated_noise(t, lr_loss(t.suggest_float("lr", 1e-6, 1.0, log=True), best=b)),
                n_trials=12,
            )
    last = optuna.load_study(study_name="N=1.6e+08", storage=storage)
    law = source.law_for(last)
    assert law is not None and set(law.optima["params"]) == {1e7, 4e7}
    # The third study started from the law of the first two: its first trial is near 3.6e-3.
    assert abs(math.log(last.trials[0].params["lr"] / 3.6e-3)) < math.log(2)
    assert source.law_for(last) is law  # cached until a trial finishes elsewhere
    # Limited to named studies, it reads only those.
    first_two = LawFromStorage(storage, studies=["N=1e+07", "N=4e+07"])
    assert set(first_two.law_for(None).optima["params"]) == {1e7, 4e7}
    assert LawFromStorage(storage, studies=["N=1e+07"]).law_for(None).optima["params"].tolist() == [1e7]
