"""Synthetic LR-sweep problems drawn from known laws, for calibration and property tests.

The loss curves are deliberately NOT the family `estimate_optimum` fits: a parabola in
log LR with different curvatures on the two sides and a cubic kick above the optimum,
relative noise, and divergence above a threshold. As on real data, the optima scatter
around the law: each model size by a shared offset (sd ``tau_model``), each sweep by its
own (sd ``tau``), both sds drawn per problem from 0 to `MAX_SCATTER` (Step Law's table
shows about 0.1, docs/validation.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from optuna_lrlaw import Scale, fit_law

#: The largest sd (log LR) of the scatter of optima around the law, for sweeps and for model sizes.
MAX_SCATTER = 0.2


@dataclass(frozen=True)
class Law:
    exponents: dict[str, float]
    log_lr_ref: float
    reference: dict[str, float]

    def lr(self, **scale: float) -> float:
        """The law's optimal LR at ``scale`` (a real optimum scatters around it)."""
        log_lr = self.log_lr_ref + sum(a * np.log(scale[k] / self.reference[k]) for k, a in self.exponents.items())
        return float(np.exp(log_lr))


@dataclass(frozen=True)
class Problem:
    law: Law
    observations: pd.DataFrame
    holdout: dict[str, float]
    holdout_lr: float  # the true optimum at the held-out scale, scatter included


def sweep(rng: np.random.Generator, optimum: float, floor: float, n_lrs: int = 11) -> pd.DataFrame:
    """One LR sweep around ``optimum`` (log-spaced, off-centre), with the curve described above."""
    centre = optimum * np.exp(rng.uniform(-0.7, 0.7))
    lrs = centre * np.geomspace(1 / 10, 10, n_lrs)
    u = np.log(lrs / optimum)
    left = rng.uniform(0.005, 0.03)
    right = left * rng.uniform(1.0, 4.0)
    curve = np.where(u < 0, left * u**2, right * u**2 + rng.uniform(0, 0.02) * u**3)
    noise = rng.uniform(0.0005, 0.003)
    loss = floor * (1 + curve + rng.normal(0, noise, n_lrs))
    diverged = u > np.log(rng.uniform(3.0, 10.0))
    return pd.DataFrame({"lr": lrs, "loss": np.where(diverged, np.nan, loss), "diverged": diverged})


def draw_problem(rng: np.random.Generator) -> Problem:
    """Six sweeps (3 model sizes x 2 data sizes) and a larger held-out scale (a new model size)."""
    law = Law(
        exponents={"params": rng.uniform(-1.0, 0.0), "tokens": rng.uniform(-0.5, 0.5)},
        log_lr_ref=np.log(rng.uniform(3e-4, 1e-2)),
        reference={"params": 1e7, "tokens": 1e9},
    )
    tau, tau_model = rng.uniform(0.0, MAX_SCATTER, size=2)

    def optimum(params: float, tokens: float, model_offset: float) -> float:
        return law.lr(params=params, tokens=tokens) * np.exp(model_offset + rng.normal(0.0, tau))

    frames = []
    for n in 1e7 * np.array([1.0, 2.5, 6.25]):
        model_offset = rng.normal(0.0, tau_model)
        for d in 1e9 * np.array([1.0, 4.0]):
            frame = sweep(rng, optimum(n, d, model_offset), floor=2.0 + 20 * n**-0.15)
            frames.append(frame.assign(params=n, tokens=d))
    holdout = {"params": 1e7 * 25.0, "tokens": 1e9 * 8.0}
    holdout_lr = optimum(holdout["params"], holdout["tokens"], rng.normal(0.0, tau_model))
    return Problem(law, pd.concat(frames, ignore_index=True), holdout, holdout_lr)


def law_coverage(n_problems: int = 200, seed: int = 0) -> dict[str, float]:
    """How often the law's 90% intervals hold the truth over ``n_problems`` drawn problems: for
    the N and D exponents, and for the true optimum at the larger held-out scale."""
    rng = np.random.default_rng(seed)
    hits = {"params": 0, "tokens": 0, "holdout": 0}
    for _ in range(n_problems):
        problem = draw_problem(rng)
        law = fit_law(problem.observations)
        table = law.coefficients(0.9)
        for name in ("params", "tokens"):
            hits[name] += table.loc[name, "lo"] <= problem.law.exponents[name] <= table.loc[name, "hi"]
        lo, hi = law.predict(Scale(**problem.holdout)).interval(0.9)
        hits["holdout"] += lo <= problem.holdout_lr <= hi
    return {name: count / n_problems for name, count in hits.items()}
