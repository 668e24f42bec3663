"""Synthetic LR-sweep problems drawn from known laws, for calibration and property tests.

The loss curves are deliberately NOT the family `estimate_optimum` fits: a parabola in
log LR with different curvatures on the two sides and a cubic kick above the optimum,
relative noise, and divergence above a threshold.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from optuna_lrlaw import Scale, fit_law


@dataclass(frozen=True)
class Problem:
    exponents: dict[str, float]
    log_lr_ref: float
    reference: dict[str, float]
    observations: pd.DataFrame
    holdout: dict[str, float]

    def true_lr(self, **scale: float) -> float:
        log_lr = self.log_lr_ref + sum(a * np.log(scale[k] / self.reference[k]) for k, a in self.exponents.items())
        return float(np.exp(log_lr))


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
    """Six sweeps (3 model sizes x 2 data sizes) and a larger held-out scale."""
    exponents = {"params": rng.uniform(-1.0, 0.0), "tokens": rng.uniform(-0.5, 0.5)}
    reference = {"params": 1e7, "tokens": 1e9}
    log_lr_ref = np.log(rng.uniform(3e-4, 1e-2))
    problem_params = 1e7 * np.array([1.0, 2.5, 6.25])
    problem_tokens = 1e9 * np.array([1.0, 4.0])
    frames = []
    base = Problem(exponents, log_lr_ref, reference, pd.DataFrame(), {})
    for n in problem_params:
        for d in problem_tokens:
            optimum = base.true_lr(params=n, tokens=d)
            frame = sweep(rng, optimum, floor=2.0 + 20 * n**-0.15)
            frames.append(frame.assign(params=n, tokens=d))
    holdout = {"params": 1e7 * 25.0, "tokens": 1e9 * 8.0}
    return Problem(exponents, log_lr_ref, reference, pd.concat(frames, ignore_index=True), holdout)


def law_coverage(n_problems: int = 200, seed: int = 0) -> dict[str, float]:
    """How often the law's 90% intervals hold the truth over ``n_problems`` drawn problems: for
    the N and D exponents, and for the optimum at the larger held-out scale."""
    rng = np.random.default_rng(seed)
    hits = {"params": 0, "tokens": 0, "holdout": 0}
    for _ in range(n_problems):
        problem = draw_problem(rng)
        law = fit_law(problem.observations)
        table = law.coefficients(0.9)
        for name in ("params", "tokens"):
            hits[name] += table.loc[name, "lo"] <= problem.exponents[name] <= table.loc[name, "hi"]
        lo, hi = law.predict(Scale(**problem.holdout)).interval(0.9)
        hits["holdout"] += lo <= problem.true_lr(**problem.holdout) <= hi
    return {name: count / n_problems for name, count in hits.items()}
