"""Which batch size? The batch size with the lowest loss, and how it moves with scale.

The runs that fit the LR law at several batch sizes answer this too. In each (N, D) cell,
the best loss each batch size reached (over its LR sweep) traces a curve in log B with a
minimum, B_opt; it is the same problem as locating eta* in one sweep, so `estimate_optimum`
solves it, and B_opt across cells gets the same Bayesian power law as eta*
(Step Law, arXiv 2503.04715, reports B_opt ~ D^0.57 with little dependence on N).

Whether the data support an answer is part of the answer: a cell whose best batch size is
the smallest or the largest it tried only bounds B_opt, and is left out; with no cell
bracketing its B_opt, `fit_batch_size_law` says so instead of guessing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from optuna_lrlaw.science.law import LRLaw, fit_law
from optuna_lrlaw.science.observations import validate_observations
from optuna_lrlaw.science.priors import LawPrior
from optuna_lrlaw.science.scale import Scale

#: The default prior: B_opt at N = 1e8, D = 1e10 within a factor e^3 (about 20) of a million
#: tokens (1 sd), exponents unknown (each N(0, 1)).
WEAK_BATCH_PRIOR = LawPrior(
    name="weak-batch",
    log_lr=(math.log(1e6), 3.0),
    reference={"params": 1e8, "tokens": 1e10},
    units="B_opt in tokens per step; N non-embedding parameters, D tokens",
    source="optuna-lrlaw default",
)


@dataclass(frozen=True)
class BatchSizePrediction:
    """The batch size (tokens per step) with the lowest predicted loss at one scale."""

    scale: Scale
    batch_tokens: float
    log_sd: float
    _interval: tuple[float, float]

    def interval(self) -> tuple[float, float]:
        """The 90% predictive interval of B_opt, in tokens per step."""
        return self._interval

    def __str__(self) -> str:
        lo, hi = self._interval
        return f"B_opt = {self.batch_tokens:.3g} tokens per step (90% interval {lo:.3g} to {hi:.3g})"


class BatchSizeLaw:
    """``B_opt = A * N^a * D^b``, fitted from the best loss of every (N, D, B) sweep.

    Example:
        >>> law = fit_batch_size_law(runs)                              # doctest: +SKIP
        >>> law.predict(Scale(params=1.07e9, tokens=2e10)).batch_tokens  # doctest: +SKIP
    """

    def __init__(self, law: LRLaw, best_losses: pd.DataFrame) -> None:
        self._law = law
        #: The best loss of each (N, D, B) sweep: what B_opt is located from.
        self.best_losses = best_losses

    @property
    def optima(self) -> pd.DataFrame:
        """B_opt of each (N, D) cell (column ``lr`` holds it, in tokens), with ``used`` and ``note``."""
        return self._law.optima.rename(columns={"lr": "batch_tokens", "lr_lo": "batch_lo", "lr_hi": "batch_hi"})

    def coefficients(self, q: float = 0.9) -> pd.DataFrame:
        """The exponents of N and D in B_opt, and the prefactor, with ``q`` intervals."""
        return self._law.coefficients(q)

    def predict(self, scale: Scale) -> BatchSizePrediction:
        prediction = self._law.predict(Scale(scale.params, scale.tokens))
        return BatchSizePrediction(scale, prediction.lr, prediction.log_lr_sd, prediction.interval(0.9))


def fit_batch_size_law(
    observations: pd.DataFrame,
    *,
    features: Sequence[str] = ("params", "tokens"),
    prior: LawPrior = WEAK_BATCH_PRIOR,
) -> BatchSizeLaw:
    """Fit the law of the loss-optimal batch size from LR sweeps at several batch sizes.

    Args:
        observations: runs with ``batch_tokens``, in the `observations` schema.
        features: what B_opt depends on, from ``params`` and ``tokens``.
        prior: a `LawPrior` on log B_opt (its ``log_lr`` is log B_opt, in tokens).

    Raises:
        ValueError: when no (N, D) cell tried three batch sizes or none brackets its B_opt:
            the data do not say which batch size is best.
    """
    if not set(features) <= {"params", "tokens"} or not features:
        raise ValueError(f"B_opt's features must be drawn from ('params', 'tokens'), got {tuple(features)}")
    clean = validate_observations(observations, require=("batch_tokens",))
    finite = clean[~clean["diverged"].astype(bool)]
    best = finite.groupby(["params", "tokens", "batch_tokens"], as_index=False)["loss"].min()
    table = best.rename(columns={"batch_tokens": "lr"}).assign(diverged=False)
    try:
        law = fit_law(table, features=tuple(features), prior=prior)
    except ValueError as error:
        raise ValueError(
            "the runs do not say which batch size is best: each (N, D) cell needs sweeps at three or more "
            f"batch sizes with the best one between others ({error})"
        ) from None
    return BatchSizeLaw(law, best)
