"""The truth at a target: a dense LR grid at several seeds, and replays of searches on it."""

import math

import numpy as np
import optuna
import pandas as pd
import pytest

from optuna_lrlaw.ladder.replay import replay_search, summarize_replay, trials_to_goal
from optuna_lrlaw.science.truth_curve import fit_truth_curve, local_optimum

OPTIMUM = 5e-3


def grid_runs(seeds=(0, 1), noise=0.0, lrs=None, rng_seed=0):
    """Runs of a parabola in log LR (curvature 0.02 nats per e-fold squared) around OPTIMUM."""
    rng = np.random.default_rng(rng_seed)
    lrs = np.geomspace(OPTIMUM / 6, OPTIMUM * 6, 9) if lrs is None else lrs
    return pd.DataFrame(
        [
            {"lr": lr, "seed": s, "loss": 2.0 + 0.02 * math.log(lr / OPTIMUM) ** 2 + noise * rng.standard_normal()}
            for lr in lrs
            for s in seeds
        ]
    )


def test_the_curve_finds_the_minimum_between_grid_points_and_scores_regret():
    curve = fit_truth_curve(grid_runs())
    assert curve.bracketed and curve.seeds == 2 and curve.seed_sd == 0.0
    assert curve.best_lr == pytest.approx(OPTIMUM, rel=0.05)
    assert curve.best_loss == pytest.approx(2.0, abs=1e-3)
    # A parabola: one e-fold off costs 0.02 / 2.0 = 1%.
    assert curve.regret(OPTIMUM * math.e) == pytest.approx(0.01, rel=0.05)
    assert curve.regret(curve.best_lr) == pytest.approx(0.0, abs=1e-12)
    # Beyond the grid the loss is the nearest end's: never extrapolated into a new minimum.
    assert curve.loss(1e-9) == pytest.approx(curve.mean_loss[0])
    assert curve.span == pytest.approx(36.0)


def test_the_seed_spread_is_the_noise_and_sets_the_regrets_standard_error():
    lrs = np.geomspace(OPTIMUM / 6, OPTIMUM * 6, 9)
    runs = grid_runs(lrs=lrs)
    runs.loc[runs["seed"] == 1, "loss"] += 0.01  # every pair differs by 0.01: sd 0.01 / sqrt(2)
    curve = fit_truth_curve(runs)
    assert curve.seed_sd == pytest.approx(0.01 / math.sqrt(2))
    near, far = curve.regret_se(np.array([OPTIMUM * 1.5, OPTIMUM * 6]))
    assert near > 0 and far > 0
    more_seeds = fit_truth_curve(grid_runs(seeds=range(8), noise=0.005, lrs=lrs))
    fewer_seeds = fit_truth_curve(grid_runs(seeds=range(2), noise=0.005, lrs=lrs))
    assert more_seeds.regret_se(OPTIMUM * 3) < fewer_seeds.regret_se(OPTIMUM * 3) * more_seeds.seed_sd / (
        fewer_seeds.seed_sd * 1.2
    )


def test_diverged_grid_points_do_not_count_in_the_seed_noise():
    runs = grid_runs()
    top = runs["lr"] == runs["lr"].max()
    runs.loc[top, "loss"] = [5.5, 4.0]  # both diverged, at different losses
    runs["diverged"] = top
    assert fit_truth_curve(runs).seed_sd == 0.0


@pytest.mark.parametrize(
    ("runs", "message"),
    [
        (grid_runs().drop(columns="seed"), "missing \\['seed'\\]"),
        (grid_runs(seeds=(0,)), "2 or more seeds"),
        (grid_runs(lrs=[1e-3, 2e-3]), "at least 3 grid LRs"),
        (grid_runs().assign(loss=np.nan), "finite final loss"),
    ],
)
def test_bad_grids_are_refused(runs, message):
    with pytest.raises(ValueError, match=message):
        fit_truth_curve(runs)


class FixedSampler(optuna.samplers.RandomSampler):
    """Suggests one LR first, then random ones: a search that starts at ``lr``."""

    def __init__(self, lr, seed):
        super().__init__(seed=seed)
        self.lr = lr

    def sample_independent(self, study, trial, name, distribution):
        if trial.number == 0:
            return self.lr
        return super().sample_independent(study, trial, name, distribution)


def test_a_replayed_search_is_scored_by_the_expected_regret_of_its_observed_best():
    curve = fit_truth_curve(grid_runs(noise=0.002))
    at_optimum = replay_search(curve, lambda s: FixedSampler(curve.best_lr, s), trials=6, seeds=5)
    assert at_optimum.shape == (5, 6)
    assert np.all(at_optimum[:, 0] == pytest.approx(0.0, abs=1e-12))
    # Later trials replace the choice only when their *observed* loss is lower: with noise the
    # search can leave the optimum, as a real one can.
    assert np.all(at_optimum >= 0)
    random = replay_search(curve, lambda s: optuna.samplers.RandomSampler(seed=s), trials=12, seeds=20)
    assert random[:, -1].mean() < random[:, 0].mean()
    with pytest.raises(ValueError, match="at least 1"):
        replay_search(curve, lambda s: optuna.samplers.RandomSampler(seed=s), trials=0, seeds=1)


def test_trials_to_goal_and_the_replay_summary():
    regrets = np.array([[0.02, 0.004, 0.004], [0.02, 0.02, 0.009], [0.001, 0.001, 0.001]])
    assert trials_to_goal(regrets, 0.005).tolist() == [2.0, math.inf, 1.0]
    assert trials_to_goal(regrets, 0.01).tolist() == [2.0, 3.0, 1.0]
    summary = summarize_replay(regrets, flops_per_run=10.0, seconds_per_run=2.0)
    assert summary["trials"].tolist() == [1, 2, 3]
    assert summary["flops"].tolist() == [10.0, 20.0, 30.0] and summary["seconds"].tolist() == [2.0, 4.0, 6.0]
    assert summary["regret"].iloc[0] == pytest.approx(0.041 / 3)
    assert summary["regret_se"].iloc[0] == pytest.approx(regrets[:, 0].std(ddof=1) / math.sqrt(3))


def test_a_single_seed_grid_is_accepted_when_asked_and_has_no_noise():
    curve = fit_truth_curve(grid_runs(seeds=(0,)), min_seeds=1)
    assert curve.seeds == 1 and curve.seed_sd == 0.0
    assert curve.best_lr == pytest.approx(OPTIMUM, rel=0.05)


def test_local_optimum_lies_between_grid_lrs_and_ignores_each_seeds_offset():
    """A seed that shifts every run's loss by the same amount (common random numbers) does not
    move the optimum: the seed bootstrap gives it no spread. Noise that differs between LRs does."""
    lrs = 1e-3 * 2 ** (np.arange(9) / 2)
    curve = 2.0 + 0.04 * np.log(lrs / 4.2e-3) ** 2
    offsets = pd.DataFrame(
        {
            "lr": np.tile(lrs, 3),
            "seed": np.repeat([0, 1, 2], 9),
            "loss": np.tile(curve, 3) + np.repeat([0.0, 0.02, -0.03], 9),
        }
    )
    optimum = local_optimum(offsets)
    assert optimum.lr == pytest.approx(4.2e-3, rel=0.01)
    assert 4.2e-3 not in lrs and optimum.log_lr_sd < 1e-9
    noisy = offsets.assign(loss=offsets["loss"] + np.random.default_rng(0).normal(0, 0.01, len(offsets)))
    lo, hi = local_optimum(noisy).interval(0.9)
    assert local_optimum(noisy).log_lr_sd > 0.01 and lo < hi
