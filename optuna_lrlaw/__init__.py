"""optuna-lrlaw: the optimal learning rate at a new scale, from a Bayesian law fitted on smaller runs.

The public API:

- `Scale`: the scale of a training run (N, D, B).
- `estimate_optimum`: the posterior of the optimal LR from one sweep.
- `fit_law` / `LRLaw`: the law of the optimum across scales, and its predictions
  (`LRPrediction.recommend`: the LR with the lowest expected loss).
- `fit_batch_size_law`: the batch size with the lowest loss, across scales.
- `fit_loss_curve`: loss versus training tokens.
- `read_observations`, `observations_from_study`, ...: runs in, as a pandas DataFrame.
- `priors`: the weak default and published laws.
- `LRLawSampler`, `LRLawPruner`, `LRLawConvergence`, `LawFromStorage`: the Optuna plugin.
- `ProxyConfig`, `TrainConfig`, `train_proxy`, `proxy_objective`, `build_model`,
  `configure_optimizer`: GPT proxies trained as trials (`optuna_lrlaw.proxies`).
- `Rung`, `default_rungs`, `run_ladder`: the scale-up ladder (`optuna_lrlaw.ladder`).
- `comparison_plan`, `compare_search_costs`: what the ladder saves against μTransfer and
  ordinary search, scored on a truth grid at a target far above the rungs.

The proxies and the ladder are imported on first use, so the law and the plugin load
without torch.
"""

import importlib
from typing import Any

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
    BatchSizeLaw,
    LawPrior,
    LossCurveFit,
    LRLaw,
    LRPrediction,
    OptimumEstimate,
    Recommendation,
    Scale,
    estimate_optima,
    estimate_optimum,
    fit_batch_size_law,
    fit_law,
    fit_loss_curve,
    flag_divergence,
    read_observations,
    validate_observations,
)

__version__ = "0.1.0"

#: Names that need torch, imported on first use from the package that defines them.
_LAZY_EXPORTS = {
    **dict.fromkeys(
        ("ProxyConfig", "TrainConfig", "build_model", "configure_optimizer", "proxy_objective", "train_proxy"),
        "proxies",
    ),
    **dict.fromkeys(("Rung", "compare_search_costs", "comparison_plan", "default_rungs", "run_ladder"), "ladder"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY_EXPORTS:
        module = importlib.import_module(f"optuna_lrlaw.{_LAZY_EXPORTS[name]}")
        return getattr(module, name)
    raise AttributeError(f"module 'optuna_lrlaw' has no attribute {name!r}")


__all__ = [
    "BatchSizeLaw",
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
    "ProxyConfig",
    "Recommendation",
    "Rung",
    "Scale",
    "TrainConfig",
    "build_model",
    "compare_search_costs",
    "comparison_plan",
    "configure_optimizer",
    "default_rungs",
    "estimate_optima",
    "estimate_optimum",
    "fit_batch_size_law",
    "fit_law",
    "fit_loss_curve",
    "flag_divergence",
    "observations_from_storage",
    "observations_from_study",
    "priors",
    "proxy_objective",
    "read_observations",
    "run_ladder",
    "set_study_scale",
    "study_scale",
    "train_proxy",
    "validate_observations",
]
