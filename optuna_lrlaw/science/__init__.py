"""The science of optuna-lrlaw: where the optimal learning rate is, and how it moves with scale.

This room imports neither torch nor optuna: only numpy, scipy and pandas.
"""

from optuna_lrlaw.science.batch_size import BatchSizeLaw, fit_batch_size_law
from optuna_lrlaw.science.law import LRLaw, estimate_optima, fit_law
from optuna_lrlaw.science.loss_curve import LossCurveFit, fit_loss_curve
from optuna_lrlaw.science.observations import flag_divergence, read_observations, validate_observations
from optuna_lrlaw.science.optimum import OptimumEstimate, estimate_optimum
from optuna_lrlaw.science.prediction import LRPrediction, Recommendation
from optuna_lrlaw.science.priors import LawPrior
from optuna_lrlaw.science.scale import Scale
from optuna_lrlaw.science.truth_curve import TruthCurve, fit_truth_curve

__all__ = [
    "TruthCurve",
    "fit_truth_curve",
    "BatchSizeLaw",
    "LRLaw",
    "LRPrediction",
    "LawPrior",
    "LossCurveFit",
    "OptimumEstimate",
    "Recommendation",
    "Scale",
    "estimate_optima",
    "estimate_optimum",
    "fit_batch_size_law",
    "fit_law",
    "fit_loss_curve",
    "flag_divergence",
    "read_observations",
    "validate_observations",
]
