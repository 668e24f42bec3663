import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from synthetic import law_coverage, sweep

from optuna_lrlaw import LRLaw, Scale, fit_law, priors, read_observations
from optuna_lrlaw.science.law import _SURGE_MARGIN


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
    assert cov[0, 0] == pytest.approx(1.0)
    # Elsewhere the exponents' uncertainty adds to it.
    _, cov_far = prior.gaussian(("params", "tokens"), {"params": 5e10, "tokens": 3e10})
    assert cov_far[0, 0] == pytest.approx(1.0 + (0.3 * math.log(100)) ** 2)


@pytest.mark.parametrize("prior", [priors.WEAK, priors.STEP_LAW, priors.DEEPSEEK])
def test_the_shipped_example_overrules_every_published_prior(prior):
    """Eight sweeps are enough to overrule a published law where it is wrong about them."""
    runs = read_observations(Path(__file__).resolve().parents[1] / "examples" / "data" / "synthetic_runs.csv")
    lo, hi = fit_law(runs, prior=prior).predict(Scale(1e8, 6.4e9)).interval(0.9)
    assert lo < 0.5 * 1e8**-0.35 * 6.4e9**-0.05 < hi  # the law behind examples/make_synthetic_runs.py


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


def knee_runs(seed=0, amplitude=1.0, gamma=1.0):
    """Sweeps at 3 model sizes x 2 data sizes x 4 batch sizes, whose optima follow the surge
    form around a knee at 2^19 tokens (at D = 1e9) that moves as D^gamma."""
    rng = np.random.default_rng(seed)
    frames = []
    for n in (1e7, 2.5e7, 6.25e7):
        for d in (1e9, 4e9):
            knee = 2.0**19 * (d / 1e9) ** gamma
            for b in 2.0 ** np.arange(16, 23, 2):
                optimum = 3e-3 * (n / 1e7) ** -0.5 / np.cosh(np.log(b / knee) / 2) ** amplitude
                frames.append(sweep(rng, optimum, floor=2.5).assign(params=n, tokens=d, batch_tokens=b))
    return pd.concat(frames, ignore_index=True)


BATCH = ("params", "tokens", "batch_tokens")


def test_surge_form_recovers_a_knee_that_moves_with_the_data():
    law = fit_law(knee_runs(), features=BATCH, batch_form="surge")
    table = law.coefficients(0.9)
    assert list(table.index) == [
        "prefactor",
        "params",
        "tokens",
        "batch_amplitude",
        "batch_knee",
        "knee_tokens_exponent",
    ]
    reference_d = law.reference["tokens"]
    knee_at_reference = 2.0**19 * (reference_d / 1e9)
    assert table.loc["batch_knee", "lo"] < knee_at_reference < table.loc["batch_knee", "hi"]
    assert table.loc["knee_tokens_exponent", "lo"] < 1.0 < table.loc["knee_tokens_exponent", "hi"]
    assert table.loc["batch_amplitude", "lo"] < 1.0 < table.loc["batch_amplitude", "hi"]
    # Below the knee the optimum rises with B, above it it falls: a power law cannot do both.
    small, knee, large = (law.predict(Scale(2e8, 2e9, b)).lr for b in (2.0**15, 2.0**20, 2.0**25))
    assert knee > 2 * small and knee > 2 * large


def test_auto_picks_the_surge_form_by_held_out_evidence_only_when_there_is_a_knee():
    with_knee = fit_law(knee_runs(), features=BATCH)
    assert with_knee.batch_form == "surge"
    assert with_knee.form_scores["surge"] > with_knee.form_scores["loglinear"]
    # Optima that follow a power law in B (no knee) keep the simpler form.
    flat = knee_runs(amplitude=0.0)
    flat["lr"] *= (flat["batch_tokens"] / 2**19) ** 0.3
    plain = fit_law(flat, features=BATCH)
    assert plain.batch_form == "loglinear"
    assert plain.form_scores["surge"] <= plain.form_scores["loglinear"] + _SURGE_MARGIN
    # With fewer than three model sizes there is no held-out evidence: the simpler form stays.
    two_sizes = knee_runs()[lambda runs: runs["params"] < 5e7]
    law = fit_law(two_sizes, features=BATCH)
    assert law.batch_form == "loglinear" and law.form_scores is None


def test_surge_law_round_trips_through_json_and_updates_with_its_rule():
    runs = knee_runs()
    law = fit_law(runs[runs["params"] < 5e7], features=BATCH, batch_form="surge")
    again = LRLaw.from_json(law.to_json())
    assert again.to_json() == law.to_json()
    target = Scale(1e9, 1e10, 2.0**20)
    assert again.predict(target).interval() == law.predict(target).interval()
    # An automatic choice is made again on update: a third model size brings the evidence.
    small = runs["params"] < 5e7
    first = fit_law(runs[small], features=BATCH)
    assert first.batch_form == "loglinear"
    updated = first.update(runs[~small])
    assert updated.batch_form == "surge" and updated.form_scores is not None


def test_surge_form_needs_tokens_and_a_known_form():
    runs = knee_runs()
    with pytest.raises(ValueError, match="tokens"):
        fit_law(runs, features=("params", "batch_tokens"), batch_form="surge")
    with pytest.raises(ValueError, match="batch_form"):
        fit_law(runs, features=BATCH, batch_form="cosh")


def test_reading_a_version_1_law_and_corrupt_json():
    law = fit_law(law_runs())
    payload = json.loads(law.to_json())
    payload["format"] = "optuna-lrlaw/law/v1"
    for key in ("design", "form_scores"):
        del payload[key]
    del payload["posterior"]["design_index"]
    payload["optima"] = {k: v for k, v in payload["optima"].items() if k != "min_loss"}
    old = LRLaw.from_json(json.dumps(payload))
    target = Scale(1e9, 1e11)
    assert old.predict(target).interval() == pytest.approx(law.predict(target).interval())
    for text, why in (("{", "not JSON"), ('{"format": "optuna-lrlaw/law/v2"}', "KeyError")):
        with pytest.raises(ValueError, match=why):
            LRLaw.from_json(text)
    payload = json.loads(law.to_json())
    payload["posterior"]["means"] = payload["posterior"]["means"][:1]
    with pytest.raises(ValueError, match="inconsistent shapes"):
        LRLaw.from_json(json.dumps(payload))


def test_calibration_on_200_synthetic_problems_with_a_batch_knee():
    """As above, with every cell swept at three batch sizes around a knee that moves with D
    (the surge form, tests/synthetic.py); the law picks its batch form itself."""
    coverage = law_coverage(200, seed=0, batch=True)
    assert all(0.80 <= c <= 0.97 for c in coverage.values()), coverage
