import math

import numpy as np
import pytest

from optuna_lrlaw import estimate_optimum

LRS = np.geomspace(1e-4, 1e-2, 11)


def parabola(lrs, optimum=1e-3, curvature=0.02, floor=2.5):
    return floor + curvature * np.log(lrs / optimum) ** 2


def test_recovers_the_optimum_of_a_clean_parabola():
    est = estimate_optimum(LRS, parabola(LRS))
    assert est.lr == pytest.approx(1e-3, rel=0.02)
    lo, hi = est.interval(0.9)
    assert lo < 1e-3 < hi
    assert est.bracketed and est.beyond is None
    assert est.curvature == pytest.approx(0.02, rel=0.05)
    assert est.min_loss == pytest.approx(2.5, abs=1e-3)


def test_asymmetric_curve_with_divergence_is_located():
    u = np.log(LRS / 2e-3)
    loss = 2.5 * (1 + np.where(u < 0, 0.01 * u**2, 0.04 * u**2))
    diverged = LRS > 6e-3
    loss[diverged] = np.nan
    est = estimate_optimum(LRS, loss, diverged=diverged)
    assert est.n_diverged == int(diverged.sum())
    assert est.interval(0.95)[0] < 2e-3 < est.interval(0.95)[1]


def test_divergence_censors_the_optimum_from_above():
    # A flat sweep says little; diverged runs must pull the belief below the lowest of them.
    lrs = np.geomspace(1e-4, 1e-2, 9)
    loss = np.full(lrs.size, 2.5) + np.random.default_rng(0).normal(0, 1e-3, lrs.size)
    free = estimate_optimum(lrs, loss)
    diverged = lrs > 2e-3
    capped = estimate_optimum(lrs, np.where(diverged, np.nan, loss), diverged=diverged)
    lowest_diverged = lrs[diverged].min()
    assert capped.interval(0.9)[1] < lowest_diverged < free.interval(0.9)[1]


def test_a_steep_neighbour_outside_the_band_still_bounds_the_optimum():
    # Five runs on the flat low side, within 2% of the best, and one run at twice the best
    # LR 8% worse (a proxy rung of the scale-up ladder). The far run is what brackets the
    # optimum; a fit to the band alone put the optimum at 1.7e-2, above that run.
    lrs = [4.83e-3, 5.8e-3, 7.48e-3, 8.17e-3, 8.49e-3, 1.81e-2]
    losses = [2.0200, 2.0026, 1.9743, 1.9712, 1.9688, 2.1354]
    estimate = estimate_optimum(lrs, losses)
    assert estimate.bracketed and 7.48e-3 < estimate.lr < 1.81e-2
    assert estimate.interval(0.9)[1] < 1.81e-2


def test_minimum_at_an_edge_is_flagged_as_a_bound():
    est = estimate_optimum(LRS, parabola(LRS, optimum=3e-5))
    assert not est.bracketed and est.beyond == "below"
    assert "NOT bracketed" in str(est)
    est = estimate_optimum(LRS, parabola(LRS, optimum=5e-2))
    assert est.beyond == "above"


def test_prior_alone_is_returned_exactly_when_the_sweep_says_nothing():
    est = estimate_optimum([1e-3], [2.5], prior=(math.log(2e-3), 0.3))
    assert est.log_lr_mean == pytest.approx(math.log(2e-3), abs=2e-3)
    assert est.log_lr_sd == pytest.approx(0.3, rel=0.01)
    assert est.curvature is None and not est.bracketed


def test_prior_and_data_combine_as_a_product():
    noisy = parabola(LRS) + np.random.default_rng(1).normal(0, 3e-3, LRS.size)
    alone = estimate_optimum(LRS, noisy)
    with_prior = estimate_optimum(LRS, noisy, prior=(alone.log_lr_mean + 0.3, alone.log_lr_sd))
    # The product of two equal-width normals sits halfway and is narrower by sqrt(2).
    assert with_prior.log_lr_mean == pytest.approx(alone.log_lr_mean + 0.15, abs=0.05)
    assert with_prior.log_lr_sd == pytest.approx(alone.log_lr_sd / math.sqrt(2), rel=0.25)


def test_replicated_lrs_pool_exactly():
    rng = np.random.default_rng(2)
    lrs = np.repeat(LRS, 4)
    loss = parabola(lrs) + rng.normal(0, 2e-3, lrs.size)
    est = estimate_optimum(lrs, loss)
    assert est.n_runs == lrs.size
    assert est.interval(0.9)[0] < 1e-3 < est.interval(0.9)[1]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"lrs": [], "losses": []}, "empty"),
        ({"lrs": [1e-3, 2e-3], "losses": [1.0]}, "2 values but losses has 1"),
        ({"lrs": [1e-3, -1, 3e-3], "losses": [1, 1, 1]}, "row 1"),
        ({"lrs": [1e-3, 2e-3, 3e-3], "losses": [1, np.nan, 1]}, "row 1.*not marked diverged"),
        ({"lrs": [1e-3, 2e-3], "losses": [1, 2]}, "at least 3"),
        ({"lrs": [1e-3, 2e-3, 3e-3], "losses": [1, 2, 3], "prior": (0, -1)}, "positive sd"),
        ({"lrs": [], "losses": [], "prior": (0.0, 1e-300)}, "narrower than the posterior's grid"),
    ],
)
def test_bad_input_raises_value_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        estimate_optimum(**kwargs)
