"""Any input either gives a finite, valid result or raises ValueError: never another error, never a hang."""

import math

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from optuna_lrlaw import Scale, estimate_optimum, fit_law

numbers = st.floats(allow_nan=True, allow_infinity=True, width=64)
plausible_lr = st.floats(min_value=1e-7, max_value=10.0)
plausible_loss = st.floats(min_value=0.5, max_value=12.0)


def check_estimate(est):
    assert math.isfinite(est.log_lr_mean) and est.log_lr_sd > 0 and est.lr > 0
    lo, hi = est.interval(0.9)
    assert 0 < lo <= est.lr <= hi < math.inf


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_estimate_optimum_is_valid_or_value_error(data):
    n = data.draw(st.integers(min_value=0, max_value=20))
    lrs = data.draw(st.lists(st.one_of(numbers, plausible_lr), min_size=n, max_size=n))
    losses = data.draw(st.lists(st.one_of(numbers, plausible_loss), min_size=n, max_size=n))
    diverged = data.draw(st.one_of(st.none(), st.lists(st.booleans(), min_size=n, max_size=n)))
    prior = data.draw(st.one_of(st.none(), st.tuples(numbers, numbers)))
    try:
        est = estimate_optimum(lrs, losses, diverged=diverged, prior=prior)
    except ValueError:
        return
    check_estimate(est)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(plausible_lr, min_size=3, max_size=15),
    st.lists(plausible_loss, min_size=3, max_size=15),
)
def test_estimate_optimum_on_plausible_sweeps_always_answers(lrs, losses):
    n = min(len(lrs), len(losses))
    lrs, losses = lrs[:n], losses[:n]
    if np.unique(np.log(lrs)).size < 3:  # distinct as the estimator sees them
        return
    check_estimate(estimate_optimum(lrs, losses))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_fit_law_is_valid_or_value_error(data):
    n_sweeps = data.draw(st.integers(min_value=1, max_value=5))
    frames = []
    for _ in range(n_sweeps):
        n = data.draw(st.integers(min_value=1, max_value=8))
        frames.append(
            pd.DataFrame(
                {
                    "params": data.draw(st.one_of(st.floats(1e6, 1e10), numbers)),
                    "tokens": data.draw(st.one_of(st.floats(1e8, 1e12), numbers)),
                    "lr": data.draw(st.lists(st.one_of(plausible_lr, numbers), min_size=n, max_size=n)),
                    "loss": data.draw(st.lists(st.one_of(plausible_loss, numbers), min_size=n, max_size=n)),
                }
            )
        )
    try:
        law = fit_law(pd.concat(frames, ignore_index=True))
    except ValueError:
        return
    table = law.coefficients()
    assert np.isfinite(table.to_numpy()).all()
    prediction = law.predict(Scale(1e9, 1e11))
    assert prediction.lr > 0 and math.isfinite(prediction.log_lr_sd)
    lo, hi = prediction.interval()
    assert 0 < lo < hi < math.inf
