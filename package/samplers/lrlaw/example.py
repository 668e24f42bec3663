"""LRLawSampler from OptunaHub: the learning rate of a new scale, from a law fitted on smaller runs.

    pip install optunahub optuna-lrlaw && python example.py
"""

import math

import numpy as np
import optuna
import optunahub
import pandas as pd

module = optunahub.load_module("samplers/lrlaw")  # or load_local_module("samplers/lrlaw", registry_root=...)

# Sweeps at three small scales (here synthetic: optimum 3e-3 * (N / 1e7)^-0.5).
rows = []
for params in (1e7, 2.5e7, 6.25e7):
    optimum = 3e-3 * (params / 1e7) ** -0.5
    for lr in optimum * np.geomspace(0.2, 5, 7):
        loss = 2.5 + 0.02 * math.log(lr / optimum) ** 2
        rows.append({"params": params, "tokens": 20 * params, "lr": lr, "loss": loss})
law = module.fit_law(pd.DataFrame(rows))

# The LR search at a 16x larger scale starts at the law's recommended LR.
target = module.Scale(params=1.6e8, tokens=3.2e9)
study = optuna.create_study(sampler=module.LRLawSampler(law, scale=target, seed=0))
true_optimum = 3e-3 * 16**-0.5
study.optimize(lambda t: 2.5 + 0.02 * math.log(t.suggest_float("lr", 1e-5, 1e-1, log=True) / true_optimum) ** 2, 4)
print(f"law predicts {law.predict(target)}; best trial lr {study.best_params['lr']:.3g} (true {true_optimum:.3g})")
