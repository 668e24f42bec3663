"""Where is the optimal learning rate of one scale? The posterior of log eta* from one sweep.

Near its minimum the final loss is close to a parabola in log LR (paper A, Eq. 2). Real
curves are not parabolas across a whole sweep: short runs rise steeply and straight below
the optimum and flatten above it; long runs (Step Law's) rise exponentially above it. So
with ``u = log eta - log eta*`` the relative loss excess of every run that did not diverge
is modelled as

    L(eta) / L_best - 1 = a + C * shape(u) + noise,    C > 0,

with the shape integrated over two families (`curve_shapes`): LINEX curves of several
skews and two-sided Huber curves that turn straight at their own distance on each side.

The noise is that of one run's final loss between training seeds (``noise``, relative, as
the trainer states it: our proxies' is about 1% near the optimum; `DEFAULT_NOISE` else),
held as a prior that the sweep's own scatter updates (repeated LRs or seeds show it
directly). Above the best run it is possibly larger (`HIGH_LR_NOISE_RATIOS`, integrated
over like the shapes): high LRs are unstable, and the final loss of our short proxies
varies four times more between seeds there (benchmarks/results/real_sweeps_cpu.csv).
Far from the best run no smooth family is exact, so a run's noise also grows as the fourth
power of its distance from it (`_WING`). Diverged runs enter as censoring: each says "the
optimum lies below me". A sweep at one training seed locates that seed's optimum,
which scatters around the optimum of the expected loss (the seed's runs share its
initialization and batches), so the sweep's likelihood is widened by that scatter,
`SEED_SCATTER_PER_NOISE` times the noise.

For a fixed ``x* = log eta*`` and shape the curve is linear in ``(a, C)``: they and the
noise integrate out exactly, so the posterior of ``x*`` is evaluated on a fine grid (see
``_bayes``). A normal prior on ``x*`` (a law's prediction) multiplies in; a sweep that
brackets its optimum outweighs it. When the best run sits at an edge of the sweep the
optimum is not bracketed and the result is a bound.
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
#: The relative sd of one run's final loss between training seeds assumed when the trainer
#: states none: 0.5%, the low end of what small models show (0.5% to 1%; our proxies state
#: 1%, `proxies.objective.SEED_NOISE`). Held with `_NOISE_DOF` pseudo-observations: six runs
#: cannot measure their own noise, and an interval narrower than it is wrong.
DEFAULT_NOISE = 0.005
_NOISE_DOF = 4.0
#: Above the optimum a run's final loss may vary more between seeds: its sd there is one of
#: these multiples of the noise below, integrated over with these prior weights (our
#: proxies' short runs show about 4: 1.4% to 5% above the optimum, real_sweeps_cpu.csv; a
#: clean curve shows 1), reached within a quarter e-fold past the best run.
HIGH_LR_NOISE_RATIOS = np.array([1.0, 4.0])
_HIGH_LR_NOISE_PRIOR = np.array([0.25, 0.75])
_HIGH_LR_ONSET = 0.25
#: A sweep at one training seed finds that seed's optimum; the optimum of the expected loss
#: (what a run at a fresh seed gets) lies around it with this sd in log LR per unit of
#: relative noise: the optima of single seeds scatter by 0.09 to 0.23 e-folds around their
#: seed mean at 1% noise (real_sweeps_cpu.csv, 9 seeds), and 0.1 at 1% calibrates the replayed
#: sweeps best (benchmarks/sweep_replay.py, docs/validation.md).
SEED_SCATTER_PER_NOISE = 10.0
#: Far from the optimum no curve family is exact: a run this far (log LR) from the best run
#: has its noise variance doubled, and it grows as the fourth power of the distance.
_WING = 1.5
#: Dense sweeps are thinned evenly in log LR to at most this many runs, to bound the cost.
_MAX_FIT_RUNS = 48
#: The curve families marginalized over, each shape with equal prior weight: LINEX skews
#: (exponential on one side, linear on the other: long runs, Step Law's sweeps) and
#: two-sided Huber curves whose sides turn linear at their own distance from eta* (short
#: runs: steep and straight below, flat above; real_sweeps_cpu.csv).
_SKEWS = np.array([-2.0, -1.0, 1.0, 2.0, 3.0])
_BENDS = np.array([0.1, 0.25, 0.5, 1.0, np.inf])
#: Points of the coarse grid that locates the posterior, and the log-density below the
#: peak under which a coarse cell is dropped (e^-30: nothing a quantile can see).
_COARSE_GRID = 121
_NEGLIGIBLE_LOG_DENSITY = 30.0
_LOG_LR_LIMIT = 700.0
#: The narrowest prior on log eta* the grid can hold (an LR known to one part in 10^9): a
#: narrower one would collapse the posterior onto a single point, with no spread.
_MIN_PRIOR_SD = 1e-9


def curve_shapes(u: FloatArray) -> FloatArray:
    """The loss-curve shapes marginalized over, stacked: shape ``(n_shapes, *u.shape)``.

    Every shape is 0 with curvature 2 at ``u = 0`` (so the slope C in ``a + C * shape``
    means the same for all):

    - LINEX, ``2 (exp(s u) - 1 - s u) / s^2`` for each skew s of `_SKEWS`;
    - two-sided Huber, ``2 h^2 (sqrt(1 + (u / h)^2) - 1)`` with bend ``h`` below eta* and
      another above it (all pairs from `_BENDS`): the parabola ``u^2`` near eta*, straight
      lines of slope ``2 h`` beyond ``h``; ``h = inf`` is the parabola on that side.
    """
    with np.errstate(over="ignore", invalid="ignore"):
        linex = [(np.expm1(s * u) - s * u) * (2.0 / s**2) for s in _SKEWS]
        square = np.square(u)
        bent = {h: square if np.isinf(h) else 2 * h * h * (np.sqrt(1 + square / (h * h)) - 1) for h in _BENDS}
        below = u < 0
        huber = [np.where(below, bent[lo], bent[hi]) for lo in _BENDS for hi in _BENDS]
    return np.stack(linex + huber)


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
        curvature: the fitted curve's rise half an e-fold to either side of its minimum, per
            (half an e-fold)^2: C of a parabola, in loss per (log LR)^2; None with fewer than
            three distinct finite runs.
        min_loss: the fitted curve's lowest loss; None with fewer than three distinct finite runs.
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
        parabola was fitted (fewer than three distinct LRs with a finite loss) or the fit
        does not curve up (``C <= 0``: the runs show no valley, so no regret can be judged).
        """
        if self.curvature is None or self.curvature <= 0 or not self.min_loss:
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


def _noise_variance_factors(u: FloatArray) -> FloatArray:
    """A run's noise variance at distance ``u`` above the best run, relative to below it, for
    each of `HIGH_LR_NOISE_RATIOS`: shape ``(len(HIGH_LR_NOISE_RATIOS), *u.shape)``."""
    onset = -np.expm1(-np.maximum(u, 0.0) / _HIGH_LR_ONSET)
    return 1.0 + (HIGH_LR_NOISE_RATIOS[:, None] ** 2 - 1.0) * onset


def _blurred(grid: FloatArray, log_density: FloatArray, sd: float) -> FloatArray:
    """``log_density`` on an even ``grid`` convolved with a normal of ``sd`` (the seed scatter)."""
    step = grid[1] - grid[0]
    if sd < 0.5 * step or not np.isfinite(log_density).any():
        return log_density
    offsets = np.arange(-math.ceil(4 * sd / step), math.ceil(4 * sd / step) + 1) * step
    kernel = np.exp(-0.5 * (offsets / sd) ** 2)
    peak = np.max(log_density[np.isfinite(log_density)])
    density = np.exp(log_density - peak)
    return peak + np.log(np.convolve(density, kernel / kernel.sum(), mode="same"))


def _thinned(x: FloatArray, loss: FloatArray) -> np.ndarray:
    """Indices of the runs fitted: all of them, or for a dense sweep `_MAX_FIT_RUNS` spread
    evenly along log LR (the span kept, so the curve stays pinned), the best run among them."""
    if x.size <= _MAX_FIT_RUNS:
        return np.arange(x.size)
    order = np.argsort(x, kind="stable")
    keep = set(order[np.linspace(0, x.size - 1, _MAX_FIT_RUNS).round().astype(int)].tolist())
    keep.add(int(np.argmin(loss)))
    return np.array(sorted(keep))


def _beyond_the_runs_no_less_likely(
    grid: FloatArray,
    log_lik: FloatArray,
    ends: FloatArray,
    log_lik_at_ends: FloatArray,
    sides: tuple[bool, bool] = (True, True),
) -> FloatArray:
    """The curve's log likelihood, raised beyond the runs to at least its value at their end,
    on the ``sides`` (below, above) where the sweep does not bracket its optimum.

    Where no run was made, only the curve family says how fast the loss would change, and
    a family of fixed shapes fitted to runs spanning a narrow range extrapolates with
    confidence it has not earned: a few runs within a factor 1.3 cannot tell an optimum
    just below them from one four times lower. So an optimum beyond the runs is never
    less likely than one at their end; what decides between such places is the prior
    (or, without one, the grid's padding), as it would be with no runs there at all. On a
    side where a run is worse than the best one, the runs themselves speak against an
    optimum past them, and the fit's likelihood stands.
    """
    below, above = (grid < ends[0]) & sides[0], (grid > ends[1]) & sides[1]
    out = log_lik.copy()
    out[below] = np.maximum(out[below], log_lik_at_ends[0])
    out[above] = np.maximum(out[above], log_lik_at_ends[1])
    return out


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
    noise: float | None = None,
    grid_size: int = 301,
) -> OptimumEstimate:
    """Posterior of the optimal learning rate from one LR sweep at a fixed scale.

    Args:
        lrs: peak learning rates of the runs (positive); an LR may repeat (other seeds).
        losses: their final losses; may be NaN or inf for diverged runs.
        diverged: which runs diverged; these are censored ("the optimum lies below this
            LR"), their losses ignored. A non-finite loss must be flagged here.
        prior: a normal prior on log eta*, as ``(mean, sd)`` or any object with
            ``log_lr_mean`` and ``log_lr_sd`` (e.g. a law's `LRPrediction`). Needed when the
            sweep has fewer than three distinct LRs with a finite loss; an empty sweep
            then returns the prior itself.
        noise: the relative sd of one run's final loss between training seeds at this scale
            (0.01: 1%), as your trainer measures it; default `DEFAULT_NOISE`. It is a prior:
            the sweep's own scatter (repeated LRs, other seeds) updates it.
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
    noise = DEFAULT_NOISE if noise is None else noise
    if not (isinstance(noise, (int, float)) and 0 < noise < math.inf):
        raise ValueError(f"noise must be a positive relative sd (0.01 for 1%), got {noise!r}")
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
    bracketed, beyond = _bracketing(x_ok, loss_ok, x_div)
    seed_scatter = SEED_SCATTER_PER_NOISE * noise
    open_sides = (True, True) if bracketed is False and beyond is None else (beyond == "below", beyond == "above")
    curvature = min_loss = None
    fitted = np.array([], dtype=int)
    if distinct >= 3:
        fitted = _thinned(x_ok, loss_ok)
        best = float(loss_ok[fitted].min())
        scale = abs(best) if best != 0 else float(np.ptp(loss_ok[fitted])) or 1.0
        with np.errstate(over="ignore", invalid="ignore"):  # absurd losses end in the finiteness check below
            x_fit, y = x_ok[fitted], (loss_ok[fitted] - best) / scale
        # Runs above the best one are the noisy side: known from the runs, not from the
        # optimum tried, so the noise model cannot favour an optimum by where it puts it.
        from_best = x_fit - x_fit[int(np.argmin(y))]
        wings = 1.0 + (from_best / _WING) ** 4  # no smooth family is exact far from the optimum
        precision = 1.0 / (_noise_variance_factors(from_best) * wings)  # (ratios, runs)

    def log_density(grid: FloatArray) -> tuple[FloatArray, GridLinearFit | None, FloatArray | None]:
        log_post = np.zeros(grid.size)
        fit = log_joint = None
        if distinct >= 3:
            # The curve is also evaluated at the two ends of the runs (the last two points).
            points = np.concatenate([grid, [x_ok.min(), x_ok.max()]])
            u = x_fit - points[:, None]
            # Every (noise ratio, shape) pair is one model: shapes tiled over the ratios.
            shapes = curve_shapes(u)
            fit = fit_shape_on_grid(
                y,
                np.tile(shapes, (HIGH_LR_NOISE_RATIOS.size, 1, 1)),
                weights=np.repeat(precision, len(shapes), axis=0)[:, None, :],
                noise_scale=noise,
                noise_dof=_NOISE_DOF,
            )
            ratio_prior = np.repeat(np.log(_HIGH_LR_NOISE_PRIOR), len(shapes))[:, None]
            log_joint = fit.log_evidence + fit.log_prob_positive_slope() + ratio_prior
            # logsumexp over shapes, by hand: scipy's costs more than the rest of the pass.
            peak = np.max(log_joint, axis=0)
            safe_peak = np.where(np.isfinite(peak), peak, 0.0)
            curve = safe_peak + np.log(np.exp(log_joint - safe_peak).sum(axis=0))
            log_post += _beyond_the_runs_no_less_likely(grid, curve[:-2], points[-2:], curve[-2:], open_sides)
            log_joint = log_joint[:, :-2]
        if x_div.size:
            log_post += special.log_ndtr((x_div[:, None] - grid) / _CENSOR_SOFTNESS).sum(axis=0)
        if distinct >= 3:
            log_post = _blurred(grid, log_post, seed_scatter)
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
            # The curve at the median, averaged over the shapes' posterior there.
            at_x = int(np.argmin(np.abs(grid - median)))
            shape_weights = np.exp(log_joint[:, at_x] - np.max(log_joint[:, at_x]))
            shape_weights /= shape_weights.sum()
            # A secant curvature, the same for every shape: the mean rise half an e-fold to
            # either side, per (half an e-fold)^2.
            secant = np.tile(curve_shapes(np.array([-0.5, 0.5])).mean(axis=1) / 0.25, HIGH_LR_NOISE_RATIOS.size)
            curvature = float(shape_weights @ (fit.slope[:, at_x] * secant) * scale)
            min_loss = float(best + shape_weights @ fit.intercept[:, at_x] * scale)

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
