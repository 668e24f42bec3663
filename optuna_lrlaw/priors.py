"""Priors for `fit_law`: the weak default and published laws, with their units.

See `optuna_lrlaw.science.priors` for how each is stated.

Example:
    >>> from optuna_lrlaw import priors
    >>> sorted(priors.PRIORS)
    ['deepseek', 'paper-a-eq6', 'step-law', 'weak']
"""

from optuna_lrlaw.science.priors import DEEPSEEK, PAPER_A_EQ6, PRIORS, STEP_LAW, WEAK, LawPrior

__all__ = ["DEEPSEEK", "PAPER_A_EQ6", "PRIORS", "STEP_LAW", "WEAK", "LawPrior"]
