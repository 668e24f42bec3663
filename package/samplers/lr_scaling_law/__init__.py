"""OptunaHub entry point for LRLawSampler and LRLawPruner, from the optuna-lrlaw package.

The registry holds no copy of the code: this module re-exports the installed package's
classes, so what OptunaHub loads is what optuna-lrlaw tests.
"""

try:
    from optuna_lrlaw import fit_law
    from optuna_lrlaw import LawFromStorage
    from optuna_lrlaw import LRLawPruner
    from optuna_lrlaw import LRLawSampler
    from optuna_lrlaw import Scale
    from optuna_lrlaw import set_study_scale
except ImportError as error:
    raise ImportError(
        "samplers/lr_scaling_law needs the optuna-lrlaw package: pip install optuna-lrlaw"
    ) from error


__all__ = [
    "LRLawPruner",
    "LRLawSampler",
    "LawFromStorage",
    "Scale",
    "fit_law",
    "set_study_scale",
]
