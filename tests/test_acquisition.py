"""Sweeps that measure what they claim: `spread_design`, the sampler's default acquisition,
and an optimum estimate that stays honest when the runs span a narrow range."""

import math

import numpy as np
import optuna
import pytest
from test_law import law_runs

from optuna_lrlaw import LRLawSampler, Scale, estimate_optimum, fit_law
from optuna_lrlaw.science.acquisition import MIN_SPREAD, spread_design
from optuna_lrlaw.science.loss_shape import linex


def test_spread_design_takes_the_centre_then_each_side_once():
    sd = 0.2  # a confident belief: the sides sit a factor 2 away
    first = spread_design(0.0, sd, taken=[])
    second = spread_design(0.0, sd, taken=[first])
    third = spread_design(0.0, sd, taken=[first, second])
    assert (first, second, third) == pytest.approx((0.0, -MIN_SPREAD, MIN_SPREAD))
    assert spread_design(0.0, sd, taken=[first, second, third]) is None
    # A wide belief spreads wider, and the bounds clip the proposals.
    assert spread_design(0.0, 1.0, taken=[0.0]) == pytest.approx(-1.5)
    assert spread_design(0.0, 1.0, taken=[0.0], bounds=(-1.0, 3.0)) == pytest.approx(1.5)


@pytest.mark.parametrize(("curvature", "spread"), [(0.01, math.sqrt(0.4)), (1.0, math.log(1.5)), (1e-5, math.log(3.0))])
def test_the_spread_is_where_the_expected_curvature_lifts_the_loss_clear_of_the_noise(curvature, spread):
    """A relative excess of 0.4% (four times the sweep fit's 0.1% noise guess) at the side
    points, within a factor 1.5 to 3."""
    assert spread_design(0.0, 0.1, taken=[0.0], curvature=curvature) == pytest.approx(-spread)


def confident_law():
    law = fit_law(law_runs())
    return law, Scale(5e7, 2e9)  # inside the rungs: a belief a few tens of percent wide


def objective(trial):
    lr = trial.suggest_float("lr", 1e-6, 1.0, log=True)
    return 2.5 + 0.02 * linex(math.log(lr / 2e-3), 1.0)


def test_the_sampler_spreads_its_first_trials_where_thompson_clusters():
    law, scale = confident_law()
    prediction = law.predict(scale)
    assert prediction.search_factor() < 1.6
    least = max(min(math.sqrt(4e-3 / prediction.shape.curvature), math.log(3)), math.log(1.5))
    spans = {}
    for acquisition in ("spread", "thompson"):
        study = optuna.create_study(sampler=LRLawSampler(law, scale=scale, seed=0, acquisition=acquisition))
        study.optimize(objective, n_trials=3)
        lrs = [t.params["lr"] for t in study.trials]
        spans[acquisition] = max(lrs) / min(lrs)
    # The least spread on each side of a centre that moves a little as runs arrive.
    assert math.log(spans["spread"]) > 1.8 * least
    assert spans["thompson"] < spans["spread"] / 1.5
    with pytest.raises(ValueError, match="acquisition"):
        LRLawSampler(law, acquisition="grid")


def test_a_running_trial_counts_as_taken():
    law, scale = confident_law()
    study = optuna.create_study(sampler=LRLawSampler(law, scale=scale, seed=0, acquisition="spread"))
    study.optimize(objective, n_trials=1)
    pending = [study.ask().suggest_float("lr", 1e-6, 1.0, log=True) for _ in range(2)]
    first = study.trials[0].params["lr"]
    # Two workers asking at once get the two sides, not the same one twice.
    low, high = sorted(pending)
    assert low < first / 1.4 and high > first * 1.4


def test_runs_in_a_narrow_range_leave_the_uncovered_side_to_the_prior():
    """Six runs within a factor 1.3, all above the optimum: they say the optimum is below
    them, not how far. The interval reaches at least as low as the prior's."""
    rng = np.random.default_rng(0)
    prior = (math.log(1e-2), 0.5)
    lrs = np.geomspace(1.0e-2, 1.3e-2, 6)
    u = np.log(lrs / 5e-3)
    losses = 1.9 * (1 + 0.01 * linex(u, 1.0) + rng.normal(0, 2e-5, lrs.size))
    estimate = estimate_optimum(lrs, losses, prior=prior)
    lo, hi = estimate.interval(0.9)
    assert lo <= math.exp(prior[0] - 1.645 * prior[1])
    assert hi <= 1.3e-2  # the rising losses do rule out the side they cover
