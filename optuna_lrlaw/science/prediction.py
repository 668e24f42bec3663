"""The law's answer at one scale: a belief about eta*, and the one LR worth betting on.

The posterior median of eta* is not the LR with the lowest expected loss: the loss rises
faster above the optimum than below it, and far above it runs diverge. Under a normal
belief ``N(mu, sigma^2)`` on log eta* and the LINEX excess with skew s, the expected excess
of training at ``log lr = a`` is minimised at ``a* = mu - s sigma^2 / 2`` (Varian 1975;
Zellner 1986); `LRPrediction.recommend` minimises it for the law's actual belief (a normal
mixture, each component integrated exactly) and loss shape (`loss_shape`), cliff included,
by direct search over candidate LRs; it never moves the LR from the median by more than
half the band in which the loss stays within 0.5% of the best (the hedge is a correction,
not a second guess), and says what the bet risks in parts: the expected excess while the
LR stays where the curve is trusted, the chance it does not (or diverges), and the chance
of landing within 0.5% of the best loss.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
from scipy import special

from optuna_lrlaw.science._bayes import FloatArray, GaussianMixture, lr_interval
from optuna_lrlaw.science.loss_shape import DEFAULT_SHAPE, TOLERANCE, TRUSTED_REACH, LossShape
from optuna_lrlaw.science.scale import Scale

#: Candidate LRs searched, evenly in log LR between the belief's 0.05% and 99.95% quantiles.
_CANDIDATES = 801


@dataclass(frozen=True)
class Recommendation:
    """The LR with the lowest expected loss under the law's belief, and what it risks.

    Attributes:
        lr: the recommended learning rate.
        expected_regret: expected relative loss excess at ``lr`` (0.002: 0.2% above the
            best loss), a diverged run counting as `loss_shape.DIVERGED_EXCESS`.
        divergence_probability: the belief's probability that a run at ``lr`` diverges.
        median_lr, median_expected_regret: the posterior median and its expected excess,
            for comparison.
        regret_in_band: the part of ``expected_regret`` earned while ``lr`` lies within
            `loss_shape.TRUSTED_REACH` of eta*, where the sweeps measured the curve.
        outside_band_probability: the probability that it does not (or diverges): there
            the loss is an extrapolation, charged at most a diverged run's.
        within_tolerance_probability: the probability that the run lands within 0.5% of
            the best loss.
    """

    lr: float
    expected_regret: float
    divergence_probability: float
    median_lr: float
    median_expected_regret: float
    regret_in_band: float = math.nan
    outside_band_probability: float = math.nan
    within_tolerance_probability: float = math.nan

    def __str__(self) -> str:
        """What a run at ``lr`` risks, in the words the CLIs print."""
        return (
            f"expected regret {100 * self.expected_regret:.2f}%: "
            f"{100 * self.regret_in_band:.2f}% from missing lr* within the measured curve, "
            f"{100 * self.outside_band_probability:.0f}% chance of landing beyond it or diverging; "
            f"{100 * self.within_tolerance_probability:.0f}% chance of a loss within "
            f"{100 * TOLERANCE:.1f}% of the best"
        )


@dataclass(frozen=True)
class LRPrediction:
    """The law's belief about the optimal learning rate at one scale.

    Attributes:
        scale: where the prediction is made.
        log_lr_mean, log_lr_sd: mean and sd of log eta* (natural log).
        lr: the median of eta*. The LR to bet a single run on is `recommend`'s: the median
            is not the lowest expected loss when the loss rises faster above eta*.
        shape: the loss curve around eta* at this scale (`loss_shape.LossShape`), pooled
            from the law's sweeps; what `recommend` and `expected_regret` weigh.
    """

    scale: Scale
    log_lr_mean: float
    log_lr_sd: float
    lr: float
    _mixture: GaussianMixture = field(repr=False, compare=False)
    shape: LossShape = DEFAULT_SHAPE

    @classmethod
    def from_mixture(cls, scale: Scale, mixture: GaussianMixture, shape: LossShape = DEFAULT_SHAPE) -> LRPrediction:
        """The prediction whose log eta* follows ``mixture``, with the loss ``shape`` around it."""
        return cls(
            scale=scale,
            log_lr_mean=mixture.mean,
            log_lr_sd=mixture.sd,
            lr=math.exp(float(mixture.quantile(0.5))),
            _mixture=mixture,
            shape=shape,
        )

    def expected_regret(self, lr: float | FloatArray) -> FloatArray:
        """Expected relative loss excess of training at ``lr``, under this belief and `shape`."""
        return self._risk(np.log(np.asarray(lr, dtype=float)))

    def recommend(self) -> Recommendation:
        """The LR that minimises the expected loss: below the median when the loss is steeper
        above the optimum, and farther below where a cliff lies within the belief's reach,
        but never farther from the median than half the 0.5% band's width.

        Example:
            >>> law.predict(Scale(params=1.07e9, tokens=2e10)).recommend().lr  # doctest: +SKIP
        """
        median = math.log(self.lr)
        below, above = self.shape.tolerance_band(TOLERANCE)
        reach = 0.5 * (below + above)  # inf where the curve is flat: no cap
        lo, hi = (float(v) for v in self._mixture.quantile(np.array([5e-4, 1 - 5e-4])))
        candidates = np.linspace(max(lo, median - reach), min(hi, median + reach), _CANDIDATES)
        candidates = np.append(candidates, median)
        risk = self._risk(candidates)
        best = int(np.argmin(risk))
        return self.assess(math.exp(candidates[best]))

    def assess(self, lr: float) -> Recommendation:
        """What a single run at ``lr`` risks under this belief, in the parts `recommend` states:
        e.g. ``prediction.assess(prediction.lr)`` for the median, the default one-shot LR."""
        if not (math.isfinite(lr) and lr > 0):
            raise ValueError(f"lr must be finite and positive, got {lr!r}")
        log_lr, risk = math.log(lr), float(self.expected_regret(lr))
        mixture = self._mixture
        u_means, sds = log_lr - mixture.means, mixture.sds
        beyond_cliff = special.ndtr((log_lr - self.shape.cliff - mixture.means) / sds)
        band_top = min(TRUSTED_REACH, self.shape.cliff)
        inside = special.ndtr((band_top - u_means) / sds) - special.ndtr((-TRUSTED_REACH - u_means) / sds)
        in_band = replace(self.shape, cliff=math.inf)
        # E[excess; u in band] = E[excess] - E[excess; u outside], the latter at most DIVERGED_EXCESS each.
        total = in_band.expected_excess(u_means, sds)
        outside_low = _truncated_linex_mass(in_band, -math.inf, -TRUSTED_REACH, u_means, sds)
        outside_high = _truncated_linex_mass(in_band, band_top, math.inf, u_means, sds)
        return Recommendation(
            lr=math.exp(log_lr),
            expected_regret=risk,
            divergence_probability=float(beyond_cliff @ mixture.weights),
            median_lr=self.lr,
            median_expected_regret=float(self.expected_regret(self.lr)),
            regret_in_band=float((total - outside_low - outside_high) @ mixture.weights),
            outside_band_probability=float((1.0 - inside) @ mixture.weights),
            within_tolerance_probability=float(
                self.shape.probability_within(TOLERANCE, u_means, sds) @ mixture.weights
            ),
        )

    def _risk(self, log_lr: FloatArray) -> FloatArray:
        # u = log lr - log eta* is normal within each component of the belief.
        mixture = self._mixture
        return self.shape.expected_excess(log_lr[..., None] - mixture.means, mixture.sds) @ mixture.weights

    def interval(self, q: float = 0.9) -> tuple[float, float]:
        """Equal-tailed predictive interval of eta* holding probability ``q``, in LR units."""
        return lr_interval(self._mixture.quantile, q)

    def cdf(self, lr: float) -> float:
        """The probability that eta* lies at or below ``lr``."""
        if not (math.isfinite(lr) and lr > 0):
            raise ValueError(f"lr must be finite and positive, got {lr!r}")
        return float(self._mixture.cdf(math.log(lr)))

    def interval_on_grid(self, grid: Sequence[float] | FloatArray, q: float = 0.9) -> tuple[float, float]:
        """The ``q`` interval of the LR a sweep over ``grid`` would measure as its optimum.

        A grid sweep cannot tell eta* apart from its nearest grid LR (nearest in log), so
        its "measured best LR" is that grid LR. Rounding to the nearest grid LR is monotone,
        so whenever eta* lies in `interval`, the measured best lies between the interval's
        ends each moved to its nearest grid LR: these hold it with probability at least
        ``q`` if noise never makes a farther grid LR look best. Compare grid measurements
        with this, not with `interval`, whose ends fall between grid points; the grid LRs
        from one end to the other are also the ones a grid search should run.
        """
        points = np.sort(np.asarray(grid, dtype=float).ravel())
        if points.size == 0 or not np.all(np.isfinite(points) & (points > 0)):
            raise ValueError("grid must hold at least one finite, positive learning rate")
        lo, hi = (float(points[np.argmin(np.abs(np.log(points / end)))]) for end in self.interval(q))
        return lo, hi

    def search_factor(self, q: float = 0.9, tolerance: float | None = None) -> float:
        """How wide (multiplicatively) an LR search at this scale must reach: the factor f
        such that ``[lr / f, lr * f]`` spans the ``q`` interval of eta*, or, given a
        ``tolerance``, the narrower `search_range` that is enough to land within it."""
        lo, hi = self.interval(q) if tolerance is None else self.search_range(q, tolerance)
        return math.sqrt(hi / lo)

    def search_range(self, q: float = 0.9, tolerance: float = 0.005) -> tuple[float, float]:
        """The LRs a search must cover so that, with probability ``q``, one of them loses at
        most ``tolerance`` (0.005: 0.5%) against the optimum; it always holds the median and
        the recommended LR.

        An LR whose loss is within the tolerance of eta*'s is as good as eta* to the user.
        Such LRs reach ``below`` under eta* and ``above`` over it, where the loss shape at
        this scale rises by ``tolerance`` (`LossShape.tolerance_band`): the flatter the
        curve (paper B, arXiv 2410.05838: the loss grows less sensitive to the LR as the
        horizon grows), the wider that band and the less a search must cover. If eta* lies
        in the ``q`` interval ``[lo, hi]``, an LR from ``lo * e^above`` to ``hi * e^-below``
        is within reach of it. When the interval is narrower than the band, one run is
        enough, and the range is where it may go: every LR from ``hi * e^-below`` to
        ``lo * e^above`` is within reach of eta* anywhere in the interval.
        """
        lo, hi = self.interval(q)
        below, above = self.shape.tolerance_band(tolerance)
        start, stop = sorted((lo * math.exp(above), hi * math.exp(-below)))
        chosen = (self.lr, self.recommend().lr)
        return min(start, *chosen), max(stop, *chosen)

    def search_runs(self, q: float = 0.9, tolerance: float = 0.005) -> int:
        """Runs of a log-spaced grid over `search_range` such that eta*, anywhere in the ``q``
        interval, has a grid LR within ``tolerance`` of its loss: 1 when the interval is
        narrower than the tolerance band (any LR of the range will do)."""
        lo, hi = self.interval(q)
        below, above = self.shape.tolerance_band(tolerance)
        if math.log(hi / lo) <= below + above:
            return 1
        start, stop = self.search_range(q, tolerance)
        return 1 + math.ceil(math.log(stop / start) / (below + above))

    def __str__(self) -> str:
        lo, hi = self.interval(0.9)
        return f"lr* = {self.lr:.3g} (90% interval {lo:.3g} to {hi:.3g}, search factor x{self.search_factor():.2f})"


def _truncated_linex_mass(shape: LossShape, start: float, end: float, mean: FloatArray, sd: FloatArray) -> FloatArray:
    """``E[excess(u); start < u <= end]`` for ``u ~ N(mean, sd^2)``, by quadrature over the tail."""
    z = np.linspace(-8.0, 8.0, 801)
    u = mean[..., None] + sd[..., None] * z
    weight = np.exp(-0.5 * z**2) * (z[1] - z[0]) / math.sqrt(2 * math.pi)
    inside = (u > start) & (u <= end)
    return (shape.expected_excess(u, np.full_like(u, 1e-9)) * inside * weight).sum(axis=-1)
