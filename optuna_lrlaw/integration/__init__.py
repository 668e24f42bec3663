"""Optuna integration: studies as sources of runs, the sampler, the pruner and the stopping rule."""

from optuna_lrlaw.integration.convergence import LRLawConvergence
from optuna_lrlaw.integration.law_source import LawFromStorage
from optuna_lrlaw.integration.pruner import LRLawPruner
from optuna_lrlaw.integration.sampler import Belief, LawSource, LRLawSampler
from optuna_lrlaw.integration.study import (
    DIVERGED_ATTR,
    SCALE_ATTRS,
    observations_from_storage,
    observations_from_study,
    set_study_scale,
    study_scale,
    trial_outcome,
)

__all__ = [
    "DIVERGED_ATTR",
    "SCALE_ATTRS",
    "Belief",
    "LRLawConvergence",
    "LRLawPruner",
    "LRLawSampler",
    "LawFromStorage",
    "LawSource",
    "observations_from_storage",
    "observations_from_study",
    "set_study_scale",
    "study_scale",
    "trial_outcome",
]
