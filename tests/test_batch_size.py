"""Which batch size: `fit_batch_size_law` on synthetic sweeps and on Step Law's table."""

import math

import numpy as np
import pandas as pd
import pytest

from optuna_lrlaw import Scale
from optuna_lrlaw.science.batch_size import fit_batch_size_law

BATCH_SIZES = tuple(2.0 ** np.arange(15, 24))


def batch_runs(seed=0, exponent=0.6, batch_sizes=BATCH_SIZES):
    """LR sweeps at several batch sizes per (N, D) cell; the best loss over LRs is lowest at
    B_opt = 2^19 * (D / 1e9)^exponent, rising as (log B - log B_opt)^2 around it."""
    rng = np.random.default_rng(seed)
    frames = []
    for n in (1e7, 2.5e7, 6.25e7):
        for d in (1e9, 4e9, 1.6e10):
            b_opt = 2.0**19 * (d / 1e9) ** exponent
            for b in batch_sizes:
                lrs = 3e-3 * np.geomspace(0.1, 10, 9)
                floor = 2.5 * (1 + 0.01 * math.log(b / b_opt) ** 2)
                loss = floor * (1 + 0.02 * np.log(lrs / 3e-3) ** 2 + rng.normal(0, 5e-4, lrs.size))
                frames.append(pd.DataFrame({"lr": lrs, "loss": loss, "params": n, "tokens": d, "batch_tokens": b}))
    return pd.concat(frames, ignore_index=True)


def test_recovers_how_the_best_batch_size_moves_with_the_data():
    law = fit_batch_size_law(batch_runs())
    table = law.coefficients()
    assert table.loc["tokens", "lo"] < 0.6 < table.loc["tokens", "hi"]
    assert table.loc["params", "lo"] < 0.0 < table.loc["params", "hi"]
    prediction = law.predict(Scale(1e9, 1e10))
    lo, hi = prediction.interval()
    assert lo < 2.0**19 * 10**0.6 < hi
    assert "B_opt" in str(prediction)
    assert law.optima["used"].all() and len(law.optima) == 9


def test_says_so_when_the_runs_do_not_locate_a_best_batch_size():
    # Every cell's best batch size is its largest: nothing brackets B_opt.
    runs = batch_runs(batch_sizes=tuple(2.0 ** np.arange(12, 16)))
    with pytest.raises(ValueError, match="do not say which batch size is best"):
        fit_batch_size_law(runs)
    with pytest.raises(ValueError, match="batch_tokens"):
        fit_batch_size_law(runs.drop(columns="batch_tokens"))
    with pytest.raises(ValueError, match="features"):
        fit_batch_size_law(runs, features=("batch_tokens",))


def test_step_law_best_batch_size_at_the_largest_model(steplaw_csv):
    """Fitted on N < 1e9 in D alone (Step Law: B_opt depends mainly on D), the predicted best
    batch size of each N = 1.07e9 cell costs at most 0.25% of loss (its nearest batch size's
    best loss over the cell's best; docs/validation.md)."""
    from optuna_lrlaw.science.steplaw import read_steplaw

    runs = read_steplaw(steplaw_csv)
    law = fit_batch_size_law(runs[runs["params"] < 1e9], features=("tokens",))
    large = runs[runs["params"] > 1e9]
    for tokens, cell in large.groupby("tokens"):
        best = cell.groupby("batch_tokens")["loss"].min()
        predicted = law.predict(Scale(1.07e9, tokens)).batch_tokens
        nearest = best.index[np.argmin(np.abs(np.log(best.index / predicted)))]
        assert best[nearest] / best.min() - 1 <= 0.0025
