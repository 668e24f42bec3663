"""The Bayesian regression behind the law, exact on a grid of its few nonlinear parameters.

The law regresses each sweep's optimum ``y_i`` (log eta*, known to sd ``s_i``) on a design
row ``x_i``:

    y = X beta + e,    e ~ N(0, diag(s_i^2 + tau^2) + tau_model^2 * [same model size]),

with a normal prior on ``beta``. Given the two scatters (and, for the batch-size knee, the
knee's position), ``beta`` is conjugate: its posterior and the evidence are closed-form.
Those few nonlinear parameters are integrated out on a grid, weighted by their evidence
times their prior, which gives the posterior as a normal mixture.

The noise covariance is block-diagonal (one block per model size, a diagonal plus a constant
block), so Sherman-Morrison inverts it in O(n) per grid point: grids of tens of thousands of
points cost milliseconds per hundred sweeps, instead of a Cholesky factorisation each.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from optuna_lrlaw.science._bayes import FloatArray, GaussianMixture

#: Grids and half-normal prior scale for tau and tau_model, the scatter of optima around
#: the law (log LR): a priori about 12% (the prior's mean), which the data can overrule.
#: Step Law's table shows about 10%; 0.15 is the scale nearest 90% coverage on synthetic laws
#: whose optima scatter that much (docs/validation.md).
_TAU_GRID = np.linspace(0.0, 1.5, 25)
_TAU_MODEL_GRID = np.linspace(0.0, 1.5, 13)
_TAU_PRIOR_SCALE = 0.15
#: Components whose posterior weight is below this are dropped: nothing a quantile can see.
_NEGLIGIBLE_WEIGHT = 1e-10


@dataclass(frozen=True)
class Posterior:
    """The coefficients' posterior: one normal per retained grid point, with its weight.

    ``tau`` is the sd of a new model size's optimum around the law (both scatters), and
    ``design_index`` says which of the fit's designs (nonlinear grid points) a component uses.
    """

    tau: FloatArray  # (M,)
    weights: FloatArray  # (M,)
    means: FloatArray  # (M, p)
    covs: FloatArray  # (M, p, p)
    design_index: np.ndarray  # (M,) int

    def linear(self, x: FloatArray, *, with_scatter: bool) -> GaussianMixture:
        """The distribution of ``x @ beta`` (plus the scatter for a new scale's optimum).

        ``x`` is one row ``(p,)`` shared by all components, or one row per design ``(G, p)``.
        """
        rows = np.broadcast_to(x, self.means.shape) if x.ndim == 1 else x[self.design_index]
        means = np.einsum("mp,mp->m", rows, self.means)
        var = np.einsum("mp,mpq,mq->m", rows, self.covs, rows)
        if with_scatter:
            var = var + self.tau**2
        return GaussianMixture(self.weights, means, np.sqrt(np.maximum(var, 1e-300)))

    def design_weights(self, n_designs: int) -> FloatArray:
        """Posterior probability of each design (nonlinear grid point)."""
        return np.bincount(self.design_index, weights=self.weights, minlength=n_designs)

    def to_dict(self) -> dict[str, list]:
        return {
            "tau": self.tau.tolist(),
            "weights": self.weights.tolist(),
            "means": self.means.tolist(),
            "covs": self.covs.tolist(),
            "design_index": self.design_index.tolist(),
        }

    @classmethod
    def from_dict(cls, data: dict) -> Posterior:
        arrays = {k: np.array(data[k], dtype=float) for k in ("tau", "weights", "means", "covs")}
        n = arrays["weights"].size
        index = np.array(data.get("design_index", np.zeros(n)), dtype=int)
        shapes_ok = (
            arrays["tau"].shape == (n,)
            and arrays["means"].ndim == 2
            and arrays["means"].shape[0] == n
            and arrays["covs"].shape == (n, arrays["means"].shape[1], arrays["means"].shape[1])
            and index.shape == (n,)
        )
        if not shapes_ok or n == 0:
            raise ValueError("the law's posterior arrays have inconsistent shapes")
        for name, array in arrays.items():
            if not np.isfinite(array).all():
                raise ValueError(f"the law's posterior {name!r} has a value that is not finite")
        weights, covs = arrays["weights"], arrays["covs"]
        if (weights < 0).any() or not math.isclose(weights.sum(), 1.0, rel_tol=1e-6):
            raise ValueError("the law's posterior weights must be non-negative and sum to 1")
        if (arrays["tau"] < 0).any():
            raise ValueError("the law's posterior scatter tau must be non-negative")
        variances = np.diagonal(covs, axis1=1, axis2=2)
        if (variances < 0).any() or not np.allclose(covs, covs.transpose(0, 2, 1), rtol=1e-6, atol=1e-12):
            raise ValueError("the law's posterior covariances must be symmetric with non-negative variances")
        if (index < 0).any():
            raise ValueError("the law's posterior design_index must be non-negative")
        return cls(design_index=index, **arrays)


def fit_regression(
    designs: FloatArray,
    y: FloatArray,
    noise_var: FloatArray,
    groups: np.ndarray,
    prior_mean: FloatArray,
    prior_cov: FloatArray,
    design_log_prior: FloatArray | None = None,
    *,
    coarse: bool = False,
) -> Posterior:
    """Posterior of the coefficients over the grid of (design, tau, tau_model).

    Args:
        designs: the design matrix at each nonlinear grid point, shape ``(G, n, p)``.
        y, noise_var: the sweeps' optima and their variances, shape ``(n,)``.
        groups: the model-size label of each sweep; sweeps sharing one share an offset of
            sd ``tau_model`` (one model shape's quirks).
        prior_mean, prior_cov: the normal prior of the coefficients.
        design_log_prior: log prior weight of each design (default: equal).
        coarse: integrate the scatters on every third point of their grids: enough to see
            which designs carry weight, at a ninth of the cost.
    """
    n_designs, n, p = designs.shape
    step = 3 if coarse else 1
    tau, tau_model = (g.ravel() for g in np.meshgrid(_TAU_GRID[::step], _TAU_MODEL_GRID[::step]))
    # Gram matrices of [X, y] under the inverse noise covariance, one per (tau, design),
    # as one matrix product: (K, n) @ (n, G * (p+1)^2).
    z = np.concatenate([designs, np.broadcast_to(y[None, :, None], (n_designs, n, 1))], axis=2)
    outer = (z[..., :, None] * z[..., None, :]).transpose(1, 0, 2, 3).reshape(n, -1)
    inv_var = 1.0 / (noise_var[None, :] + tau[:, None] ** 2)  # (K, n)
    gram = (inv_var @ outer).reshape(len(tau), n_designs, p + 1, p + 1)
    # Each model size's block adds tau_model^2 * 1 1'; Sherman-Morrison removes it exactly.
    log_det = -np.log(inv_var).sum(axis=1)
    for label in np.unique(groups):
        member = groups == label
        block_sum = inv_var[:, member].sum(axis=1)  # (K,)
        shrink = tau_model**2 / (1.0 + tau_model**2 * block_sum)
        u = (inv_var[:, member] @ z[:, member].transpose(1, 0, 2).reshape(member.sum(), -1)).reshape(
            len(tau), n_designs, p + 1
        )
        gram -= shrink[:, None, None, None] * (u[..., :, None] * u[..., None, :])
        log_det += np.log1p(tau_model**2 * block_sum)
    xtx, xty, yty = gram[..., :p, :p], gram[..., :p, p], gram[..., p, p]

    prior_precision = np.linalg.inv(prior_cov)
    precision = prior_precision + xtx
    rhs = prior_precision @ prior_mean + xty
    means = np.linalg.solve(precision, rhs[..., None])[..., 0]
    # log evidence of y ~ N(X mu0, X S0 X' + noise) through the determinant lemma.
    _, log_det_precision = np.linalg.slogdet(precision)
    quadratic = yty + prior_mean @ prior_precision @ prior_mean - np.einsum("kgi,kgi->kg", means, rhs)
    log_w = -0.5 * (log_det[:, None] + log_det_precision + quadratic)
    log_w += (-0.5 * (tau**2 + tau_model**2) / _TAU_PRIOR_SCALE**2)[:, None]
    if design_log_prior is not None:
        log_w += design_log_prior[None, :]
    weights = np.exp(log_w - log_w.max()).ravel()
    weights /= weights.sum()
    # Only the components that carry weight need their covariance.
    keep = np.flatnonzero(weights > _NEGLIGIBLE_WEIGHT)
    kept = weights[keep]
    return Posterior(
        tau=np.repeat(np.hypot(tau, tau_model), n_designs)[keep],
        weights=kept / kept.sum(),
        means=means.reshape(-1, p)[keep],
        covs=np.linalg.inv(precision.reshape(-1, p, p)[keep]),
        design_index=np.tile(np.arange(n_designs), len(tau))[keep],
    )
