"""The one LR worth betting on: `LRPrediction.recommend` and the pooled loss shape behind it."""

import math

import numpy as np
import optuna
import pandas as pd
import pytest
from scipy import integrate, stats
from synthetic import draw_problem, sweep
from test_law import law_runs

from optuna_lrlaw import LRLawSampler, Scale, fit_law
from optuna_lrlaw.science._bayes import GaussianMixture
from optuna_lrlaw.science.loss_shape import (
    DIVERGED_EXCESS,
    LossShape,
    _skew_posterior,
    _SweepAroundOptimum,
    linex,
)
from optuna_lrlaw.science.prediction import LRPrediction


def belief(mean, sd, shape):
    mixture = GaussianMixture(np.array([1.0]), np.array([mean]), np.array([sd]))
    return LRPrediction.from_mixture(Scale(1e8, 1e10), mixture, shape=shape)


@pytest.mark.parametrize("skew", [0.0, 1.0, 2.5])
@pytest.mark.parametrize("sd", [0.2, 0.6])
def test_without_a_cliff_the_recommendation_is_the_linex_minimiser(skew, sd):
    """a* = mu - s sigma^2 / 2 for a normal belief and the LINEX loss (Zellner 1986), where the
    curve stays far below the diverged excess (a curvature of 1e-4: the cap lies 4 e-folds out)."""
    mean, curvature = math.log(3e-3), 1e-4
    recommendation = belief(mean, sd, LossShape(curvature, skew, math.inf)).recommend()
    assert math.log(recommendation.lr) == pytest.approx(mean - skew * sd**2 / 2, abs=0.01)
    assert recommendation.median_lr == pytest.approx(3e-3, rel=1e-6)
    assert recommendation.expected_regret <= recommendation.median_expected_regret
    # The expected excess under the LINEX loss has a closed form too.
    u = math.log(recommendation.lr) - mean
    if skew == 0:
        exact = curvature * (u**2 + sd**2)
    else:
        exact = curvature * 2 * (math.exp(skew * u + skew**2 * sd**2 / 2) - 1 - skew * u) / skew**2
    assert recommendation.expected_regret == pytest.approx(exact, rel=1e-6)


@pytest.mark.parametrize(
    "shape", [LossShape(0.002, 4.0, math.inf), LossShape(0.01, 1.75, 1.5), LossShape(0.2, 0.0, 0.8)]
)
@pytest.mark.parametrize(("mean", "sd"), [(0.0, 0.3), (-1.0, 1.0), (0.5, 0.9)])
def test_no_run_costs_more_than_a_diverged_one(shape, mean, sd):
    """The excess is capped at a diverged run's, and its expectation is still exact."""
    u = np.linspace(-20, 20, 4001)
    assert shape.excess(u).max() == pytest.approx(DIVERGED_EXCESS)
    numeric = integrate.quad(
        lambda x: float(shape.excess(x)) * stats.norm.pdf(x, mean, sd), mean - 12 * sd, mean + 12 * sd, limit=400
    )[0]
    assert float(shape.expected_excess(mean, sd)) == pytest.approx(numeric, rel=1e-4, abs=1e-9)


def test_a_steep_curve_does_not_push_an_uncertain_recommendation_off_the_belief():
    """Uncapped, a skew of 4 and a belief sd of 1 would put the LR of lowest expected loss
    mu - 8 / 2 = 4 e-folds below the median; no run can lose more than a diverged one."""
    prediction = belief(math.log(3e-3), 1.0, LossShape(0.02, 4.0, math.inf))
    lo, _ = prediction.interval(0.98)
    assert prediction.recommend().lr > lo


def test_a_cliff_within_reach_pushes_the_recommendation_down():
    mean, sd = math.log(3e-3), 0.6
    free = belief(mean, sd, LossShape(0.01, 1.0, math.inf)).recommend()
    cliff = belief(mean, sd, LossShape(0.01, 1.0, 0.8)).recommend()
    assert cliff.lr < free.lr
    assert cliff.divergence_probability <= 0.02
    # The median would diverge whenever eta* lies 0.8 or more below it: 9% of the belief.
    assert belief(mean, sd, LossShape(0.01, 1.0, 0.8)).expected_regret(3e-3) > cliff.expected_regret


def test_loss_shape_is_pooled_from_the_sweeps():
    runs = law_runs()
    shapes = fit_law(runs).loss_shapes
    # tests/synthetic.py's curves are steeper above the optimum: a positive skew.
    assert shapes.skew > 0
    # The cliff is the nearest distance above a sweep's optimum at which a run diverged: 3x
    # to 10x above the true optimum, measured from each sweep's estimated one.
    assert 0 < shapes.cliff < math.log(10) + 0.1
    assert shapes.sweeps == 6
    shape = shapes.at(Scale(1e8, 1e10))
    assert 0.001 < shape.curvature < 0.2
    assert linex(0.0, shape.skew) == 0


def test_curvature_follows_the_scale():
    """Paper B: the loss grows less sensitive to the LR with a longer horizon. Sweeps whose
    curvature falls as D^-0.5 give a shape law whose curvature falls with D."""
    rng = np.random.default_rng(3)
    frames = []
    for n in (1e7, 2.5e7, 6.25e7):
        for d in (1e9, 4e9, 1.6e10):
            lrs = 3e-3 * np.geomspace(0.1, 10, 13)
            u = np.log(lrs / 3e-3)
            curvature = 0.02 * (d / 1e9) ** -0.5
            loss = 2.5 * (1 + curvature * linex(u, 1.0) + rng.normal(0, 2e-4, u.size))
            frames.append(pd.DataFrame({"lr": lrs, "loss": loss, "params": n, "tokens": d, "noise": 2e-4}))
    shapes = fit_law(pd.concat(frames, ignore_index=True)).loss_shapes
    short, long = (shapes.at(Scale(2.5e7, d)).curvature for d in (1e9, 1.6e10))
    assert short / long == pytest.approx(4.0, rel=0.25)
    assert shapes.skew == pytest.approx(1.0, abs=0.3)


def skewed_sweeps(skew, lrs_per_sweep, noise, seed=0):
    rng = np.random.default_rng(seed)
    frames = []
    for n in (1e7, 2e7, 4e7):
        lrs = 3e-3 * np.geomspace(1 / 3, 3, lrs_per_sweep)
        loss = 2.5 * (1 + 0.03 * linex(np.log(lrs / 3e-3), skew) + rng.normal(0, noise, lrs.size))
        frames.append(pd.DataFrame({"lr": lrs, "loss": loss, "params": n, "tokens": 20 * n}))
    return pd.concat(frames, ignore_index=True)


def test_the_skew_is_a_posterior_that_short_noisy_sweeps_barely_move():
    """Clean sweeps of 11 LRs on skew-3 curves pull the pooled skew to 3. Sweeps of 6 LRs
    whose noise (5%) rivals their curve leave it near the prior's 1, on average over seeds:
    the CPU comparison's 40-step rungs once gave the grid's edge, 4, from such sweeps."""
    clean = fit_law(skewed_sweeps(3.0, 11, 1e-4)).loss_shapes
    assert clean.skew == pytest.approx(3.0, abs=0.2) and clean.skew_sd < 0.2
    noisy = [fit_law(skewed_sweeps(3.0, 6, 0.05, seed)).loss_shapes for seed in range(6)]
    assert np.mean([shape.skew for shape in noisy]) < 2.0
    assert np.mean([shape.skew_sd for shape in noisy]) > 0.4


def test_the_tolerance_band_is_where_the_loss_shape_rises_by_the_tolerance():
    parabola = LossShape(0.01, 0.0, math.inf)
    assert parabola.tolerance_band(0.0025) == pytest.approx((0.5, 0.5))
    skewed = LossShape(0.01, 1.75, math.inf)
    below, above = skewed.tolerance_band(0.005)
    assert below > above  # gentle below the optimum, steep above it
    assert skewed.excess(-below) == pytest.approx(0.005) and skewed.excess(above) == pytest.approx(0.005)
    assert LossShape(0.01, 1.75, 0.3).tolerance_band(0.005)[1] == 0.3  # the cliff ends the band
    with pytest.raises(ValueError, match="tolerance must be positive"):
        parabola.tolerance_band(0.0)


def test_a_flatter_loss_needs_a_narrower_search():
    """Paper B: where the loss is less sensitive to the LR, fewer LRs are worth trying."""
    mean, sd = math.log(3e-3), 0.5
    steep, flat = (belief(mean, sd, LossShape(c, 1.0, math.inf)) for c in (0.04, 0.01))
    assert flat.search_factor(tolerance=0.005) < steep.search_factor(tolerance=0.005) < steep.search_factor()
    assert flat.search_runs(tolerance=0.005) < steep.search_runs(tolerance=0.005)
    lo, hi = steep.search_range(0.9, 0.005)
    below, above = steep.shape.tolerance_band(0.005)
    interval = steep.interval(0.9)
    assert lo == pytest.approx(interval[0] * math.exp(above)) and hi == pytest.approx(interval[1] * math.exp(-below))
    # A grid spaced by the band's width covers the range: runs = 1 + ceil(log range / width).
    assert steep.search_runs(tolerance=0.005) == 1 + math.ceil(math.log(hi / lo) / (below + above))
    # A belief narrower than the band: one run lands within the tolerance, anywhere from
    # hi e^-below to lo e^above (within reach of every lr* in the interval), the recommended LR among them.
    sure = belief(mean, 0.05, LossShape(0.01, 1.0, math.inf))
    lo, hi = sure.interval(0.9)
    below, above = sure.shape.tolerance_band(0.005)
    start, stop = sure.search_range(tolerance=0.005)
    assert (start, stop) == pytest.approx((hi * math.exp(-below), lo * math.exp(above)))
    assert start < sure.recommend().lr < stop and sure.search_runs(tolerance=0.005) == 1
    assert sure.search_factor(tolerance=0.005) > 1.0


def test_the_search_range_holds_the_recommended_lr_and_is_never_one_point():
    """At any distance from the data, the printed range is a range, and the LRs the user is
    told of (the median, the one-shot LR, and the hedged one) lie in it."""
    for sd in (0.02, 0.1, 0.3, 0.6, 1.2, 2.5):
        for shape in (LossShape(0.01, 1.0, math.inf), LossShape(0.08, 2.5, 0.4), LossShape(0.003, -0.5, math.inf)):
            prediction = belief(math.log(3e-3), sd, shape)
            start, stop = prediction.search_range(0.9, 0.005)
            assert start < stop, (sd, shape)
            assert start <= prediction.recommend().lr <= stop and start <= prediction.lr <= stop
            assert prediction.search_runs(0.9, 0.005) >= 1


def test_recommended_lr_loses_no_more_than_the_median_on_200_synthetic_problems():
    """Asymmetric curves with a cliff (tests/synthetic.py), predicted at a held-out scale 25x
    larger in N: the mean regret of the recommended LR is not worse than the median's by
    twice the paired standard error, and it diverges in at most 2% of problems
    (benchmarks/recommend_regret.py, docs/validation.md)."""
    rng = np.random.default_rng(0)
    regrets, diverged = {"median": [], "recommend": []}, []
    for _ in range(200):
        problem = draw_problem(rng)
        prediction = fit_law(problem.observations).predict(Scale(**problem.holdout))
        for name, lr in (("median", prediction.lr), ("recommend", prediction.recommend().lr)):
            u = math.log(lr / problem.holdout_lr)
            past_cliff = u > problem.holdout_curve.cliff
            regrets[name].append(1.0 if past_cliff else float(problem.holdout_curve.excess(u)))
            if name == "recommend":
                diverged.append(past_cliff)
    difference = np.array(regrets["recommend"]) - np.array(regrets["median"])
    assert difference.mean() <= 2 * difference.std(ddof=1) / math.sqrt(difference.size)
    assert np.mean(diverged) <= 0.02


@pytest.mark.parametrize("first_trial", ["recommend", "median"])
def test_sampler_starts_at_the_chosen_lr(first_trial):
    rng = np.random.default_rng(0)
    runs = pd.concat(
        [sweep(rng, 3e-3 * (n / 1e7) ** -0.5, 2.5).assign(params=n, tokens=1e9) for n in (1e7, 2.5e7, 6.25e7)]
    )
    law = fit_law(runs, features=("params",))
    scale = Scale(1e9, 1e9)
    prediction = law.predict(scale)
    expected = prediction.recommend().lr if first_trial == "recommend" else prediction.lr
    study = optuna.create_study(sampler=LRLawSampler(law, scale=scale, first_trial=first_trial))
    trial = study.ask()
    assert trial.suggest_float("lr", 1e-6, 1.0, log=True) == pytest.approx(expected)
    with pytest.raises(ValueError, match="first_trial"):
        LRLawSampler(law, first_trial="mean")


def test_one_sweep_still_has_a_shape():
    runs = law_runs(params=(1e7,), tokens=(1e9,))
    shapes = fit_law(runs, features=("params",)).loss_shapes
    assert shapes.sweeps == 1 and shapes.posterior is None
    assert 0.001 < shapes.at(Scale(1e8, 1e9)).curvature < 0.2
    assert fit_law(runs, features=("params",)).predict(Scale(1e8, 1e9)).recommend().lr > 0


def test_the_hedge_moves_the_lr_at_most_half_the_tolerance_band():
    """A skew of 3 and a wide belief would put the LINEX minimiser 1.5 e-folds below the
    median; the recommendation stops where the loss band of 0.5% ends, half its width away."""
    shape = LossShape(0.01, 3.0, math.inf)
    recommendation = belief(math.log(3e-3), 1.0, shape).recommend()
    below, above = shape.tolerance_band(0.005)
    shift = math.log(recommendation.median_lr / recommendation.lr)
    assert 0 < shift <= 0.5 * (below + above) + 1e-9
    assert recommendation.expected_regret <= recommendation.median_expected_regret


def test_the_recommendation_states_its_regret_in_parts():
    """Expected regret = the part earned within the measured curve + what lies beyond it;
    a sharp belief lands within 0.5% almost surely, a wide one often leaves the band."""
    shape = LossShape(0.01, 1.0, 1.2)
    sharp = belief(math.log(3e-3), 0.05, shape).recommend()
    wide = belief(math.log(3e-3), 1.5, shape).recommend()
    for r in (sharp, wide):
        assert 0 <= r.regret_in_band <= r.expected_regret + 1e-12
        assert 0 <= r.outside_band_probability <= 1 and 0 <= r.within_tolerance_probability <= 1
        assert "expected regret" in str(r)
    assert sharp.within_tolerance_probability > 0.99 and sharp.outside_band_probability < 1e-6
    assert wide.outside_band_probability > 0.2 and wide.within_tolerance_probability < 0.5
    # What lies beyond the band costs at most a diverged run each time.
    assert wide.expected_regret <= wide.regret_in_band + DIVERGED_EXCESS * wide.outside_band_probability + 1e-9


def test_an_uncertain_curvature_costs_more_than_its_median():
    """The excess is linear in the curvature, and a lognormal's mean exceeds its median."""
    known, unsure = LossShape(0.01, 1.0, math.inf), LossShape(0.01, 1.0, math.inf, curvature_sd=0.5)
    assert float(unsure.expected_excess(0.2, 0.3)) == pytest.approx(
        float(known.expected_excess(0.2, 0.3)) * math.exp(0.5**2 / 2), rel=0.01
    )


def test_an_uncertain_skew_is_integrated_over_not_plugged_in():
    """Averaging the excess over skews matches a brute-force average, and costs more than the
    mean skew alone (the excess is convex in the skew above the optimum)."""
    known, unsure = LossShape(0.01, 1.0, math.inf), LossShape(0.01, 1.0, math.inf, skew_sd=0.8)
    skews = np.random.default_rng(0).normal(1.0, 0.8, 20000)
    brute = np.mean([float(LossShape(0.01, s, math.inf).expected_excess(0.3, 0.5)) for s in skews[:4000]])
    assert float(unsure.expected_excess(0.3, 0.5)) == pytest.approx(brute, rel=0.05)
    assert float(unsure.expected_excess(0.3, 0.5)) > float(known.expected_excess(0.3, 0.5))


def test_a_sweep_whose_optimum_is_uncertain_claims_less_about_its_shape():
    """The same runs around an optimum known to 0.4 e-fold instead of exactly: the skew and
    the log curvature they allow are both wider (a shifted centre mimics a skew)."""
    u = np.log(np.geomspace(1 / 3, 3, 6))
    excess = 0.03 * linex(u, 1.0) + np.random.default_rng(1).normal(0, 0.002, u.size)
    exact, unsure = (_SweepAroundOptimum(u, excess, sd) for sd in (0.0, 0.4))
    assert _skew_posterior([unsure])[1] > _skew_posterior([exact])[1]
    assert unsure.log_curvature(1.0)[1] > exact.log_curvature(1.0)[1]
    assert exact.log_curvature(1.0)[0] == pytest.approx(math.log(0.03), abs=0.15)


def test_curvature_is_never_extrapolated_above_the_longest_horizon():
    """Sweeps whose curvature rises with D (against paper B) are not extrapolated upward: at
    a horizon beyond the longest rung's, the curvature is at most that rung's."""
    rng = np.random.default_rng(5)
    frames = []
    for n, d in ((1e7, 1e9), (2.5e7, 2.5e9), (6.25e7, 6.25e9)):
        lrs = 3e-3 * np.geomspace(0.1, 10, 13)
        u = np.log(lrs / 3e-3)
        curvature = 0.01 * (d / 1e9) ** 0.5
        loss = 2.5 * (1 + curvature * linex(u, 1.0) + rng.normal(0, 2e-4, u.size))
        frames.append(pd.DataFrame({"lr": lrs, "loss": loss, "params": n, "tokens": d}))
    shapes = fit_law(pd.concat(frames, ignore_index=True)).loss_shapes
    tokens, ceiling = shapes.ceiling
    assert tokens == 6.25e9 and ceiling == pytest.approx(0.01 * 6.25**0.5, rel=0.3)
    far = shapes.at(Scale(1e9, 1e12))
    assert far.curvature <= ceiling * (1 + 1e-9) and far.curvature_sd > 0


def test_assess_states_the_parts_of_any_lr():
    """`assess` at the recommended LR is the recommendation itself; at the median it is what
    the one-shot LR risks, never less than the recommendation's expected regret."""
    prediction = belief(math.log(3e-3), 0.6, LossShape(0.01, 1.0, 1.0))
    recommendation = prediction.recommend()
    again = prediction.assess(recommendation.lr)
    assert again.expected_regret == pytest.approx(recommendation.expected_regret, rel=1e-9)
    median = prediction.assess(prediction.lr)
    assert median.lr == pytest.approx(3e-3) and median.expected_regret >= recommendation.expected_regret
    with pytest.raises(ValueError, match="finite and positive"):
        prediction.assess(0.0)
