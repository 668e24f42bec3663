import math

import numpy as np
import pandas as pd
import pytest
from synthetic import law_coverage, sweep

from optuna_lrlaw import LRLaw, Scale, fit_law, priors


def law_runs(seed=0, params=(1e7, 2.5e7, 6.25e7), tokens=(1e9, 4e9), a=-0.5, b=0.1):
    rng = np.random.default_rng(seed)
    frames = []
    for n in params:
        for d in tokens:
            optimum = 3e-3 * (n / 1e7) ** a * (d / 1e9) ** b
            frames.append(sweep(rng, optimum, floor=2.5).assign(params=n, tokens=d))
    return pd.concat(frames, ignore_index=True)


def test_recovers_known_exponents():
    law = fit_law(law_runs())
    table = law.coefficients(0.9)
    assert table.loc["params", "lo"] < -0.5 < table.loc["params", "hi"]
    assert table.loc["tokens", "lo"] < 0.1 < table.loc["tokens", "hi"]
    assert list(table.index) == ["prefactor", "params", "tokens"]


def test_predictive_interval_widens_with_extrapolation():
    law = fit_law(law_runs())
    near = law.predict(Scale(2.5e7, 2e9)).search_factor()
    far = law.predict(Scale(1e9, 1e11)).search_factor()
    farther = law.predict(Scale(1e11, 1e13)).search_factor()
    assert near < far < farther


def test_cdf_agrees_with_the_interval_and_the_median():
    prediction = fit_law(law_runs()).predict(Scale(1e9, 1e11))
    lo, hi = prediction.interval(0.9)
    assert prediction.cdf(lo) == pytest.approx(0.05, abs=1e-6)
    assert prediction.cdf(hi) == pytest.approx(0.95, abs=1e-6)
    assert prediction.cdf(prediction.lr) == pytest.approx(0.5, abs=1e-6)
    with pytest.raises(ValueError, match="positive"):
        prediction.cdf(0.0)


def test_interval_on_grid_moves_each_end_to_its_nearest_grid_lr():
    prediction = fit_law(law_runs()).predict(Scale(1e9, 1e11))
    lo, hi = prediction.interval(0.9)
    grid = prediction.lr * 2.0 ** np.arange(-6, 6.5, 0.5)
    grid_lo, grid_hi = prediction.interval_on_grid(grid[::-1], 0.9)  # order does not matter
    assert grid_lo in grid and grid_hi in grid
    for end, on_grid in ((lo, grid_lo), (hi, grid_hi)):
        assert abs(math.log(on_grid / end)) <= 0.5 * math.log(2**0.5) + 1e-12
    # A coarse grid whose points all lie above the interval gives its lowest point twice.
    above = hi * np.array([4.0, 16.0])
    assert prediction.interval_on_grid(above) == (above[0], above[0])
    for bad in ([], [1e-3, -1e-3], [np.nan]):
        with pytest.raises(ValueError, match="grid"):
            prediction.interval_on_grid(bad)


def test_update_equals_fitting_from_scratch():
    first, second = law_runs(seed=1), law_runs(seed=2, params=(1.5e8,))
    updated = fit_law(first).update(second)
    scratch = fit_law(pd.concat([first, second], ignore_index=True))
    assert updated.to_json() == scratch.to_json()


def test_json_round_trip_is_exact():
    law = fit_law(law_runs(), prior=priors.STEP_LAW)
    again = LRLaw.from_json(law.to_json())
    assert again.to_json() == law.to_json()
    target = Scale(5e8, 1e10)
    assert again.predict(target).interval(0.9) == law.predict(target).interval(0.9)
    pd.testing.assert_frame_equal(again.coefficients(), law.coefficients())
    with pytest.raises(ValueError, match="not an optuna-lrlaw law"):
        LRLaw.from_json('{"format": "something else"}')


def test_batch_size_feature_needs_the_column_and_the_target():
    runs = law_runs()
    with pytest.raises(ValueError, match="batch_tokens"):
        fit_law(runs, features=("params", "tokens", "batch_tokens"))
    law = fit_law(runs.assign(batch_tokens=2**19), features=("params", "tokens", "batch_tokens"))
    with pytest.raises(ValueError, match="batch_tokens"):
        law.predict(Scale(1e8, 1e10))
    assert law.predict(Scale(1e8, 1e10, 2**19)).lr > 0


def test_unbracketed_sweeps_are_reported_and_left_out():
    runs = law_runs()
    edge = pd.DataFrame({"params": 3e8, "tokens": 1e9, "lr": [1e-3, 2e-3, 4e-3], "loss": [2.3, 2.2, 2.1]})
    law = fit_law(pd.concat([runs, edge], ignore_index=True))
    row = law.optima[law.optima["params"] == 3e8].iloc[0]
    assert not row["used"] and "not bracketed" in row["note"]
    with pytest.raises(ValueError, match="brackets its optimum"):
        fit_law(edge)


def test_published_priors_transform_exactly_to_the_fit_reference():
    # At the prior's own reference the log-LR mean is the law's value there.
    prior = priors.STEP_LAW
    mean, cov = prior.gaussian(("params", "tokens"), {"params": 5e8, "tokens": 3e10})
    expected = math.log(1.79) - 0.713 * math.log(5e8) + 0.307 * math.log(3e10)
    assert mean[0] == pytest.approx(expected)
    assert cov[0, 0] == pytest.approx(0.25)
    # Elsewhere the exponents' uncertainty adds to it.
    _, cov_far = prior.gaussian(("params", "tokens"), {"params": 5e10, "tokens": 3e10})
    assert cov_far[0, 0] == pytest.approx(0.25 + (0.15 * math.log(100)) ** 2)


def test_unconfirmed_units_warn():
    with pytest.warns(UserWarning, match="not confirmed"):
        fit_law(law_runs(), prior=priors.PAPER_A_EQ6)


def test_bad_arguments():
    with pytest.raises(ValueError, match="features"):
        fit_law(law_runs(), features=("params", "width"))
    with pytest.raises(ValueError, match="LawPrior"):
        fit_law(law_runs(), prior="step-law")


def test_calibration_on_200_synthetic_problems():
    """The true exponents, and the true optimum at a larger held-out scale, fall inside the
    90% intervals in 80% to 97% of problems drawn from known laws (tests/synthetic.py)."""
    coverage = law_coverage(200, seed=0)
    assert all(0.80 <= c <= 0.97 for c in coverage.values()), coverage
