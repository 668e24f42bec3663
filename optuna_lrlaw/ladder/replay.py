"""Searches replayed on a truth curve: how many trials an Optuna sampler needs, over many seeds.

Training a real search a hundred times at the target is what the comparison cannot afford;
the truth grid (`science.truth_curve`) already measured what any LR there gives, and how
much one run's loss varies between seeds. A replay runs the sampler unchanged against that
curve: each trial's loss is the curve at the suggested LR plus one seed's noise, the search
ends on the trial with the lowest *observed* loss (as a real one would), and that LR is
scored by its *expected* regret on the curve.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import optuna
import pandas as pd

from optuna_lrlaw.science.truth_curve import TruthCurve

#: Regret levels the replays report the trials to.
REGRET_GOALS = (0.005, 0.01)


def replay_search(
    curve: TruthCurve,
    make_sampler: Callable[[int], optuna.samplers.BaseSampler],
    *,
    trials: int,
    seeds: int,
    lr_range: tuple[float, float] | None = None,
    lr_param: str = "lr",
) -> np.ndarray:
    """The expected regret of each replayed search's choice after every trial: shape (seeds, trials).

    Args:
        curve: the truth at the target.
        make_sampler: a fresh sampler for a seed (e.g. ``lambda seed: TPESampler(seed=seed)``).
        trials, seeds: the length and number of searches.
        lr_range: the LR range searched, log-uniformly (default: the truth grid's reach).
        lr_param: the name the LR is suggested under (what a law-aware sampler looks for).
    """
    if trials < 1 or seeds < 1:
        raise ValueError(f"trials and seeds must be at least 1, got {trials}, {seeds}")
    low, high = lr_range or (float(curve.lrs[0]), float(curve.lrs[-1]))
    regrets = np.empty((seeds, trials))
    for seed in range(seeds):
        noise = np.random.default_rng([seed, 1])

        def objective(trial: optuna.Trial, noise: np.random.Generator = noise) -> float:
            return curve.sample_loss(trial.suggest_float(lr_param, low, high, log=True), noise)

        study = optuna.create_study(sampler=make_sampler(seed), pruner=optuna.pruners.NopPruner())
        study.optimize(objective, n_trials=trials)
        lrs = np.array([t.params[lr_param] for t in study.trials])
        values = np.array([t.value for t in study.trials])
        # The search's choice after k trials is the trial with the lowest loss seen so far.
        chosen = [int(np.argmin(values[: k + 1])) for k in range(trials)]
        regrets[seed] = curve.regret(lrs[chosen])
    return regrets


def summarize_replay(regrets: np.ndarray, *, flops_per_run: float, seconds_per_run: float) -> pd.DataFrame:
    """Per trial count k: the mean regret of the choice over seeds with its standard error, and
    the FLOPs and device seconds of k runs."""
    k = np.arange(1, regrets.shape[1] + 1)
    return pd.DataFrame(
        {
            "trials": k,
            "regret": regrets.mean(axis=0),
            "regret_se": regrets.std(axis=0, ddof=1) / math.sqrt(regrets.shape[0]) if regrets.shape[0] > 1 else np.nan,
            "flops": k * flops_per_run,
            "seconds": k * seconds_per_run,
        }
    )


def trials_to_goal(regrets: np.ndarray, goal: float) -> np.ndarray:
    """Per replayed search, the first trial count whose choice is within ``goal`` (inf if never)."""
    hits = regrets <= goal
    return np.where(hits.any(axis=1), hits.argmax(axis=1) + 1.0, math.inf)
