"""Where is the optimal learning rate of one scale? The posterior of log eta* from one sweep.

Near its minimum the final loss is close to a parabola in log LR (paper A, Eq. 2):

    L(eta) = L_min + C * (log eta - log eta*)^2,    C > 0.

Real curves are not parabolas far from the minimum: the high-LR side rises much faster
than the low side and ends in divergence. So the parabola is fitted only to the runs
whose loss lies within a band above the best one ("near the minimum"), and diverged
runs enter as censoring: each says "the optimum lies below me".

For a fixed ``x* = log eta*`` the parabola is linear in ``(L_min, C)``; with flat priors on
both and a weak prior on the noise, they integrate out exactly, so the posterior of
``x*`` is evaluated on a fine grid (see ``_bayes``). A normal prior on ``x*`` multiplies in
exactly. The posterior is reported by its mean, sd and quantiles; when the best run
sits at an edge of the sweep the optimum is not bracketed and the result is a bound.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

import numpy as np
from scipy import special

from optuna_lrlaw.science._bayes import (
    FloatArray,
    GridDistribution,
    GridLinearFit,
    fit_shape_on_grid,
    lr_interval,
)

#: Width of the soft step with which a diverged run caps the optimum, in units of log LR.
_CENSOR_SOFTNESS = 0.05
#: Prior guess of the loss noise, relative to the best loss (0.1%, two pseudo-observations):
#: the five or six runs near the minimum cannot pin the noise down alone, and a smaller guess
#: makes single sweeps overconfident (benchmarks/sweep_calibration.py, docs/validation.md).
_RELATIVE_NOISE = 1e-3
#: The fewest runs the parabola is fitted to, widening the band if needed, and the most:
#: a denser band is thinned.
_MIN_FIT_RUNS = 5
_MAX_FIT_RUNS = 48
#: Loss-curve shapes marginalized over (uniform prior); see `curve_shapes`.
_SKEWS = np.array([-3.0, -2.0, -1.0, 1.0, 2.0, 3.0])
_RATIOS = np.array([0.25, 0.4, 0.63, 1.0, 1.6, 2.5, 4.0])
_N_SHAPES = len(_SKEWS) + len(_RATIOS)
#: Points of the coarse grid that locates the posterior, and the log-density below the
#: peak under which a coarse cell is dropped (e^-30: nothing a quantile can see).
_COARSE_GRID = 121
_NEGLIGIBLE_LOG_DENSITY = 30.0
_LOG_LR_LIMIT = 700.0
#: The narrowest prior on log eta* the grid can hold (an LR known to one part in 10^9): a
#: narrower one would collapse the posterior onto a single point, with no spread.
_MIN_PRIOR_SD = 1e-9


def curve_shapes(u: FloatArray) -> FloatArray:
    """The loss-curve shapes marginalized over, stacked: shape ``(len(_SKEWS) + len(_RATIOS), *u.shape)``.

    Every shape is 0 with curvature 2 at ``u = 0`` (so the slope C in
    ``L = L_min + C * shape`` means the same for all), and is asymmetric in one of two ways:

    - skewed: ``2 (exp(s u) - 1 - s u) / s^2``, exponential above the optimum and about
      linear below it (for s > 0), the shape of measured loss-versus-log-LR curves;
    - two-sided: ``u^2`` below the optimum and ``r u^2`` above it.

    Both include the plain parabola ``u^2`` (s = 0, r = 1).
    """
    out = np.empty((len(_SKEWS) + len(_RATIOS), *u.shape))
    with np.errstate(over="ignore", invalid="ignore"):
        # The skews are whole numbers, so one exponential serves them all: exp(s u) = (e^u)^s.
        # (exp(s u) - 1 - s u loses digits for tiny u, but only absolute ones, near 0.)
        powers = {1: np.exp(u)}
        powers[-1] = 1.0 / powers[1]
        for s in (2, 3):
            powers[s] = powers[s - 1] * powers[1]
            powers[-s] = powers[-(s - 1)] * powers[-1]
        for k, s in enumerate(_SKEWS):
            out[k] = (powers[int(s)] - 1.0 - s * u) * (2.0 / s**2)
        square = np.square(u)
        above = u > 0
        for k, r in enumerate(_RATIOS, start=len(_SKEWS)):
            out[k] = np.where(above, r * square, square)
    return out


@runtime_checkable
class LogNormalBelief(Protocol):
    """Anything with a mean and sd of log eta*: an `OptimumEstimate` or an `LRPrediction`."""

    log_lr_mean: float
    log_lr_sd: float


Prior = LogNormalBelief | tuple[float, float]


@dataclass(frozen=True)
class OptimumEstimate:
    """The posterior of the optimal learning rate at one scale.

    Attributes:
        log_lr_mean: posterior mean of log eta* (natural log).
        log_lr_sd: posterior standard deviation of log eta*.
        lr: posterior median of eta*.
        curvature: C of the fitted parabola, loss per (log LR)^2; None with fewer than three
            distinct finite runs.
        min_loss: L_min of the fitted parabola; None with fewer than three distinct finite runs.
        bracketed: True when runs on both sides of the best one show a higher loss (or
            diverged). When False the optimum may lie outside the sweep and ``lr`` is only
            a bound on it; ``beyond`` says on which side.
        beyond: ``"below"`` or ``"above"`` the sweep when not bracketed, else None.
        n_runs: runs in the sweep; n_diverged of them diverged; n_fitted entered the parabola.
    """

    log_lr_mean: float
    log_lr_sd: float
    lr: float
    curvature: float | None
    min_loss: float | None
    bracketed: bool
    beyond: Literal["below", "above"] | None
    n_runs: int
    n_diverged: int
    n_fitted: int
    _posterior: GridDistribution = field(repr=False, compare=False)

    def interval(self, q: float = 0.9) -> tuple[float, float]:
        """Equal-tailed posterior interval of eta* holding probability ``q``, in LR units."""
        return lr_interval(self._posterior.quantile, q)

    def sample_log_lr(
        self, rng: np.random.Generator, size: int | None = None, *, bounds: tuple[float, float] | None = None
    ) -> FloatArray | float:
        """Draws of log eta* from the posterior, restricted to ``bounds`` (in log LR) if given.

        A restriction the posterior puts (almost) no mass in gives the bound nearest to it.
        """
        lo, hi = (0.0, 1.0) if bounds is None else tuple(self._posterior.cdf(np.asarray(bounds, dtype=float)))
        u = rng.uniform(lo, hi, size)
        draws = self._posterior.quantile(u)
        if bounds is not None:
            draws = np.clip(draws, *bounds)
        return float(draws) if size is None else draws

    def expected_regret(self, lr: float) -> float | None:
        """Posterior mean of the relative loss excess of training at ``lr`` instead of eta*.

        Under the fitted parabola, ``C * E[(log lr - log eta*)^2] / L_min``; None when no
        parabola was fitted (fewer than three distinct LRs with a finite loss).
        """
        if self.curvature is None or not self.min_loss:
            return None
        x = math.log(lr)
        squared_distance = (x - self.log_lr_mean) ** 2 + self.log_lr_sd**2
        return float(self.curvature * squared_distance / abs(self.min_loss))

    def __str__(self) -> str:
        lo, hi = self.interval(0.9)
        text = f"lr* = {self.lr:.3g} (90% interval {lo:.3g} to {hi:.3g})"
        if not self.bracketed:
            text += f": NOT bracketed, the optimum may lie {self.beyond} the sweep"
        return text


def _as_vector(values: Sequence[float] | FloatArray, name: str) -> FloatArray:
    try:
        array = np.asarray(values, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a sequence of numbers") from None
    if array.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {array.shape}")
    return array


def _prior_moments(prior: Prior | None) -> tuple[float, float] | None:
    if prior is None:
        return None
    if isinstance(prior, LogNormalBelief):
        mean, sd = prior.log_lr_mean, prior.log_lr_sd
    else:
        try:
            mean, sd = (float(v) for v in prior)
        except (TypeError, ValueError):
            raise ValueError("prior must be (mean, sd) of log eta* or have log_lr_mean and log_lr_sd") from None
    if not (math.isfinite(mean) and math.isfinite(sd) and sd > 0):
        raise ValueError(f"prior needs a finite mean and a positive sd, got ({mean}, {sd})")
    if sd < _MIN_PRIOR_SD:
        raise ValueError(f"prior sd {sd} is narrower than the posterior's grid can hold (at least {_MIN_PRIOR_SD})")
    return float(mean), float(sd)


def _validated_sweep(
    lrs: Sequence[float] | FloatArray,
    losses: Sequence[float] | FloatArray,
    diverged: Sequence[bool] | None,
) -> tuple[FloatArray, FloatArray, np.ndarray]:
    lr = _as_vector(lrs, "lrs")
    loss = _as_vector(losses, "losses")
    if loss.size != lr.size:
        raise ValueError(f"lrs has {lr.size} values but losses has {loss.size}")
    if diverged is None:
        flags = np.zeros(lr.size, dtype=bool)
    else:
        flags = np.asarray(diverged)
        if flags.shape != lr.shape or flags.dtype.kind not in "bui":
            raise ValueError(f"diverged must be {lr.size} booleans")
        flags = flags.astype(bool)
    bad_lr = np.flatnonzero(~(np.isfinite(lr) & (lr > 0)))
    if bad_lr.size:
        i = bad_lr[0]
        raise ValueError(f"lr must be finite and positive: row {i} has lr={lr[i]!r}")
    bad_loss = np.flatnonzero(~np.isfinite(loss) & ~flags)
    if bad_loss.size:
        i = bad_loss[0]
        raise ValueError(f"loss is not finite in row {i} ({loss[i]!r}) but the run is not marked diverged")
    return lr, loss, flags


def _near_minimum(x: FloatArray, loss: FloatArray, window: float) -> np.ndarray:
    """Indices of the runs the parabola is fitted to: the band above the best loss.

    The band is ``window`` times the best loss (a relative band, as cross-entropies are
    compared in percent), thinned evenly to at most ``_MAX_FIT_RUNS`` runs, joined by the
    nearest run on each side of the best one, and widened with the runs nearest in log LR
    to the best one until at least ``_MIN_FIT_RUNS`` runs at three distinct LRs take part.
    """
    best = int(np.argmin(loss))
    level = abs(loss[best]) if loss[best] != 0 else 1.0
    chosen = loss <= loss[best] + window * level
    if chosen.sum() > _MAX_FIT_RUNS:
        # Dense sweeps are thinned evenly along log LR (keeping the band's span, so the
        # curve stays pinned down) to bound the cost; the best run always stays.
        in_band = np.flatnonzero(chosen)
        in_band = in_band[np.argsort(x[in_band], kind="stable")]
        keep = in_band[np.linspace(0, in_band.size - 1, _MAX_FIT_RUNS).round().astype(int)]
        chosen[:] = False
        chosen[keep] = True
        chosen[best] = True
    # The nearest run on each side of the best one always takes part: they are what
    # brackets the optimum, however far above the band a steep side puts them.
    for side in (x < x[best], x > x[best]):
        if side.any():
            chosen[np.flatnonzero(side)[np.argmin(np.abs(x[side] - x[best]))]] = True
    by_distance = np.argsort(np.abs(x - x[best]), kind="stable")
    for i in by_distance:
        if chosen.sum() >= _MIN_FIT_RUNS and np.unique(x[chosen]).size >= 3:
            break
        chosen[i] = True
    return np.flatnonzero(chosen)


def _beyond_the_runs_no_less_likely(
    grid: FloatArray, log_lik: FloatArray, ends: FloatArray, log_lik_at_ends: FloatArray
) -> FloatArray:
    """The curve's log likelihood, raised beyond the runs to at least its value at their end.

    Where no run was made, only the curve family says how fast the loss would change, and
    a family of fixed shapes fitted to runs spanning a narrow range extrapolates with
    confidence it has not earned: a few runs within a factor 1.3 cannot tell an optimum
    just below them from one four times lower. So an optimum beyond the runs is never
    less likely than one at their end; what decides between such places is the prior
    (or, without one, the grid's padding), as it would be with no runs there at all.
    """
    below, above = grid < ends[0], grid > ends[1]
    out = log_lik.copy()
    out[below] = np.maximum(out[below], log_lik_at_ends[0])
    out[above] = np.maximum(out[above], log_lik_at_ends[1])
    return out


def _replicates_pooled(x: FloatArray, y: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray, float]:
    """Runs at the same LR pooled into their mean: distinct x, mean y, counts, within-SS."""
    distinct, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    means = np.bincount(inverse, weights=y) / counts
    within_ss = float(((y - means[inverse]) ** 2).sum())
    return distinct, means, counts.astype(float), within_ss


def _bracketing(
    x: FloatArray, loss: FloatArray, x_diverged: FloatArray
) -> tuple[bool, Literal["below", "above"] | None]:
    if np.unique(x).size < 3:
        return False, "below" if x.size == 0 else None
    best = x[int(np.argmin(loss))]
    if not np.any(x < best):
        return False, "below"
    if not (np.any(x > best) or np.any(x_diverged > best)):
        return False, "above"
    return True, None


def estimate_optimum(
    lrs: Sequence[float] | FloatArray,
    losses: Sequence[float] | FloatArray,
    *,
    diverged: Sequence[bool] | None = None,
    prior: Prior | None = None,
    window: float = 0.02,
    grid_size: int = 301,
) -> OptimumEstimate:
    """Posterior of the optimal learning rate from one LR sweep at a fixed scale.

    Args:
        lrs: peak learning rates of the runs (positive).
        losses: their final losses; may be NaN or inf for diverged runs.
        diverged: which runs diverged; these are censored ("the optimum lies below this
            LR"), their losses ignored. A non-finite loss must be flagged here.
        prior: a normal prior on log eta*, as ``(mean, sd)`` or any object with
            ``log_lr_mean`` and ``log_lr_sd`` (e.g. a law's `LRPrediction`). Needed when the
            sweep has fewer than three distinct LRs with a finite loss; an empty sweep
            then returns the prior itself.
        window: relative loss band above the best run within which the parabola is
            fitted (0.02: runs within 2% of the best loss).
        grid_size: resolution of the posterior grid over log eta*.

    Returns:
        An `OptimumEstimate`.

    Raises:
        ValueError: on malformed input, or a sweep too small to say anything without a prior.

    Example:
        >>> import numpy as np
        >>> lrs = np.geomspace(1e-4, 1e-2, 9)
        >>> losses = 2.5 + 0.02 * (np.log(lrs) - np.log(1e-3)) ** 2
        >>> round(estimate_optimum(lrs, losses).lr, 4)
        0.001
    """
    lr, loss, flags = _validated_sweep(lrs, losses, diverged)
    prior_moments = _prior_moments(prior)
    if not (0 < window < math.inf):
        raise ValueError(f"window must be positive, got {window!r}")
    if grid_size < 16:
        raise ValueError(f"grid_size must be at least 16, got {grid_size!r}")

    x = np.log(lr)
    x_ok, loss_ok, x_div = x[~flags], loss[~flags], x[flags]
    distinct = np.unique(x_ok).size
    if lr.size == 0 and prior_moments is None:
        raise ValueError("the sweep is empty: give at least one learning rate, or a prior")
    if distinct < 3 and prior_moments is None:
        raise ValueError(
            f"the sweep has {distinct} distinct learning rate(s) with a finite loss; "
            "at least 3 are needed to locate an optimum without a prior"
        )

    # The grid spans the sweep, padded on both sides (an unbracketed optimum may lie
    # beyond it), and the bulk of the prior.
    lo, hi = math.inf, -math.inf
    if lr.size:
        span_lo, span_hi = (x_ok.min(), x_ok.max()) if x_ok.size else (x_div.min(), x_div.max())
        pad = max(0.5 * (span_hi - span_lo), math.log(4.0))
        lo, hi = span_lo - pad, span_hi + pad
    if prior_moments is not None:
        lo = min(lo, prior_moments[0] - 6 * prior_moments[1])
        hi = max(hi, prior_moments[0] + 6 * prior_moments[1])
    # Learning rates are floats: the grid stays where exp(log lr) is finite and non-zero.
    lo, hi = max(lo, -_LOG_LR_LIMIT), min(hi, _LOG_LR_LIMIT)
    if not lo < hi:
        raise ValueError("the sweep and prior put the optimum outside the range of floating-point LRs")
    curvature = min_loss = None
    fitted = np.array([], dtype=int)
    if distinct >= 3:
        fitted = _near_minimum(x_ok, loss_ok, window)
        best = float(loss_ok[fitted].min())
        scale = abs(best) if best != 0 else float(np.ptp(loss_ok[fitted])) or 1.0
        with np.errstate(over="ignore", invalid="ignore"):  # absurd losses end in the finiteness check below
            x_fit, y, counts, within_ss = _replicates_pooled(x_ok[fitted], (loss_ok[fitted] - best) / scale)

    def log_density(grid: FloatArray) -> tuple[FloatArray, GridLinearFit | None, FloatArray | None]:
        log_post = np.zeros(grid.size)
        fit = log_joint = None
        if distinct >= 3:
            # The curve is also evaluated at the two ends of the runs (the last two points).
            points = np.concatenate([grid, [x_ok.min(), x_ok.max()]])
            shapes = curve_shapes(x_fit - points[:, None]).reshape(-1, x_fit.size)
            fit = fit_shape_on_grid(y, shapes, counts=counts, within_ss=within_ss, noise_scale=_RELATIVE_NOISE)
            log_joint = (fit.log_evidence + fit.log_prob_positive_slope()).reshape(_N_SHAPES, points.size)
            # logsumexp over shapes, by hand: scipy's costs more than the rest of the pass.
            peak = np.max(log_joint, axis=0)
            safe_peak = np.where(np.isfinite(peak), peak, 0.0)
            curve = safe_peak + np.log(np.exp(log_joint - safe_peak).sum(axis=0))
            log_post += _beyond_the_runs_no_less_likely(grid, curve[:-2], points[-2:], curve[-2:])
            log_joint = log_joint[:, :-2]
        if x_div.size:
            log_post += special.log_ndtr((x_div[:, None] - grid) / _CENSOR_SOFTNESS).sum(axis=0)
        if prior_moments is not None:
            prior_mean, prior_sd = prior_moments
            log_post -= 0.5 * ((grid - prior_mean) / prior_sd) ** 2
        return log_post, fit, log_joint

    with np.errstate(all="ignore"):
        # A coarse pass finds where the posterior lives, a fine pass resolves it there.
        coarse = np.linspace(lo, hi, _COARSE_GRID)
        coarse_post = log_density(coarse)[0]
        alive = np.flatnonzero(coarse_post > np.max(coarse_post) - _NEGLIGIBLE_LOG_DENSITY)
        if alive.size == 0:
            raise ValueError("the posterior is empty: no optimum is compatible with the sweep")
        step = coarse[1] - coarse[0]
        grid = np.linspace(max(lo, coarse[alive[0]] - step), min(hi, coarse[alive[-1]] + step), grid_size)
        log_post, fit, log_joint = log_density(grid)
        posterior = GridDistribution.from_log_density(grid, log_post)
        median = float(posterior.quantile(0.5))
        if fit is not None:
            at_x = int(np.argmin(np.abs(grid - median)))
            shape = int(np.argmax(log_joint[:, at_x]))
            curvature = float(fit.slope.reshape(_N_SHAPES, -1)[shape, at_x] * scale)
            min_loss = float(best + fit.intercept.reshape(_N_SHAPES, -1)[shape, at_x] * scale)

    bracketed, beyond = _bracketing(x_ok, loss_ok, x_div)
    estimate = OptimumEstimate(
        log_lr_mean=posterior.mean,
        log_lr_sd=posterior.sd,
        lr=math.exp(median),
        curvature=curvature,
        min_loss=min_loss,
        bracketed=bracketed,
        beyond=beyond,
        n_runs=int(lr.size),
        n_diverged=int(flags.sum()),
        n_fitted=int(fitted.size),
        _posterior=posterior,
    )
    numbers = (estimate.log_lr_mean, estimate.log_lr_sd, estimate.lr, curvature or 0.0, min_loss or 0.0)
    if not all(math.isfinite(v) for v in numbers) or estimate.lr <= 0:
        raise ValueError("the sweep's numbers are too extreme to fit a finite posterior")
    return estimate
