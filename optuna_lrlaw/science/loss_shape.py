"""How much a wrong learning rate costs: the loss curve's shape around eta*, pooled over sweeps.

Measured loss-versus-log-LR curves are skewed: gentle below the optimum, steep above it,
and past some distance above it runs diverge. With ``u = log lr - log eta*`` the relative
loss excess is modelled as the LINEX curve (Varian 1975; Zellner 1986)

    excess(u) = curvature * 2 (exp(s u) - 1 - s u) / s^2,

with curvature 1/2 * d^2 excess / du^2 at the optimum and skew ``s`` (s = 0 is the
parabola), plus a cliff: runs with ``u`` above ``cliff`` diverge. One sweep alone pins the
shape down poorly, so the skew and the cliff are pooled over every sweep of a law (the skew
Bayesianly: a few short, noisy sweeps leave it near its prior), and the curvature gets its
own power law in the scale, carried by what the physics supports: paper B (arXiv
2410.05838) finds the loss less sensitive to the LR as the horizon grows and unchanged
under μP width scaling, so the exponent in D has a prior below 0, the others a prior at 0,
and no prediction at a longer horizon exceeds the curvature measured at the longest rung.
A sweep's skew and curvature are judged over where its optimum may lie, not at its point
estimate. The curvature at a new scale is uncertain (posterior and scatter), and so is the
skew: expectations of the loss excess integrate over both.
"""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from scipy import optimize, special, stats

from optuna_lrlaw.science._bayes import FloatArray
from optuna_lrlaw.science._design import Design
from optuna_lrlaw.science._regression import Posterior, fit_regression
from optuna_lrlaw.science.priors import LawPrior
from optuna_lrlaw.science.scale import Scale

#: Skews considered when pooling, and the prior over them: Step Law's curves (1911 runs)
#: pool to a skew of 0.91 ± 0.03 over its 142 batch sweeps and 1.55 ± 0.08 over its 15
#: best-batch cells below 1e9 parameters (docs/validation.md); N(1, 1) leaves room either way.
_SKEW_GRID = np.linspace(-3.0, 4.0, 71)
_SKEW_PRIOR = (1.0, 1.0)
#: Runs farther from their sweep's optimum than this (in log LR) do not shape the curve:
#: the decision is made within about two posterior sds of the optimum.
_SHAPE_REACH = 1.5
#: When no sweep can say: the skew of the prior, a curvature of 1% per (log LR)^2, no cliff.
_DEFAULT_SKEW = _SKEW_PRIOR[0]
_DEFAULT_CURVATURE = 0.01
#: The relative loss excess charged for a run that diverges: the run is lost.
DIVERGED_EXCESS = 1.0
#: Prior on the log curvature at the reference scale (weak) and on its exponents: in D
#: below 0 (paper B: sensitivity falls with the horizon), in every other feature at 0.
_CURVATURE_PRIOR_SD = 2.0
_CURVATURE_EXPONENTS = {"tokens": (-0.25, 0.25)}
_CURVATURE_EXPONENT_DEFAULT = (0.0, 0.25)
#: Probabilists' Gauss-Hermite nodes over which an expectation integrates the log curvature.
_HERMITE_NODES, _HERMITE_WEIGHTS = np.polynomial.hermite_e.hermegauss(7)
_HERMITE_WEIGHTS = _HERMITE_WEIGHTS / _HERMITE_WEIGHTS.sum()
#: The loss curve is trusted this far (log LR) from eta*: as far as the sweeps' runs shape it.
TRUSTED_REACH = _SHAPE_REACH
#: A regret a user does not notice: the run lands within 0.5% of the best loss.
TOLERANCE = 0.005
#: The floor on a sweep's log-curvature sd: six-run sweeps replayed on our proxies' dense
#: grids (real_sweeps_cpu.csv) put their curvature 0.4 to 0.7 (sd, log) from the grid's,
#: more than their fits say even with the optimum's uncertainty integrated.
_MIN_LOG_CURVATURE_SD = 0.5


def _normal_nodes(mean: float, sd: float) -> list[tuple[float, float]]:
    """(value, weight) pairs that integrate over N(mean, sd^2): the mean alone when sd is 0."""
    if sd <= 0:
        return [(mean, 1.0)]
    return [(mean + sd * float(z), float(w)) for z, w in zip(_HERMITE_NODES, _HERMITE_WEIGHTS, strict=True)]


def linex(u: FloatArray | float, skew: float) -> FloatArray:
    """``2 (exp(s u) - 1 - s u) / s^2``: 0 with curvature 2 at u = 0, the parabola ``u^2`` at s = 0."""
    u = np.asarray(u, dtype=float)
    if abs(skew) < 1e-9:
        return u**2
    su = np.minimum(skew * u, 700.0)
    return 2.0 * (np.expm1(su) - su) / skew**2


@dataclass(frozen=True)
class LossShape:
    """The relative loss excess of training at ``log lr = log eta* + u``, at one scale.

    Attributes:
        curvature: excess per (log LR)^2 near the optimum (0.01: 1% per e-fold squared), the
            median of its belief.
        skew: the LINEX skew s (positive: steeper above the optimum).
        cliff: runs more than this far above eta* (log LR) diverge; inf when none did.
        curvature_sd: sd of the log curvature (0: known); expectations integrate over it.
        skew_sd: sd of the skew (0: known); expectations integrate over it too.
    """

    curvature: float
    skew: float
    cliff: float
    curvature_sd: float = 0.0
    skew_sd: float = 0.0

    def excess(self, u: FloatArray | float) -> FloatArray:
        """Relative loss excess at ``u`` at the median curvature: the LINEX curve up to
        `DIVERGED_EXCESS`, and that past the cliff. No run loses more than a diverged one: a
        loss as high as an untrained model's is as bad as it gets, however steep the curve
        near the optimum."""
        u = np.asarray(u, dtype=float)
        curve = np.minimum(self.curvature * linex(u, self.skew), DIVERGED_EXCESS)
        return np.where(u > self.cliff, DIVERGED_EXCESS, curve)

    @functools.cached_property
    def _beliefs(self) -> list[tuple[float, LossShape]]:
        """(weight, one known shape) over the Gauss-Hermite nodes of the log curvature and the skew."""
        if self.curvature_sd <= 0 and self.skew_sd <= 0:
            return [(1.0, self)]
        curvatures = _normal_nodes(math.log(self.curvature), self.curvature_sd)
        skews = _normal_nodes(self.skew, self.skew_sd)
        return [
            (w_c * w_s, LossShape(math.exp(log_c), skew, self.cliff))
            for log_c, w_c in curvatures
            for skew, w_s in skews
        ]

    def expected_excess(self, mean: FloatArray, sd: FloatArray) -> FloatArray:
        """``E[excess(u)]`` for ``u ~ N(mean, sd^2)``, exactly at each curvature and averaged
        over the curvature's belief (broadcasting over arrays).

        The LINEX curve holds on the band ``[-below, above]`` where it stays under
        `DIVERGED_EXCESS` (``above`` ending at the cliff); on the band it is an exponential
        and a line, whose expectations over a normal truncated to the band are closed-form;
        outside it the excess is `DIVERGED_EXCESS`. Without that cap an exponential fitted
        near the optimum would charge an uncertain belief for losses far beyond any run's,
        and push the recommendation far below the optimum.
        """
        mean, sd = np.broadcast_arrays(np.asarray(mean, dtype=float), np.asarray(sd, dtype=float))
        return sum(weight * shape._expected_excess_known(mean, sd) for weight, shape in self._beliefs)

    def probability_within(self, tolerance: float, mean: FloatArray, sd: FloatArray) -> FloatArray:
        """``P(excess(u) <= tolerance)`` for ``u ~ N(mean, sd^2)``, over the curvature's belief."""
        total = 0.0
        for weight, shape in self._beliefs:
            below, above = shape.tolerance_band(tolerance)
            total = total + weight * (special.ndtr((above - mean) / sd) - special.ndtr((-below - mean) / sd))
        return total

    def _expected_excess_known(self, mean: FloatArray, sd: FloatArray) -> FloatArray:
        below, above = self._capped_band
        p_low, curve_low = self._truncated(-below, mean, sd)
        p_high, curve_high = self._truncated(above, mean, sd)
        return self.curvature * (curve_high - curve_low) + DIVERGED_EXCESS * (1.0 - (p_high - p_low))

    @functools.cached_property
    def _capped_band(self) -> tuple[float, float]:
        return self.tolerance_band(DIVERGED_EXCESS)

    def _truncated(self, end: float, mean: FloatArray, sd: FloatArray) -> tuple[FloatArray, FloatArray]:
        """``P(u <= end)`` and ``E[linex(u); u <= end]`` for ``u ~ N(mean, sd^2)`` (``end`` may be infinite)."""
        z = (end - mean) / sd
        probability = special.ndtr(z)
        density = np.where(np.isfinite(z), stats.norm.pdf(z), 0.0)
        linear = mean * probability - sd * density  # E[u; u <= end]
        if abs(self.skew) < 1e-9:
            edge = np.where(np.isfinite(z), end + mean, 0.0)
            return probability, (mean**2 + sd**2) * probability - sd * edge * density  # E[u^2; u <= end]
        s = self.skew
        growth = np.exp(np.minimum(s * mean + 0.5 * s**2 * sd**2, 700.0))
        exponential = growth * special.ndtr(z - s * sd)  # E[e^{s u}; u <= end]
        return probability, 2.0 * (exponential - probability - s * linear) / s**2

    def tolerance_band(self, tolerance: float) -> tuple[float, float]:
        """How far below and above eta* (in log LR) the loss stays within ``tolerance`` of the
        best: ``excess(-below) = excess(above) = tolerance``, ``above`` capped at the cliff.

        Example:
            >>> LossShape(curvature=0.01, skew=0.0, cliff=math.inf).tolerance_band(0.0025)
            (0.5, 0.5)
        """
        if not tolerance > 0:
            raise ValueError(f"tolerance must be positive, got {tolerance!r}")
        if not self.curvature > 0:
            return math.inf, self.cliff

        def reach(sign: float) -> float:
            # linex grows without bound on both sides, so the band ends within a bracket that doubles.
            end = 1.0
            while self.curvature * float(linex(sign * end, self.skew)) < tolerance:
                end *= 2
            return optimize.brentq(lambda u: self.curvature * float(linex(sign * u, self.skew)) - tolerance, 0, end)

        return reach(-1.0), min(reach(1.0), self.cliff)

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


#: The shape assumed where no sweep can say.
DEFAULT_SHAPE = LossShape(_DEFAULT_CURVATURE, _DEFAULT_SKEW, math.inf)


@dataclass(frozen=True)
class ShapeLaw:
    """The loss shape across scales: one pooled skew (its posterior mean, with ``skew_sd``) and
    cliff, a power law for the curvature (or, where the sweeps do not vary in scale, their
    typical curvature), capped at ``ceiling``: the curvature of the longest-horizon sweep
    (its tokens, its curvature), never exceeded at that horizon or beyond."""

    skew: float
    cliff: float
    design: Design | None
    posterior: Posterior | None
    sweeps: int
    curvature: float = _DEFAULT_CURVATURE
    skew_sd: float = _SKEW_PRIOR[1]
    ceiling: tuple[float, float] | None = None

    def at(self, scale: Scale) -> LossShape:
        """The loss shape at ``scale``: the curvature's median and log sd there (posterior and
        scatter), the median no higher than the ceiling at a horizon at least as long, and
        the pooled skew with its sd."""
        if self.posterior is None or self.design is None:
            return LossShape(self.curvature, self.skew, self.cliff, skew_sd=self.skew_sd)
        mixture = self.posterior.linear(self.design.rows_at(scale), with_scatter=True)
        log_curvature = float(mixture.quantile(0.5))
        if self.ceiling is not None and (scale.tokens or 0.0) >= self.ceiling[0]:
            log_curvature = min(log_curvature, math.log(self.ceiling[1]))
        return LossShape(math.exp(log_curvature), self.skew, self.cliff, curvature_sd=mixture.sd, skew_sd=self.skew_sd)


def fit_shape_law(observations: pd.DataFrame, optima: pd.DataFrame, features: tuple[str, ...]) -> ShapeLaw:
    """Pool the loss shape over the bracketed sweeps in ``optima`` (rows of `estimate_optima`).

    The skew is the posterior mean over `_SKEW_GRID`: each sweep's runs near its optimum are
    fitted with their own least-squares curvature and noise (a profile likelihood), times the
    prior `_SKEW_PRIOR`; the cliff is the nearest distance above an optimum
    at which any sweep had a run diverge; the sweeps' log curvatures are then regressed on
    the scale features like the optimum itself (with the same scatter model).
    """
    if "min_loss" not in optima.columns:  # a law stored by version 1
        return ShapeLaw(_DEFAULT_SKEW, math.inf, None, None, 0)
    keys = [k for k in ("params", "tokens", "batch_tokens") if k in optima.columns]
    used = optima[optima["used"].astype(bool) & optima["min_loss"].notna()]
    by_sweep = observations.groupby(keys)
    shaped, sweeps_near, cliffs = [], [], []
    for _, sweep in used.iterrows():
        runs = by_sweep.get_group(tuple(sweep[k] for k in keys))
        u = np.log(runs["lr"].to_numpy(dtype=float)) - sweep["log_lr_mean"]
        diverged = runs["diverged"].to_numpy(dtype=bool)
        if diverged.any():
            cliffs.append(float(u[diverged].min()))
        near = ~diverged & (np.abs(u) <= _SHAPE_REACH)
        if near.sum() >= 3:
            shaped.append(sweep)
            excess = runs["loss"].to_numpy(dtype=float)[near] / abs(sweep["min_loss"]) - 1.0
            sweeps_near.append(_SweepAroundOptimum(u[near], excess, float(sweep["log_lr_sd"])))
    cliff = max(min(cliffs), 0.0) if cliffs else math.inf
    if not sweeps_near:
        return ShapeLaw(_DEFAULT_SKEW, cliff, None, None, 0)

    skew, skew_sd = _skew_posterior(sweeps_near)

    log_curvature, log_curvature_var, rows = [], [], []
    for sweep, near in zip(shaped, sweeps_near, strict=True):
        moments = near.log_curvature(skew)
        if moments is None:
            continue
        log_curvature.append(moments[0])
        log_curvature_var.append(max(moments[1], _MIN_LOG_CURVATURE_SD**2))
        rows.append(sweep)
    if not rows:
        return ShapeLaw(skew, cliff, None, None, 0, skew_sd=skew_sd)
    sweeps = pd.DataFrame(rows)
    power_features = tuple(f for f in features if sweeps[f].nunique() > 1)
    if not power_features:
        return ShapeLaw(skew, cliff, None, None, len(rows), float(np.exp(np.mean(log_curvature))), skew_sd)
    tokens = sweeps["tokens"].to_numpy(dtype=float)
    longest = tokens == tokens.max()  # the sweeps at the longest horizon: their typical curvature
    ceiling = (float(tokens.max()), float(np.exp(np.mean(np.array(log_curvature)[longest]))))
    design = Design.build(power_features, "loglinear", sweeps)
    prior = LawPrior(
        name="curvature",
        log_lr=(float(np.mean(log_curvature)), _CURVATURE_PRIOR_SD),
        exponents={f: _CURVATURE_EXPONENTS.get(f, _CURVATURE_EXPONENT_DEFAULT) for f in power_features},
        reference=design.reference,
    )
    prior_mean, prior_cov, _ = design.prior(prior)
    posterior = fit_regression(
        design.rows({f: sweeps[f].to_numpy(dtype=float) for f in power_features}),
        np.array(log_curvature),
        np.array(log_curvature_var),
        sweeps["params"].to_numpy(),
        prior_mean,
        prior_cov,
    )
    return ShapeLaw(skew, cliff, design, posterior, len(rows), skew_sd=skew_sd, ceiling=ceiling)


@dataclass(frozen=True)
class _SweepAroundOptimum:
    """One sweep's runs near its optimum: ``u`` (log LR from the estimated optimum), their
    relative loss ``excess``, and ``optimum_sd``, the sd of that estimate. Where the optimum
    truly lies shifts every ``u`` alike, and a shifted centre mimics a skew and changes the
    curvature: so both are judged over the optimum's uncertainty (Gauss-Hermite nodes), not
    at its point estimate, or six noisy runs claim a shape they cannot see."""

    u: FloatArray
    excess: FloatArray
    optimum_sd: float

    @functools.cached_property
    def _shifted_u(self) -> FloatArray:
        """``u`` from each node's optimum: shape (nodes, runs)."""
        return self.u[None, :] - self.optimum_sd * _HERMITE_NODES[:, None]

    def _fits(self, skew: float) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
        """At each node: the least-squares curvature, its residual sum of squares, the squared
        norm of the shape it was fitted to, and the node's log weight (prior times profile
        likelihood)."""
        shapes = linex(self._shifted_u, skew)  # (nodes, runs)
        shape_norm = np.maximum((shapes**2).sum(axis=1), 1e-300)
        curvature = np.maximum((shapes @ self.excess) / shape_norm, 0.0)
        squared_error = np.maximum(((self.excess - curvature[:, None] * shapes) ** 2).sum(axis=1), 1e-300)
        log_weight = np.log(_HERMITE_WEIGHTS) - 0.5 * (self.u.size - 1) * np.log(squared_error)
        return curvature, squared_error, shape_norm, log_weight

    def log_likelihood(self, skew: float) -> float:
        """The sweep's profile likelihood of ``skew``, averaged over where its optimum lies."""
        return float(special.logsumexp(self._fits(skew)[3]))

    def log_curvature(self, skew: float) -> tuple[float, float] | None:
        """Mean and variance of the sweep's log curvature at ``skew``: the least-squares fit's
        own error plus the spread over where the optimum lies; None when no fit curves up."""
        curvature, squared_error, shape_norm, log_weight = self._fits(skew)
        ok = curvature > 0
        if not ok.any():
            return None
        weight = np.exp(log_weight[ok] - log_weight[ok].max())
        weight /= weight.sum()
        residual_var = squared_error[ok] / max(self.u.size - 1, 1)
        fit_var = residual_var / shape_norm[ok] / curvature[ok] ** 2
        log_c = np.log(curvature[ok])
        mean = float(weight @ log_c)
        return mean, float(weight @ (fit_var + (log_c - mean) ** 2))


def _skew_posterior(sweeps: list[_SweepAroundOptimum]) -> tuple[float, float]:
    """Posterior mean and sd of the pooled skew. Each sweep's noise is unknown, so its
    likelihood is profiled: ``-(n/2) log SSE(s)`` with the curvature at its least squares,
    averaged over where the sweep's optimum lies. Three points of a 40-step run barely move
    the prior; Step Law's sweeps of 10+ points do."""
    log_posterior = stats.norm.logpdf(_SKEW_GRID, *_SKEW_PRIOR)
    for sweep in sweeps:
        log_posterior += np.array([sweep.log_likelihood(skew) for skew in _SKEW_GRID])
    weights = np.exp(log_posterior - log_posterior.max())
    weights /= weights.sum()
    mean = float(weights @ _SKEW_GRID)
    return mean, float(np.sqrt(weights @ (_SKEW_GRID - mean) ** 2))
