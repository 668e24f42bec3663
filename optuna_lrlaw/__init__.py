"""optuna-lrlaw: the optimal learning rate at a new scale, from a Bayesian law fitted on smaller runs.

The public API:

- `Scale`: the scale of a training run (N, D, B).
- `estimate_optimum`: the posterior of the optimal LR from one sweep.
- `fit_law` / `LRLaw`: the law of the optimum across scales, and its predictions.
- `fit_loss_curve`: loss versus training tokens.
- `read_observations`, `observations_from_study`, ...: runs in, as a pandas DataFrame.
- `priors`: the weak default and published laws.
- `LRLawSampler`, `LRLawPruner`, `LRLawConvergence`, `LawFromStorage`: the Optuna plugin.
"""

from optuna_lrlaw import priors
from optuna_lrlaw.integration import (
    DIVERGED_ATTR,
    SCALE_ATTRS,
    Belief,
    LawFromStorage,
    LawSource,
    LRLawConvergence,
    LRLawPruner,
    LRLawSampler,
    observations_from_storage,
    observations_from_study,
    set_study_scale,
    study_scale,
)
from optuna_lrlaw.science import (
    LawPrior,
    LossCurveFit,
    LRLaw,
    LRPrediction,
    OptimumEstimate,
    Scale,
    estimate_optima,
    estimate_optimum,
    fit_law,
    fit_loss_curve,
    flag_divergence,
    read_observations,
    validate_observations,
)

__version__ = "0.1.0"

__all__ = [
    "DIVERGED_ATTR",
    "SCALE_ATTRS",
    "Belief",
    "LRLawConvergence",
    "LRLawPruner",
    "LRLawSampler",
    "LawFromStorage",
    "LawSource",
    "LRLaw",
    "LRPrediction",
    "LawPrior",
    "LossCurveFit",
    "OptimumEstimate",
    "Scale",
    "estimate_optima",
    "estimate_optimum",
    "fit_law",
    "fit_loss_curve",
    "flag_divergence",
    "observations_from_storage",
    "observations_from_study",
    "priors",
    "read_observations",
    "set_study_scale",
    "study_scale",
    "validate_observations",
]
