"""OptunaHub entry point for LRLawSampler: the sampler itself, from the optuna-lrlaw package.

The registry holds no copy of the code: this module re-exports the installed package's
classes, so what OptunaHub loads is what optuna-lrlaw tests.
"""

from optuna_lrlaw import LawFromStorage, LRLawPruner, LRLawSampler, Scale, fit_law, set_study_scale

__all__ = ["LRLawPruner", "LRLawSampler", "LawFromStorage", "Scale", "fit_law", "set_study_scale"]
