import numpy as np
import pandas as pd
import pytest

from optuna_lrlaw import flag_divergence, read_observations, validate_observations


def runs(**overrides):
    frame = pd.DataFrame({"params": [1e8] * 3, "tokens": [1e9] * 3, "lr": [1e-3, 2e-3, 4e-3], "loss": [3.0, 2.9, 3.1]})
    for column, (row, value) in overrides.items():
        frame[column] = frame[column].astype(object)
        frame.loc[row, column] = value
    return frame


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (pd.DataFrame(), "empty"),
        (runs().drop(columns="loss"), "missing column 'loss'"),
        (runs(lr=(1, 0.0)), "column 'lr', row 1"),
        (runs(lr=(2, -1e-3)), "column 'lr', row 2"),
        (runs(lr=(0, np.nan)), "column 'lr', row 0"),
        (runs(loss=(1, np.nan)), "column 'loss', row 1.*not marked diverged"),
        (runs(tokens=(2, "lots")), "column 'tokens', row 2: 'lots' is not a number"),
        (runs(params=(0, np.inf)), "column 'params', row 0"),
    ],
)
def test_bad_tables_name_the_column_and_row(frame, message):
    with pytest.raises(ValueError, match=message):
        validate_observations(frame)


def test_diverged_runs_may_have_no_loss_and_flags_parse_from_text():
    frame = runs(loss=(2, np.nan)).assign(diverged=["false", "no", "true"])
    clean = validate_observations(frame)
    assert clean["diverged"].tolist() == [False, False, True]
    assert clean["loss"].dtype == float
    with pytest.raises(ValueError, match="column 'diverged', row 0"):
        validate_observations(runs().assign(diverged=["maybe", "no", "no"]))


def test_batch_tokens_required_only_when_asked():
    frame = runs()
    validate_observations(frame)
    with pytest.raises(ValueError, match="missing column 'batch_tokens'"):
        validate_observations(frame, require=("batch_tokens",))


def test_csv_and_parquet_round_trip(tmp_path):
    frame = runs().assign(note=["a", "b", "c"])
    frame.to_csv(tmp_path / "runs.csv", index=False)
    frame.to_parquet(tmp_path / "runs.parquet")
    for name in ("runs.csv", "runs.parquet"):
        read = read_observations(tmp_path / name)
        pd.testing.assert_series_equal(read["lr"], frame["lr"])
        assert read["note"].tolist() == ["a", "b", "c"]
    with pytest.raises(ValueError, match="expected a .csv"):
        read_observations(tmp_path / "runs.xlsx")


def test_flag_divergence_marks_runs_far_above_their_sweep_best():
    frame = pd.concat([runs(), runs(loss=(2, 7.0)).assign(tokens=2e9)], ignore_index=True)
    flagged = flag_divergence(frame, factor=1.5)
    assert flagged["diverged"].tolist() == [False] * 5 + [True]
