"""How a scale becomes a row of the law's regression: power laws, and the batch-size knee.

In N and D the law is a power law: log eta* is linear in log N and log D. In the batch
size B it can be too (``"loglinear"``), but measured optima are not: within one (N, D)
cell eta* rises with B at small batches and flattens or falls past a critical batch size,
and that knee moves to larger B as D grows (Step Law's table; paper B, arXiv 2410.05838).
The ``"surge"`` form follows Li et al. 2024 ("Surge phenomenon in optimal learning rate and
batch size scaling", arXiv 2405.14578), whose optimal Adam LR is
``eta_max / cosh(log(B / B_noise) / 2)``:

    log eta* = beta_0 + a_N log N + a_D log D - k * log cosh((log B - log B_c(D)) / 2),
    log B_c(D) = c + gamma * log(D / D_ref),

rising as sqrt(B) below the knee B_c and falling as 1/sqrt(B) above it when k = 1 (the
paper's value; k is fitted). ``B_c`` grows with D (paper B: the critical batch size grows in
proportion to the horizon, gamma = 1 a priori). ``k`` enters linearly, so it is part of
the conjugate coefficients; the knee ``(c, gamma)`` is integrated out on a grid.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from scipy import stats

from optuna_lrlaw.science._bayes import FloatArray
from optuna_lrlaw.science.priors import LawPrior
from optuna_lrlaw.science.scale import Scale

BatchForm = Literal["loglinear", "surge"]
BATCH_FORMS: tuple[str, ...] = ("loglinear", "surge")
#: Prior on gamma, the knee's exponent in D: paper B's B_crit ~ T, with room either way.
KNEE_TOKENS_EXPONENT_PRIOR = (1.0, 0.3)
#: Prior on k, the depth of the surge: 1 in the surge paper's Adam formula.
SURGE_AMPLITUDE_PRIOR = (1.0, 0.5)
#: The knee (log B_c at the reference D, gamma) is integrated on a grid in two passes: a
#: coarse one over the whole prior range (log B_c reaching `_KNEE_PAD` beyond the batch
#: sizes seen: a knee outside them shows as a pure rise or fall), then a fine one over the
#: box where the coarse posterior has weight, so a sharp posterior is resolved and a broad
#: one costs no more.
_GAMMA_RANGE = (0.1, 1.9)
_KNEE_PAD = 1.5
COARSE_KNEE_POINTS = (12, 7)
FINE_KNEE_POINTS = (12, 8)


def log_cosh(x: FloatArray) -> FloatArray:
    """log(cosh(x)) without overflow."""
    return np.logaddexp(x, -x) - math.log(2.0)


@dataclass(frozen=True)
class Design:
    """The regression's columns for one law: features, reference scale and batch form.

    ``knees`` holds the grid of (log B_c at the reference D, gamma), one row per design, with
    B_c relative to the reference batch size; a law without a knee has one design and
    ``knees`` of shape ``(1, 0)``.
    """

    features: tuple[str, ...]
    reference: dict[str, float]
    batch_form: BatchForm
    knees: FloatArray

    @classmethod
    def build(
        cls,
        features: tuple[str, ...],
        batch_form: BatchForm,
        optima: pd.DataFrame,
        knee_box: tuple[tuple[float, float], tuple[float, float]] | None = None,
    ) -> Design:
        """The design for sweeps ``optima``, with its reference at their geometric mean.

        Under the surge form the knee grid spans ``knee_box`` ((log B_c range), (gamma
        range)) finely, or, without one, the whole prior range coarsely.
        """
        reference = {f: float(np.exp(np.log(optima[f].to_numpy(dtype=float)).mean())) for f in features}
        if batch_form != "surge":
            return cls(features, reference, batch_form, np.zeros((1, 0)))
        if knee_box is None:
            log_b = np.log(optima["batch_tokens"].to_numpy(dtype=float) / reference["batch_tokens"])
            knee_box = ((log_b.min() - _KNEE_PAD, log_b.max() + _KNEE_PAD), _GAMMA_RANGE)
            points = COARSE_KNEE_POINTS
        else:
            points = FINE_KNEE_POINTS
        c_grid, gamma_grid = (np.linspace(lo, hi, n) for (lo, hi), n in zip(knee_box, points, strict=True))
        knees = np.array([(c, g) for g in gamma_grid for c in c_grid])
        return cls(features, reference, batch_form, knees)

    def knee_box(self, weights: FloatArray) -> tuple[tuple[float, float], tuple[float, float]]:
        """The box of knees where ``weights`` (one per design) are not negligible, padded by
        one grid step on each side: where a finer grid is worth spending."""
        box = []
        for column in (0, 1):
            grid = np.unique(self.knees[:, column])
            step = grid[1] - grid[0] if grid.size > 1 else 0.0
            alive = self.knees[weights > 0, column]
            box.append((max(alive.min() - step, grid[0]), min(alive.max() + step, grid[-1])))
        return box[0], box[1]

    @property
    def has_knee(self) -> bool:
        return self.batch_form == "surge" and "batch_tokens" in self.features

    @property
    def power_features(self) -> tuple[str, ...]:
        """The features entering as power laws (all of them, but B under the surge form)."""
        return tuple(f for f in self.features if not (self.has_knee and f == "batch_tokens"))

    @property
    def coefficient_names(self) -> list[str]:
        return ["log_lr", *self.power_features, *(["batch_amplitude"] if self.has_knee else [])]

    def rows(self, values: dict[str, FloatArray]) -> FloatArray:
        """Design rows for feature ``values`` (arrays of n scales): shape ``(G, n, p)``."""
        logs = {f: np.log(np.asarray(values[f], dtype=float)) - math.log(self.reference[f]) for f in self.features}
        n = len(next(iter(logs.values())))
        base = np.column_stack([np.ones(n), *(logs[f] for f in self.power_features)])
        if not self.has_knee:
            return base[None]
        knee = self.knees[:, :1] + self.knees[:, 1:] * logs["tokens"][None, :]  # (G, n), log B_c - log B_ref
        surge = -log_cosh((logs["batch_tokens"][None, :] - knee) / 2.0)
        return np.concatenate([np.broadcast_to(base, (len(self.knees), *base.shape)), surge[..., None]], axis=2)

    def rows_at(self, scale: Scale) -> FloatArray:
        """Design rows for one scale: shape ``(G, p)``."""
        return self.rows({f: np.array([scale.feature(f)]) for f in self.features})[:, 0, :]

    def prior(self, law_prior: LawPrior) -> tuple[FloatArray, FloatArray, FloatArray | None]:
        """Prior mean and covariance of the coefficients, and the log prior of each design."""
        mean, cov = law_prior.gaussian(self.power_features, self.reference)
        if not self.has_knee:
            return mean, cov, None
        amplitude_mean, amplitude_sd = SURGE_AMPLITUDE_PRIOR
        mean = np.append(mean, amplitude_mean)
        cov = np.pad(cov, ((0, 1), (0, 1)))
        cov[-1, -1] = amplitude_sd**2
        gamma_mean, gamma_sd = KNEE_TOKENS_EXPONENT_PRIOR
        return mean, cov, stats.norm.logpdf(self.knees[:, 1], gamma_mean, gamma_sd)

    def to_dict(self) -> dict:
        return {"batch_form": self.batch_form, "knees": self.knees.tolist()}

    @classmethod
    def from_dict(cls, features: tuple[str, ...], reference: dict[str, float], data: dict) -> Design:
        form = data.get("batch_form", "loglinear")
        if form not in BATCH_FORMS:
            raise ValueError(f"unknown batch form {form!r} in the law's JSON")
        knees = np.array(data.get("knees") or [[]], dtype=float)
        if form == "loglinear" or knees.size == 0:
            return cls(features, reference, form, np.zeros((1, 0)))
        if knees.ndim != 2 or knees.shape[1] != 2:
            raise ValueError(f"the law's knee grid must have two columns, got shape {knees.shape}")
        return cls(features, reference, form, knees)
