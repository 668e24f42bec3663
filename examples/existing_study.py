"""An ordinary Optuna study, switched to optuna-lrlaw by changing one line.

    python examples/existing_study.py

The objective stands in for a training run: its final loss depends on the learning rate
the way measured loss curves do (flat near the optimum, steep above it, divergence far
above), on weight decay and warmup a little, and carries run-to-run noise. It reports a loss curve, so a
pruner can act. The only change from a plain TPE study is the sampler line: LRLawSampler
searches the LR (here from a wide prior over the range; give it an `LRLaw` to start from a
prediction) and hands weight decay and warmup to TPE.
"""

from __future__ import annotations

import math

import numpy as np
import optuna

from optuna_lrlaw import LRLawConvergence, LRLawPruner, LRLawSampler

OPTIMAL_LR = 2e-3


def objective(trial: optuna.Trial) -> float:
    lr = trial.suggest_float("lr", 1e-5, 1e-1, log=True)
    weight_decay = trial.suggest_float("weight_decay", 0.0, 0.3)
    warmup = trial.suggest_int("warmup", 0, 2000)
    rng = np.random.default_rng(trial.number)
    u = math.log(lr / OPTIMAL_LR)
    final = 2.6 + 0.02 * (math.expm1(u) - u) + 0.02 * (weight_decay - 0.1) ** 2 + 2e-6 * abs(warmup - 500)
    final += rng.normal(0, 0.002)
    for step in range(1, 11):
        loss = final + (10 - step) / 10 * 3.0 / (1 + step * min(lr / OPTIMAL_LR, 1.0) ** 0.5)
        if u > 2.0 and step > 3:  # far above the optimum: the loss explodes
            loss = 10.0
        trial.report(loss, step)
        if trial.should_prune():
            raise optuna.TrialPruned()
    return loss


if __name__ == "__main__":
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        sampler=LRLawSampler(seed=0),  # was: sampler=optuna.samplers.TPESampler(seed=0)
        pruner=LRLawPruner(),
    )
    study.optimize(objective, n_trials=60, callbacks=[LRLawConvergence(max_expected_regret=1e-3)])
    belief = study.sampler.belief(study)
    lo, hi = belief.interval(0.9)
    print(f"{len(study.trials)} trials; best loss {study.best_value:.4f} with {study.best_params}")
    print(f"optimal LR: {belief.lr:.3g} (90% interval {lo:.3g} to {hi:.3g}); the truth is {OPTIMAL_LR:g}")
