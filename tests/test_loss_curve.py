import numpy as np
import pytest

from optuna_lrlaw import fit_loss_curve


def test_recovers_a_power_law_in_data_and_predicts_a_longer_run():
    rng = np.random.default_rng(3)
    tokens = np.geomspace(1e8, 1e10, 10)
    losses = 2.0 + 300 * tokens**-0.3 + rng.normal(0, 2e-3, tokens.size)
    fit = fit_loss_curve(tokens, losses)
    lo, hi = fit.gamma_interval(0.99)
    assert lo < 0.3 < hi
    longer = fit.predict(1e11)
    q05, q95 = longer.quantile([0.05, 0.95])
    assert q05 < 2.0 + 300 * 1e11**-0.3 < q95


@pytest.mark.parametrize(
    ("tokens", "losses", "message"),
    [
        ([1e8, 1e9], [3.0, 2.9], "3 distinct"),
        ([1e8, -1, 1e10], [3, 2, 1], "positive"),
        ([1e8, 1e9, 1e10], [3, np.nan, 1], "finite"),
    ],
)
def test_bad_input(tokens, losses, message):
    with pytest.raises(ValueError, match=message):
        fit_loss_curve(tokens, losses)
