"""Synthetic LR-sweep problems drawn from known laws, for calibration and property tests.

The loss curves are deliberately NOT the family `estimate_optimum` fits: a parabola in
log LR with different curvatures on the two sides and a cubic kick above the optimum,
relative noise, and divergence above a threshold. As on real data, the optima scatter
around the law: each model size by a shared offset (sd ``tau_model``), each sweep by its
own (sd ``tau``), both sds drawn per problem from 0 to `MAX_SCATTER` (Step Law's table
shows about 0.1, docs/validation.md).

With ``batch=True`` every (N, D) cell is swept at three batch sizes, and the optimum follows
the surge form (arXiv 2405.14578): it rises with B below a knee and falls above it, the knee
moving with D as ``B_c ~ D^gamma``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from optuna_lrlaw import Scale, fit_law

#: The largest sd (log LR) of the scatter of optima around the law, for sweeps and for model sizes.
MAX_SCATTER = 0.2


#: Batch sizes swept in every cell of a problem with a batch axis (tokens per step).
BATCH_SIZES = (2.0**17, 2.0**19, 2.0**21)


@dataclass(frozen=True)
class Law:
    exponents: dict[str, float]
    log_lr_ref: float
    reference: dict[str, float]
    #: (amplitude k, log B_c at the reference D, gamma) of the surge in B, or None.
    knee: tuple[float, float, float] | None = None

    def lr(self, **scale: float) -> float:
        """The law's optimal LR at ``scale`` (a real optimum scatters around it)."""
        log_lr = self.log_lr_ref + sum(a * np.log(scale[k] / self.reference[k]) for k, a in self.exponents.items())
        if self.knee is not None:
            amplitude, log_knee, gamma = self.knee
            knee = log_knee + gamma * np.log(scale["tokens"] / self.reference["tokens"])
            log_lr -= amplitude * np.log(np.cosh((np.log(scale["batch_tokens"]) - knee) / 2))
        return float(np.exp(log_lr))


@dataclass(frozen=True)
class Curve:
    """The relative loss excess at ``u = log lr - log eta*``: ``left u^2`` below the optimum,
    ``right u^2 + cubic u^3`` above it, and divergence past ``cliff``."""

    left: float
    right: float
    cubic: float
    cliff: float

    def excess(self, u: np.ndarray | float) -> np.ndarray:
        u = np.asarray(u, dtype=float)
        return np.where(u < 0, self.left * u**2, self.right * u**2 + self.cubic * u**3)

    @classmethod
    def draw(cls, rng: np.random.Generator) -> Curve:
        left = rng.uniform(0.005, 0.03)
        return cls(left, left * rng.uniform(1.0, 4.0), rng.uniform(0, 0.02), np.log(rng.uniform(3.0, 10.0)))


@dataclass(frozen=True)
class Problem:
    law: Law
    observations: pd.DataFrame
    holdout: dict[str, float]
    holdout_lr: float  # the true optimum at the held-out scale, scatter included
    holdout_curve: Curve  # the loss curve there, for the regret of a chosen LR


def sweep(rng: np.random.Generator, optimum: float, floor: float, n_lrs: int = 11) -> pd.DataFrame:
    """One LR sweep around ``optimum`` (log-spaced, off-centre), with the curve described above."""
    centre = optimum * np.exp(rng.uniform(-0.7, 0.7))
    lrs = centre * np.geomspace(1 / 10, 10, n_lrs)
    u = np.log(lrs / optimum)
    left = rng.uniform(0.005, 0.03)
    right = left * rng.uniform(1.0, 4.0)
    cubic = rng.uniform(0, 0.02)
    noise = rng.uniform(0.0005, 0.003)
    loss = floor * (1 + Curve(left, right, cubic, np.inf).excess(u) + rng.normal(0, noise, n_lrs))
    diverged = u > np.log(rng.uniform(3.0, 10.0))
    return pd.DataFrame({"lr": lrs, "loss": np.where(diverged, np.nan, loss), "diverged": diverged})


def draw_problem(rng: np.random.Generator, *, batch: bool = False) -> Problem:
    """Six sweeps (3 model sizes x 2 data sizes; with ``batch``, each at 3 batch sizes) and a
    larger held-out scale (a new model size)."""
    knee = None
    if batch:
        log_b = np.log(BATCH_SIZES)
        knee = (rng.uniform(0.5, 2.0), rng.uniform(log_b[0], log_b[-1]), rng.uniform(0.4, 1.2))
    law = Law(
        exponents={"params": rng.uniform(-1.0, 0.0), "tokens": rng.uniform(-0.5, 0.5)},
        log_lr_ref=np.log(rng.uniform(3e-4, 1e-2)),
        reference={"params": 1e7, "tokens": 1e9},
        knee=knee,
    )
    tau, tau_model = rng.uniform(0.0, MAX_SCATTER, size=2)

    def optimum(model_offset: float, **scale: float) -> float:
        return law.lr(**scale) * np.exp(model_offset + rng.normal(0.0, tau))

    frames = []
    for n in 1e7 * np.array([1.0, 2.5, 6.25]):
        model_offset = rng.normal(0.0, tau_model)
        for d in 1e9 * np.array([1.0, 4.0]):
            for b in BATCH_SIZES if batch else [None]:
                scale = {"params": n, "tokens": d, **({"batch_tokens": b} if batch else {})}
                frame = sweep(rng, optimum(model_offset, **scale), floor=2.0 + 20 * n**-0.15)
                frames.append(frame.assign(**scale))
    holdout = {
        "params": 1e7 * 25.0,
        "tokens": 1e9 * 8.0,
        **({"batch_tokens": rng.choice(BATCH_SIZES)} if batch else {}),
    }
    holdout_lr = optimum(rng.normal(0.0, tau_model), **holdout)
    return Problem(law, pd.concat(frames, ignore_index=True), holdout, holdout_lr, Curve.draw(rng))


def law_coverage(n_problems: int = 200, seed: int = 0, *, batch: bool = False) -> dict[str, float]:
    """How often the law's 90% intervals hold the truth over ``n_problems`` drawn problems: for
    the N and D exponents, and for the true optimum at the larger held-out scale. With
    ``batch``, the law uses the batch size with its default batch form."""
    rng = np.random.default_rng(seed)
    hits = {"params": 0, "tokens": 0, "holdout": 0}
    features = ("params", "tokens", "batch_tokens") if batch else ("params", "tokens")
    for _ in range(n_problems):
        problem = draw_problem(rng, batch=batch)
        law = fit_law(problem.observations, features=features)
        table = law.coefficients(0.9)
        for name in ("params", "tokens"):
            hits[name] += table.loc[name, "lo"] <= problem.law.exponents[name] <= table.loc[name, "hi"]
        lo, hi = law.predict(Scale(**problem.holdout)).interval(0.9)
        hits["holdout"] += lo <= problem.holdout_lr <= hi
    return {name: count / n_problems for name, count in hits.items()}
