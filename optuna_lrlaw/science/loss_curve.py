"""Loss versus training tokens: ``L(D) = L0 + A * D^-gamma`` (paper A, Eq. 4).

Under a warmup-stable-decay schedule the loss of one configuration follows this curve, so
a few short runs (or the stable-phase checkpoints of one run) predict a longer one; this
is what removes most of the data axis from an LR search. For a fixed ``gamma`` the curve
is linear in ``(L0, A)``, which integrate out exactly (as in `estimate_optimum`); the
posterior of ``gamma`` is evaluated on a grid, with ``A > 0`` imposed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from optuna_lrlaw.science._bayes import (
    FloatArray,
    GaussianMixture,
    GridDistribution,
    GridLinearFit,
    central_interval,
    fit_shape_on_grid,
)

#: Exponents considered (uniform prior); published values lie around 0.1 to 0.6.
_GAMMA_GRID = np.linspace(0.01, 2.0, 400)
_RELATIVE_NOISE = 1e-3


@dataclass(frozen=True)
class LossCurveFit:
    """The posterior of ``L(D) = L0 + A * D^-gamma`` fitted to one configuration's losses.

    Attributes:
        gamma, gamma_sd: posterior mean and sd of the data exponent.
        l0: the irreducible loss L0 at the posterior-mean gamma (the loss as D grows without
            bound).
        amplitude: A at the posterior-mean gamma, for D in tokens.
    """

    gamma: float
    gamma_sd: float
    l0: float
    amplitude: float
    _gamma_posterior: GridDistribution = field(repr=False, compare=False)
    _fit: GridLinearFit = field(repr=False, compare=False)
    _tokens_ref: float = field(repr=False, compare=False)
    _loss_offset: float = field(repr=False, compare=False)
    _loss_scale: float = field(repr=False, compare=False)

    def gamma_interval(self, q: float = 0.9) -> tuple[float, float]:
        """Equal-tailed posterior interval of gamma."""
        return central_interval(self._gamma_posterior.quantile, q)

    def predict(self, tokens: float) -> GaussianMixture:
        """Posterior of the expected loss after ``tokens`` tokens, a mixture over gamma.

        Use ``.mean``, ``.sd`` and ``.quantile(q)`` of the result.
        """
        if not (math.isfinite(tokens) and tokens > 0):
            raise ValueError(f"tokens must be finite and positive, got {tokens!r}")
        shape = (tokens / self._tokens_ref) ** -self._gamma_posterior.grid
        means = self._loss_offset + self._loss_scale * (self._fit.intercept + self._fit.slope * shape)
        sds = self._loss_scale * self._fit.mean_sd(shape)
        weights = self._gamma_posterior.weights
        keep = weights > 1e-12
        return GaussianMixture(weights[keep] / weights[keep].sum(), means[keep], sds[keep])


def fit_loss_curve(tokens: Sequence[float] | FloatArray, losses: Sequence[float] | FloatArray) -> LossCurveFit:
    """Fit ``L(D) = L0 + A * D^-gamma`` to losses measured after ``tokens`` tokens.

    Args:
        tokens: training tokens of each measurement (positive; at least three distinct).
        losses: the losses there (finite).

    Example:
        >>> import numpy as np
        >>> d = np.geomspace(1e8, 1e10, 8)
        >>> round(fit_loss_curve(d, 2.0 + 300 * d ** -0.3).gamma, 2)
        0.3
    """
    d = np.asarray(tokens, dtype=float)
    loss = np.asarray(losses, dtype=float)
    if d.ndim != 1 or loss.shape != d.shape:
        raise ValueError("tokens and losses must be one-dimensional and of equal length")
    if not np.all(np.isfinite(d) & (d > 0)):
        raise ValueError("tokens must be finite and positive")
    if not np.all(np.isfinite(loss)):
        raise ValueError("losses must be finite")
    if np.unique(d).size < 3:
        raise ValueError("at least 3 distinct token counts are needed to fit L(D) = L0 + A D^-gamma")
    tokens_ref = float(np.exp(np.log(d).mean()))
    offset = float(loss.min())
    scale = abs(offset) if offset != 0 else 1.0
    with np.errstate(all="ignore"):
        shapes = (d[None, :] / tokens_ref) ** -_GAMMA_GRID[:, None]
        fit = fit_shape_on_grid((loss - offset) / scale, shapes, noise_scale=_RELATIVE_NOISE)
        posterior = GridDistribution.from_log_density(_GAMMA_GRID, fit.log_evidence + fit.log_prob_positive_slope())
    at = int(np.argmin(np.abs(_GAMMA_GRID - posterior.mean)))
    gamma = posterior.mean
    amplitude = float(fit.slope[at] * scale * tokens_ref ** _GAMMA_GRID[at])
    l0 = float(offset + scale * fit.intercept[at])
    if not all(math.isfinite(v) for v in (gamma, l0, amplitude)):
        raise ValueError("the losses are too extreme to fit a finite curve")
    return LossCurveFit(
        gamma=gamma,
        gamma_sd=posterior.sd,
        l0=l0,
        amplitude=amplitude,
        _gamma_posterior=posterior,
        _fit=fit,
        _tokens_ref=tokens_ref,
        _loss_offset=offset,
        _loss_scale=scale,
    )
