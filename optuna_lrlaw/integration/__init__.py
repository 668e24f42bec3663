"""Optuna integration: studies as sources of observations (and, later, the sampler and pruner)."""

from optuna_lrlaw.integration.study import (
    DIVERGED_ATTR,
    SCALE_ATTRS,
    observations_from_storage,
    observations_from_study,
    set_study_scale,
    study_scale,
)

__all__ = [
    "DIVERGED_ATTR",
    "SCALE_ATTRS",
    "observations_from_storage",
    "observations_from_study",
    "set_study_scale",
    "study_scale",
]
