"""Small exact-Bayes building blocks shared by the science modules.

Two of our models are linear in all parameters but one: the loss-versus-LR parabola
``L = L_min + C (x - x*)^2`` is linear in ``(L_min, C)`` once ``x*`` is fixed, and the
loss-versus-data curve ``L = L0 + A D^-gamma`` is linear in ``(L0, A)`` once ``gamma`` is
fixed. For such models the linear coefficients and the noise variance integrate out in
closed form, leaving a one-dimensional posterior over the nonlinear parameter that we
evaluate on a grid. No sampling, no optimizer that can fail to converge.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import special, stats

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class GridLinearFit:
    """Per-grid-point results of the fit ``y ~ intercept + slope * shape[g]``.

    Attributes:
        log_evidence: log marginal likelihood of ``y`` at each grid point (up to a constant
            shared by all grid points), with flat priors on intercept and slope and a scaled
            inverse-chi-square prior on the noise variance.
        intercept, slope: least-squares estimates, shape ``(G,)``.
        slope_sd: posterior sd of the slope, shape ``(G,)``.
        dof: degrees of freedom of the Student-t posterior of the coefficients.
        noise_var: posterior scale of the noise variance, shape ``(G,)``.
        shape_mean, shape_ss: weighted mean of the shape and its centred sum of squares.
        total: the observations' total weight, shape ``(G,)`` or scalar.
    """

    log_evidence: FloatArray
    intercept: FloatArray
    slope: FloatArray
    slope_sd: FloatArray
    dof: float
    noise_var: FloatArray
    shape_mean: FloatArray
    shape_ss: FloatArray
    total: FloatArray

    def mean_sd(self, shape_value: FloatArray) -> FloatArray:
        """Posterior sd of ``intercept + slope * shape_value`` at each grid point."""
        spread = 1.0 / self.total + (shape_value - self.shape_mean) ** 2 / self.shape_ss
        return np.sqrt(self.noise_var * spread)

    def log_prob_positive_slope(self) -> FloatArray:
        """log P(slope > 0) at each grid point: a sign constraint, applied exactly."""
        t = self.slope / self.slope_sd
        # special.stdtr (the Student-t CDF) is the costly step: skip it where the slope is
        # surely positive, P(T < -t) < 1e-6, and the answer is 0 to within 1e-6.
        out = np.zeros_like(t)
        unsure = ~(t > _sure_positive_t(self.dof))
        out[unsure] = np.log(np.maximum(special.stdtr(self.dof, t[unsure]), 1e-300))
        return out


@functools.lru_cache(maxsize=256)
def _sure_positive_t(dof: float) -> float:
    """The t above which a Student-t with ``dof`` degrees of freedom has a tail below 1e-6."""
    return float(special.stdtrit(dof, 1.0 - 1e-6))


def fit_shape_on_grid(
    y: FloatArray,
    shapes: FloatArray,
    *,
    weights: FloatArray | None = None,
    noise_scale: float,
    noise_dof: float = 2.0,
) -> GridLinearFit:
    """Marginal likelihood of ``y ~ intercept + slope * shape`` for every row of ``shapes``.

    Args:
        y: observations, shape ``(n,)``.
        shapes: the shape column at each grid point, shape ``(G, n)``.
        weights: precision of each observation relative to the noise, broadcastable to
            ``shapes`` (default 1): observation i has noise variance ``sigma^2 / weights[i]``.
            Weights that differ between rows (other noise models) enter the evidence with
            their determinant, so the rows' evidences stay comparable.
        noise_scale: prior guess of the noise sd ``sigma`` (in units of ``y``); it keeps the
            evidence finite when the curve passes through every point.
        noise_dof: pseudo-observations behind ``noise_scale``: 2 leaves it weak, more holds
            the noise near it when the data cannot tell (a sweep of six runs).
    """
    w = np.broadcast_to(np.ones_like(y) if weights is None else weights, shapes.shape)
    total = w.sum(axis=-1)
    y_mean = (w @ y) / total
    yc = y - y_mean[..., None]
    shape_mean = (shapes * w).sum(axis=-1) / total
    raw_sxx = (shapes * shapes * w).sum(axis=-1)
    sxx = raw_sxx - total * shape_mean**2
    sxy = (shapes * w * yc).sum(axis=-1)
    slope = sxy / sxx
    intercept = y_mean - slope * shape_mean
    rss = np.maximum((w * yc * yc).sum(axis=-1) - slope * sxy, 0.0)
    dof = noise_dof + y.size - 2
    scale_sum = noise_dof * noise_scale**2 + rss
    # |Z'WZ| = total * sxx for the design [1, shape]; |W|^(1/2) is the noise's own density.
    log_evidence = -0.5 * np.log(total * sxx) - 0.5 * dof * np.log(scale_sum) + 0.5 * np.log(w).sum(axis=-1)
    # A shape that is constant over the runs (to rounding) cannot be fitted.
    usable = np.isfinite(log_evidence) & (sxx > 1e-9 * raw_sxx)
    slope_sd = np.sqrt(scale_sum / dof / np.where(usable, sxx, 1.0))
    return GridLinearFit(
        log_evidence=np.where(usable, log_evidence, -np.inf),
        intercept=intercept,
        slope=slope,
        slope_sd=np.maximum(slope_sd, np.finfo(float).tiny),
        dof=float(dof),
        noise_var=scale_sum / dof,
        shape_mean=shape_mean,
        shape_ss=np.where(usable, sxx, 1.0),
        total=total,
    )


@dataclass(frozen=True)
class GridDistribution:
    """A one-dimensional distribution given by its density on an even grid."""

    grid: FloatArray
    weights: FloatArray  # probabilities of the grid cells, summing to one

    @classmethod
    def from_log_density(cls, grid: FloatArray, log_density: FloatArray) -> GridDistribution:
        finite = np.isfinite(log_density)
        if not finite.any():
            raise ValueError("the posterior is empty: no parameter value is compatible with the data")
        shifted = np.where(finite, log_density - log_density[finite].max(), -np.inf)
        weights = np.exp(shifted)
        return cls(grid=grid, weights=weights / weights.sum())

    @property
    def mean(self) -> float:
        return float(self.weights @ self.grid)

    @property
    def sd(self) -> float:
        variance = self.weights @ (self.grid - self.mean) ** 2
        step = self.grid[1] - self.grid[0] if self.grid.size > 1 else 0.0
        # A distribution narrower than one grid cell still has the cell's own spread.
        return float(np.sqrt(variance + step**2 / 12.0))

    def _cdf_knots(self) -> tuple[FloatArray, FloatArray]:
        # Each weight is spread evenly over its cell, so the CDF is piecewise linear.
        step = self.grid[1] - self.grid[0] if self.grid.size > 1 else 0.0
        edges = np.concatenate([[self.grid[0] - step / 2], self.grid + step / 2])
        cdf = np.concatenate([[0.0], np.cumsum(self.weights)])
        cdf[-1] = 1.0
        return edges, cdf

    def cdf(self, x: FloatArray | float) -> FloatArray:
        edges, cdf = self._cdf_knots()
        return np.interp(x, edges, cdf)

    def quantile(self, q: FloatArray | float) -> FloatArray:
        edges, cdf = self._cdf_knots()
        return np.interp(q, cdf, edges)

    def argmax(self) -> float:
        return float(self.grid[int(np.argmax(self.weights))])


@dataclass(frozen=True)
class GaussianMixture:
    """A one-dimensional mixture of normals (the law's predictions mix over its scatter)."""

    weights: FloatArray
    means: FloatArray
    sds: FloatArray

    @property
    def mean(self) -> float:
        return float(self.weights @ self.means)

    @property
    def sd(self) -> float:
        second = self.weights @ (self.sds**2 + self.means**2)
        return float(np.sqrt(max(second - self.mean**2, 0.0)))

    def cdf(self, x: FloatArray | float) -> FloatArray:
        z = (np.asarray(x, dtype=float)[..., None] - self.means) / self.sds
        return special.ndtr(z) @ self.weights

    def log_pdf(self, x: float, *, extra_var: float = 0.0) -> float:
        """The log density at ``x``, each component widened by ``extra_var`` (a measurement's own noise)."""
        sds = np.sqrt(self.sds**2 + extra_var)
        return float(special.logsumexp(stats.norm.logpdf(x, self.means, sds), b=self.weights))

    def quantile(self, q: FloatArray | float) -> FloatArray:
        q = np.asarray(q, dtype=float)
        lo = float(np.min(self.means - 12 * self.sds))
        hi = float(np.max(self.means + 12 * self.sds))
        grid = np.linspace(lo, hi, 1025)
        x = np.interp(q, self.cdf(grid), grid)
        # Three Newton steps polish the interpolated quantile to near machine precision.
        for _ in range(3):
            density = stats.norm.pdf((x[..., None] - self.means) / self.sds) / self.sds @ self.weights
            x = x - (self.cdf(x) - q) / np.maximum(density, 1e-300)
        return x


def central_interval(quantile_fn, q: float) -> tuple[float, float]:
    """The equal-tailed interval holding probability ``q``."""
    if not 0.0 < q < 1.0:
        raise ValueError(f"interval probability must lie in (0, 1), got {q!r}")
    lo, hi = quantile_fn(np.array([(1 - q) / 2, (1 + q) / 2]))
    return float(lo), float(hi)


def lr_interval(log_quantile_fn, q: float) -> tuple[float, float]:
    """The equal-tailed interval of an LR whose log has quantile function ``log_quantile_fn``."""
    lo, hi = central_interval(log_quantile_fn, q)
    return math.exp(lo), math.exp(hi)
