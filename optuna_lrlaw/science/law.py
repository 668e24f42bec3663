"""How the optimal learning rate moves with scale: a Bayesian power law.

Each sweep (the runs at one scale) gives a posterior for its optimum, summarised as
``m_i +- s_i`` in log LR by `estimate_optimum`. The law is a log-linear regression

    m_i = beta_0 + sum_k beta_k * log(f_ik / ref_k) + e_i,    e_i ~ N(0, s_i^2 + tau^2),

so precise sweeps count more than vague ones (heteroscedastic weights), and ``tau``, the
scatter of real optima around any power law, is learned from the data instead of being
assumed zero. Given ``tau`` the posterior of ``beta`` is normal (a conjugate normal
prior, `priors`); ``tau`` itself is integrated over a grid under a half-normal prior.
The predictive distribution of log eta* at a new scale is therefore a normal mixture
whose width grows with the distance from the data: this width is the "search factor"
the next scale's LR search must cover.

Sweeps whose optimum is not bracketed only bound it; they are reported and left out.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from optuna_lrlaw.science._bayes import FloatArray, GaussianMixture, central_interval, lr_interval
from optuna_lrlaw.science.observations import validate_observations
from optuna_lrlaw.science.optimum import estimate_optimum
from optuna_lrlaw.science.priors import WEAK, LawPrior
from optuna_lrlaw.science.scale import SCALE_FEATURES, Scale

DEFAULT_FEATURES: tuple[str, ...] = ("params", "tokens")
#: Grids and half-normal prior scale for tau and tau_model, the scatter of optima around
#: the law (log LR): a priori about 12% (the prior's mean), which the data can overrule.
#: Step Law's table shows about 10%; 0.15 is the scale nearest 90% coverage on synthetic laws
#: whose optima scatter that much (docs/validation.md).
_TAU_GRID = np.linspace(0.0, 1.5, 25)
_TAU_MODEL_GRID = np.linspace(0.0, 1.5, 13)
_TAU_PRIOR_SCALE = 0.15
_JSON_FORMAT = "optuna-lrlaw/law/v1"
_OBSERVATION_COLUMNS = ("params", "tokens", "batch_tokens", "lr", "loss", "diverged")


@dataclass(frozen=True)
class LRPrediction:
    """The law's belief about the optimal learning rate at one scale.

    Attributes:
        scale: where the prediction is made.
        log_lr_mean, log_lr_sd: mean and sd of log eta* (natural log).
        lr: the median of eta*: the LR to use if only one run is possible.
    """

    scale: Scale
    log_lr_mean: float
    log_lr_sd: float
    lr: float
    _mixture: GaussianMixture = field(repr=False, compare=False)

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

    def search_factor(self, q: float = 0.9) -> float:
        """The factor f such that ``[lr / f, lr * f]`` spans the ``q`` interval: how wide
        (multiplicatively) an LR search at this scale must reach."""
        lo, hi = self.interval(q)
        return math.sqrt(hi / lo)

    def __str__(self) -> str:
        lo, hi = self.interval(0.9)
        return f"lr* = {self.lr:.3g} (90% interval {lo:.3g} to {hi:.3g}, search factor x{self.search_factor():.2f})"


def _sweep_keys(features: tuple[str, ...]) -> list[str]:
    # A sweep is one (N, D) cell, split further by batch size when the law uses it.
    return ["params", "tokens", *(["batch_tokens"] if "batch_tokens" in features else [])]


def estimate_optima(observations: pd.DataFrame, features: tuple[str, ...] = DEFAULT_FEATURES) -> pd.DataFrame:
    """The optimum of every sweep in a table of runs, one row per sweep.

    Columns: the sweep's scale, ``lr`` (posterior median), ``log_lr_mean``, ``log_lr_sd``,
    ``lr_lo`` and ``lr_hi`` (90% interval), ``bracketed``, ``beyond``, ``n_runs``,
    ``n_diverged``, and ``used`` with ``note`` saying why a sweep is left out of the law.
    """
    keys = _sweep_keys(features)
    rows = []
    for scale_values, sweep in observations.groupby(keys, sort=True):
        row = dict(zip(keys, (float(v) for v in scale_values), strict=True))
        try:
            est = estimate_optimum(
                sweep["lr"].to_numpy(), sweep["loss"].to_numpy(), diverged=sweep["diverged"].to_numpy()
            )
        except ValueError as error:
            rows.append(
                {
                    **row,
                    "n_runs": len(sweep),
                    "n_diverged": int(sweep["diverged"].sum()),
                    "used": False,
                    "note": str(error),
                }
            )
            continue
        lo, hi = est.interval(0.9)
        rows.append(
            {
                **row,
                "lr": est.lr,
                "log_lr_mean": est.log_lr_mean,
                "log_lr_sd": est.log_lr_sd,
                "lr_lo": lo,
                "lr_hi": hi,
                "bracketed": est.bracketed,
                "beyond": est.beyond,
                "n_runs": est.n_runs,
                "n_diverged": est.n_diverged,
                "used": est.bracketed,
                "note": "" if est.bracketed else f"not bracketed: the optimum may lie {est.beyond} the sweep",
            }
        )
    columns = [
        *keys,
        "lr",
        "log_lr_mean",
        "log_lr_sd",
        "lr_lo",
        "lr_hi",
        "bracketed",
        "beyond",
        "n_runs",
        "n_diverged",
        "used",
        "note",
    ]
    return pd.DataFrame(rows).reindex(columns=columns)


@dataclass(frozen=True)
class _Posterior:
    """Normal posteriors of the coefficients, one per tau grid point, with their weights."""

    tau: FloatArray
    weights: FloatArray
    means: FloatArray  # (K, p)
    covs: FloatArray  # (K, p, p)

    def linear(self, x: FloatArray, *, with_scatter: bool) -> GaussianMixture:
        """The distribution of ``x @ beta`` (plus the scatter for a new scale's optimum)."""
        means = self.means @ x
        var = np.einsum("p,kpq,q->k", x, self.covs, x)
        if with_scatter:
            var = var + self.tau**2
        keep = self.weights > 1e-12
        return GaussianMixture(
            self.weights[keep] / self.weights[keep].sum(), means[keep], np.sqrt(np.maximum(var[keep], 1e-300))
        )


def _regression(
    x: FloatArray,
    y: FloatArray,
    noise_var: FloatArray,
    same_model: FloatArray,
    prior_mean: FloatArray,
    prior_cov: FloatArray,
) -> _Posterior:
    """Posterior of the coefficients on a grid of (tau, tau_model).

    ``same_model[i, j]`` is 1 where sweeps i and j share the model size N: their optima
    share an offset from the law of sd ``tau_model`` (one model shape's quirks), on top of
    the independent scatter ``tau``. The two taus are integrated out on a grid; tau_model's
    contribution to a prediction at an unseen model size is part of the returned ``tau``.
    """
    tau, tau_model = (g.ravel() for g in np.meshgrid(_TAU_GRID, _TAU_MODEL_GRID))
    noise_cov = (
        np.eye(len(y)) * (noise_var[None, :] + tau[:, None] ** 2)[:, :, None]
        + tau_model[:, None, None] ** 2 * same_model
    )
    prior_precision = np.linalg.inv(prior_cov)
    # Posterior of beta for every (tau, tau_model) at once, through whitened data.
    chol = np.linalg.cholesky(noise_cov)
    whitened_x = np.linalg.solve(chol, np.broadcast_to(x, (len(tau), *x.shape)))
    whitened_y = np.linalg.solve(chol, np.broadcast_to(y[:, None], (len(tau), len(y), 1)))[..., 0]
    precision = prior_precision + np.einsum("kni,knj->kij", whitened_x, whitened_x)
    covs = np.linalg.inv(precision)
    means = np.einsum(
        "kij,kj->ki", covs, prior_precision @ prior_mean + np.einsum("kni,kn->ki", whitened_x, whitened_y)
    )
    # Evidence of each (tau, tau_model): y ~ N(x mu0, x S0 x' + noise_cov).
    marginal_chol = np.linalg.cholesky(x @ prior_cov @ x.T + noise_cov)
    z = np.linalg.solve(marginal_chol, np.broadcast_to((y - x @ prior_mean)[:, None], (len(tau), len(y), 1)))[..., 0]
    log_det = np.log(np.diagonal(marginal_chol, axis1=1, axis2=2)).sum(axis=1)
    log_w = -log_det - 0.5 * (z**2).sum(axis=1) - 0.5 * (tau**2 + tau_model**2) / _TAU_PRIOR_SCALE**2
    weights = np.exp(log_w - log_w.max())
    return _Posterior(np.hypot(tau, tau_model), weights / weights.sum(), means, covs)


class LRLaw:
    """A fitted law for the optimal learning rate, ``eta* = A * N^a * D^b [* B^c]``.

    Build one with `fit_law`; use `predict` for a new scale, `coefficients` for the
    exponents with their intervals, `update` when more runs arrive, and
    `to_json`/`from_json` to store it.

    Example:
        >>> law = fit_law(runs)                                        # doctest: +SKIP
        >>> law.predict(Scale(params=1.07e9, tokens=2e10)).interval()  # doctest: +SKIP
    """

    def __init__(
        self,
        *,
        features: tuple[str, ...],
        reference: dict[str, float],
        prior: LawPrior,
        observations: pd.DataFrame,
        optima: pd.DataFrame,
        posterior: _Posterior,
    ) -> None:
        self.features = features
        self.reference = reference
        self.prior = prior
        self.observations = observations
        self.optima = optima
        self._posterior = posterior

    def _design(self, scale: Scale) -> FloatArray:
        return np.array([1.0, *(math.log(scale.feature(f) / self.reference[f]) for f in self.features)])

    def predict(self, scale: Scale) -> LRPrediction:
        """The predictive distribution of the optimal LR at ``scale``."""
        mixture = self._posterior.linear(self._design(scale), with_scatter=True)
        return LRPrediction(
            scale=scale,
            log_lr_mean=mixture.mean,
            log_lr_sd=mixture.sd,
            lr=math.exp(float(mixture.quantile(0.5))),
            _mixture=mixture,
        )

    @property
    def scatter(self) -> float:
        """Posterior mean of tau, the sd of real optima around the law in log LR."""
        return float(self._posterior.weights @ self._posterior.tau)

    def coefficients(self, q: float = 0.9) -> pd.DataFrame:
        """Posterior of the law's coefficients with equal-tailed ``q`` intervals.

        One row per exponent (``estimate`` is its posterior mean, ``sd`` its sd), and a row
        ``prefactor`` for A in ``eta* = A * N^a * D^b``, the LR at N = D = B = 1 as laws are
        published (``estimate`` is its median, ``sd`` the sd of log A).
        """
        p = len(self.features) + 1
        directions = {"prefactor": np.array([1.0, *(-math.log(self.reference[f]) for f in self.features)])}
        directions.update({f: np.eye(p)[j] for j, f in enumerate(self.features, start=1)})
        rows = {}
        for name, x in directions.items():
            mixture = self._posterior.linear(x, with_scatter=False)
            lo, hi = central_interval(mixture.quantile, q)
            rows[name] = {"estimate": mixture.mean, "sd": mixture.sd, "lo": lo, "hi": hi}
        rows["prefactor"]["estimate"] = float(
            self._posterior.linear(directions["prefactor"], with_scatter=False).quantile(0.5)
        )
        for column in ("estimate", "lo", "hi"):
            rows["prefactor"][column] = math.exp(rows["prefactor"][column])
        table = pd.DataFrame.from_dict(rows, orient="index")
        table.index.name = "coefficient"
        return table

    def update(self, more_observations: pd.DataFrame) -> LRLaw:
        """The law refitted on all runs so far plus ``more_observations``: the same law that
        `fit_law` gives on the concatenated table, reference scale included."""
        more = validate_observations(more_observations, require=tuple(c for c in self.features if c == "batch_tokens"))
        combined = pd.concat([self.observations, more], ignore_index=True)
        return fit_law(combined, features=self.features, prior=self.prior)

    def to_json(self) -> str:
        """Everything the law is, as JSON text; `from_json` gives back an equal law."""
        obs = self.observations
        payload = {
            "format": _JSON_FORMAT,
            "features": list(self.features),
            "reference": self.reference,
            "prior": self.prior.to_dict(),
            "observations": {c: [_json_value(v) for v in obs[c]] for c in obs.columns},
            "optima": {c: [_json_value(v) for v in self.optima[c]] for c in self.optima.columns},
            "posterior": {
                "tau": self._posterior.tau.tolist(),
                "weights": self._posterior.weights.tolist(),
                "means": self._posterior.means.tolist(),
                "covs": self._posterior.covs.tolist(),
            },
        }
        return json.dumps(payload, allow_nan=False)

    @classmethod
    def from_json(cls, text: str) -> LRLaw:
        """Read a law written by `to_json`."""
        data = json.loads(text)
        if not isinstance(data, dict) or data.get("format") != _JSON_FORMAT:
            raise ValueError(f"not an optuna-lrlaw law (expected format {_JSON_FORMAT!r})")
        post = data["posterior"]
        observations = pd.DataFrame(data["observations"]).astype({"diverged": bool})
        for column in observations.columns.difference(["diverged"]):
            observations[column] = observations[column].astype(float)
        return cls(
            features=tuple(data["features"]),
            reference={k: float(v) for k, v in data["reference"].items()},
            prior=LawPrior.from_dict(data["prior"]),
            observations=observations,
            optima=pd.DataFrame(data["optima"]),
            posterior=_Posterior(*(np.array(post[k], dtype=float) for k in ("tau", "weights", "means", "covs"))),
        )

    def __repr__(self) -> str:
        used = int(self.optima["used"].sum())
        exps = ", ".join(
            f"{f}^{self._posterior.linear(np.eye(len(self.features) + 1)[j], with_scatter=False).mean:+.3f}"
            for j, f in enumerate(self.features, start=1)
        )
        return f"LRLaw(eta* ~ {exps}; {used} of {len(self.optima)} sweeps, prior {self.prior.name!r})"


def _json_value(value: object) -> object:
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, float, np.integer, np.floating)):
        number = float(value)
        return number if math.isfinite(number) else None
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


def fit_law(
    observations: pd.DataFrame,
    *,
    features: tuple[str, ...] | list[str] = DEFAULT_FEATURES,
    prior: LawPrior | None = None,
) -> LRLaw:
    """Fit the optimal-LR law ``log eta* ~ sum_k a_k log f_k`` to sweeps at several scales.

    Args:
        observations: runs in the `observations` schema; every distinct scale is a sweep.
        features: scale features the law uses, from ``params``, ``tokens``, ``batch_tokens``.
        prior: a `LawPrior`; the default `priors.WEAK` says almost nothing.

    Raises:
        ValueError: on a malformed table, unknown features, or when no sweep brackets
            its optimum.

    Example:
        >>> law = fit_law(runs, features=("params", "tokens"))        # doctest: +SKIP
    """
    features = tuple(features)
    if not features or len(set(features)) != len(features) or not set(features) <= set(SCALE_FEATURES):
        raise ValueError(f"features must be distinct names from {SCALE_FEATURES}, got {features}")
    prior = WEAK if prior is None else prior
    if not isinstance(prior, LawPrior):
        raise ValueError(f"prior must be a LawPrior, got {type(prior).__name__}")
    clean = validate_observations(observations, require=tuple(f for f in features if f == "batch_tokens"))
    clean = clean[[c for c in _OBSERVATION_COLUMNS if c in clean.columns]].reset_index(drop=True)
    optima = estimate_optima(clean, features)
    used = optima[optima["used"]]
    if used.empty:
        notes = "; ".join(sorted(set(optima["note"])))
        raise ValueError(f"none of the {len(optima)} sweeps brackets its optimum ({notes}); widen the sweeps")

    logs = np.log(used[list(features)].to_numpy(dtype=float))
    reference = {f: float(np.exp(logs[:, j].mean())) for j, f in enumerate(features)}
    design = np.column_stack([np.ones(len(used)), logs - logs.mean(axis=0)])
    prior_mean, prior_cov = prior.gaussian(features, reference)
    posterior = _regression(
        design,
        used["log_lr_mean"].to_numpy(dtype=float),
        used["log_lr_sd"].to_numpy(dtype=float) ** 2,
        np.equal.outer(used["params"].to_numpy(), used["params"].to_numpy()).astype(float),
        prior_mean,
        prior_cov,
    )
    return LRLaw(
        features=features, reference=reference, prior=prior, observations=clean, optima=optima, posterior=posterior
    )
