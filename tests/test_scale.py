import math

import pytest

from optuna_lrlaw import Scale


def test_flops_is_six_n_d_and_uses_active_params_for_moe():
    assert Scale(params=1e9, tokens=2e10).flops() == 6 * 1e9 * 2e10
    assert Scale(params=8e9, tokens=1e10, active_params=1e9).flops() == 6 * 1e9 * 1e10


@pytest.mark.parametrize("bad", [0, -1, math.nan, math.inf, "x", True, None])
def test_params_must_be_finite_and_positive(bad):
    with pytest.raises(ValueError, match="params"):
        Scale(params=bad, tokens=1e9)


def test_active_params_cannot_exceed_params():
    with pytest.raises(ValueError, match="active_params"):
        Scale(params=1e8, tokens=1e9, active_params=2e8)


def test_parse_reads_the_cli_target():
    assert Scale.parse("params=1.07e9, tokens=2e10,batch_tokens=524288") == Scale(1.07e9, 2e10, 524288)
    for text in ("params=1e9", "params=1e9,tokens=x", "params=1e9,tokens=1e9,depth=3", "garbage"):
        with pytest.raises(ValueError, match="cannot read scale"):
            Scale.parse(text)


def test_feature_names_a_missing_batch_size():
    with pytest.raises(ValueError, match="batch_tokens"):
        Scale(1e8, 1e9).feature("batch_tokens")
