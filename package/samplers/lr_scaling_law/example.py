"""The learning rate at a 16x larger scale, from a law fitted on sweeps at three small ones.

pip install optunahub optuna-lrlaw && python example.py
"""

import math

import numpy as np
import optuna
import optunahub
import pandas as pd


module = optunahub.load_module("samplers/lr_scaling_law")


def true_optimum(params: float) -> float:
    """The optimal LR of these synthetic runs: 3e-3 at 1e7 parameters, falling as N^-0.5."""
    return 3e-3 * (params / 1e7) ** -0.5


def loss(lr: float, params: float) -> float:
    """A final loss 6% above its best one e-fold from the optimum (as small GPTs show), rising
    faster above the optimum than below it, and blowing up far above."""
    u = math.log(lr / true_optimum(params))
    return math.inf if u > 2.5 else 2.5 * (1 + 0.12 * (math.expm1(u) - u))


# Sweeps at three small scales, seven LRs each.
rows = [
    {"params": params, "tokens": 20 * params, "lr": lr, "loss": loss(lr, params)}
    for params in (1e7, 2.5e7, 6.25e7)
    for lr in true_optimum(params) * np.geomspace(0.2, 5, 7)
]
law = module.fit_law(pd.DataFrame(rows))

# The search at the target scale starts at the law's median and narrows from there.
target = module.Scale(params=1.6e8, tokens=3.2e9)
study = optuna.create_study(
    study_name="lr at 1.6e8 parameters",
    sampler=module.LRLawSampler(law, scale=target, seed=0),
    pruner=module.LRLawPruner(),
)
study.optimize(
    lambda trial: loss(trial.suggest_float("lr", 1e-5, 1e-1, log=True), target.params), n_trials=8
)
print(f"law predicts {law.predict(target)}")
print(f"best trial lr {study.best_params['lr']:.3g} (true {true_optimum(target.params):.3g})")
