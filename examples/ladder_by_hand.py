"""Three studies of growing scale in one SQLite storage, the law updating between them.

    python examples/ladder_by_hand.py [--storage sqlite:///ladder.db]

Each study records its scale (`set_study_scale`); one `LawFromStorage` serves every
study's sampler, so the third study starts from the law fitted on the first two. The
runs are stand-ins for training (an analytic loss whose optimal LR follows
eta* = 0.5 * N^-0.35, with noise and divergence).
"""

from __future__ import annotations

import argparse
import math

import numpy as np
import optuna

from optuna_lrlaw import LawFromStorage, LRLawConvergence, LRLawSampler, Scale, set_study_scale


def true_optimum(params: float) -> float:
    return 0.5 * params**-0.35


def make_objective(params: float):
    def objective(trial: optuna.Trial) -> float:
        lr = trial.suggest_float("lr", 1e-5, 1e-1, log=True)
        u = math.log(lr / true_optimum(params))
        if u > 2.0:
            return math.inf  # diverged: inf, not NaN (Optuna fails a trial that returns NaN)
        noise = np.random.default_rng(trial.number).normal(0, 0.002)
        return 2.0 + 30 * params**-0.2 + 0.02 * (math.expm1(u) - u) + noise

    return objective


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--storage", default="sqlite:///ladder.db")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    law = LawFromStorage(args.storage, features=("params",))
    for params in (1e7, 4e7, 1.6e8):
        scale = Scale(params=params, tokens=20 * params)
        study = optuna.create_study(
            storage=args.storage,
            study_name=f"N={params:.3g}",
            sampler=LRLawSampler(law, seed=0, acquisition="spread"),  # a rung measures its optimum
            load_if_exists=True,
        )
        set_study_scale(study, scale)
        fitted = law.law_for(study)
        start = "no law yet: a wide prior" if fitted is None else f"law predicts {fitted.predict(scale)}"
        study.optimize(make_objective(params), n_trials=30, callbacks=[LRLawConvergence()])
        belief = study.sampler.belief(study)
        print(
            f"N={params:.3g}: {start}\n"
            f"    {len(study.trials)} trials -> lr* {belief.lr:.3g} (truth {true_optimum(params):.3g})"
        )


if __name__ == "__main__":
    main()
