"""Priors for `fit_law`: the weak default, published laws with their units, and μP's.

See `optuna_lrlaw.science.priors` for how each is stated.

Example:
    >>> from optuna_lrlaw import priors
    >>> sorted(priors.PRIORS)
    ['deepseek', 'mup', 'paper-a-eq6', 'step-law', 'weak']
"""

from optuna_lrlaw.science.priors import DEEPSEEK, MUP, PAPER_A_EQ6, PRIORS, STEP_LAW, WEAK, LawPrior

__all__ = ["DEEPSEEK", "MUP", "PAPER_A_EQ6", "PRIORS", "STEP_LAW", "WEAK", "LawPrior"]
