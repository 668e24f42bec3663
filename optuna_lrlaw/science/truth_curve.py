"""The truth at one scale: the measured loss against the peak LR, from a dense grid at several seeds.

A search strategy is judged by the regret of the LR it ends on, ``loss(lr) / best - 1``,
where ``loss`` is the expected final loss of a run at ``lr``, over training seeds. A dense
grid of LRs, each trained at two or more seeds, measures it: the seed-mean losses are
joined by a shape-preserving cubic in log LR (PCHIP, Fritsch and Carlson 1980, which
neither overshoots between grid points nor invents a minimum the points do not show), and
the spread between seeds gives the noise of a single run. Both the regret of a chosen LR
and the noise its grid leaves in that regret (`TruthCurve.regret_se`) follow; replays of
a search draw single-run losses from it (`TruthCurve.sample_loss`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.interpolate import PchipInterpolator

from optuna_lrlaw.science._bayes import FloatArray

#: Points on which the interpolated curve is searched for its minimum.
_FINE_GRID = 2001
#: Draws of the grid's seed-mean losses behind `TruthCurve.regret_se`.
_BOOTSTRAP_DRAWS = 400


@dataclass(frozen=True)
class TruthCurve:
    """The expected final loss of a run at each peak LR of one model, measured on a grid.

    Attributes:
        lrs: the grid's LRs, increasing.
        mean_loss: the seed-mean final loss at each (a diverged run counts with the loss it
            ended on).
        seeds: the training seeds behind each mean (the fewest at any grid LR).
        seed_sd: the sd of a single run's final loss across seeds, pooled over the grid
            LRs that did not diverge.
        best_lr, best_loss: the minimum of the interpolated curve.

    Example:
        >>> runs = pd.DataFrame({"lr": [1e-3, 1e-3, 3e-3, 3e-3, 1e-2, 1e-2],
        ...                      "seed": [0, 1, 0, 1, 0, 1],
        ...                      "loss": [2.10, 2.12, 2.00, 2.02, 2.20, 2.18]})
        >>> curve = fit_truth_curve(runs)
        >>> round(float(curve.regret(1e-2)), 3), curve.bracketed
        (0.09, True)
    """

    lrs: FloatArray
    mean_loss: FloatArray
    seeds: int
    seed_sd: float
    best_lr: float
    best_loss: float

    @property
    def bracketed(self) -> bool:
        """True when the minimum lies strictly inside the grid: only then is the best loss known."""
        return bool(self.lrs[0] < self.best_lr < self.lrs[-1])

    @property
    def span(self) -> float:
        """The grid's reach, highest LR over lowest."""
        return float(self.lrs[-1] / self.lrs[0])

    def loss(self, lr: float | FloatArray) -> FloatArray:
        """The expected final loss at ``lr``; beyond the grid, the loss at its nearest end."""
        return _interpolate(self.lrs, self.mean_loss)(self._clipped(lr))

    def regret(self, lr: float | FloatArray) -> FloatArray:
        """Relative excess of the expected loss at ``lr`` over the best: 0.005 is 0.5%."""
        return self.loss(lr) / self.best_loss - 1.0

    def regret_se(self, lr: float | FloatArray, seed: int = 0) -> FloatArray:
        """The standard error of `regret` at ``lr`` left by the grid's finite seeds.

        The seed-mean losses are redrawn within their noise (``seed_sd / sqrt(seeds)``),
        the curve and its minimum refitted, and the regret's spread over the draws taken.
        """
        rng = np.random.default_rng(seed)
        noise = self.seed_sd / math.sqrt(self.seeds)
        means = self.mean_loss[:, None] + noise * rng.standard_normal((self.lrs.size, _BOOTSTRAP_DRAWS))
        curves = _interpolate(self.lrs, means)
        best = curves(np.geomspace(self.lrs[0], self.lrs[-1], _FINE_GRID)).min(axis=0)
        at = np.atleast_1d(self._clipped(lr))
        regrets = curves(at) / best - 1.0  # (len(at), draws)
        se = regrets.std(axis=1, ddof=1)
        return se if np.ndim(lr) else se[0]

    def sample_loss(self, lr: float, rng: np.random.Generator) -> float:
        """The final loss of one run at ``lr``: the curve plus a seed's noise."""
        return float(self.loss(lr) + self.seed_sd * rng.standard_normal())

    def _clipped(self, lr: float | FloatArray) -> FloatArray:
        lr = np.asarray(lr, dtype=float)
        if not np.all(np.isfinite(lr) & (lr > 0)):
            raise ValueError("learning rates must be finite and positive")
        return np.clip(lr, self.lrs[0], self.lrs[-1])

    def to_dict(self) -> dict[str, object]:
        return {
            "lrs": self.lrs.tolist(),
            "mean_loss": self.mean_loss.tolist(),
            "seeds": self.seeds,
            "seed_sd": self.seed_sd,
            "best_lr": self.best_lr,
            "best_loss": self.best_loss,
            "bracketed": self.bracketed,
        }


def _interpolate(lrs: FloatArray, losses: FloatArray) -> PchipInterpolator:
    # PchipInterpolator takes x increasing and evaluates y along axis 0: log LR in, loss out.
    curve = PchipInterpolator(np.log(lrs), losses, axis=0)
    return lambda lr: curve(np.log(lr))  # type: ignore[return-value]


def fit_truth_curve(runs: pd.DataFrame, *, min_seeds: int = 2) -> TruthCurve:
    """The truth curve of one model from its grid runs: columns ``lr``, ``seed``, ``loss``
    (and optionally ``diverged``), one row per run.

    ``min_seeds=1`` accepts a grid at one seed (a published sweep, say): the curve then
    interpolates it, with no noise estimate (``seed_sd`` 0).

    Raises:
        ValueError: fewer than three grid LRs, an LR with fewer than ``min_seeds`` seeds,
            or a non-finite loss.
    """
    missing = {"lr", "seed", "loss"} - set(runs.columns)
    if missing:
        raise ValueError(f"the grid's runs need columns lr, seed and loss; missing {sorted(missing)}")
    if not np.all(np.isfinite(runs["loss"].to_numpy(dtype=float))):
        raise ValueError("every grid run needs a finite final loss (a diverged run: the loss it ended on)")
    by_lr = runs.groupby("lr")
    if by_lr.ngroups < 3:
        raise ValueError(f"a truth curve needs at least 3 grid LRs, got {by_lr.ngroups}")
    seeds = int(by_lr["seed"].nunique().min())
    if seeds < min_seeds:
        raise ValueError(
            f"a truth curve needs every grid LR trained at {min_seeds} or more seeds: their spread is its noise"
        )
    lrs = np.array(sorted(by_lr.groups), dtype=float)
    mean_loss = by_lr["loss"].mean().loc[lrs].to_numpy(dtype=float)
    diverged = runs["diverged"].astype(bool) if "diverged" in runs.columns else pd.Series(False, index=runs.index)
    stable = runs[~runs["lr"].isin(runs.loc[diverged, "lr"])]
    variances = stable.groupby("lr")["loss"].var(ddof=1).dropna()
    seed_sd = float(math.sqrt(variances.mean())) if len(variances) else 0.0
    fine = np.geomspace(lrs[0], lrs[-1], _FINE_GRID)
    fine_loss = _interpolate(lrs, mean_loss)(fine)
    best = int(np.argmin(fine_loss))
    return TruthCurve(lrs, mean_loss, seeds, seed_sd, float(fine[best]), float(fine_loss[best]))


@dataclass(frozen=True)
class LocalOptimum:
    """The optimum of a dense grid's seed-mean curve, from a parabola through the grid LRs
    near its best, with the spread a bootstrap over training seeds gives it.

    Attributes:
        lr: the vertex of the parabola fitted to the seed means.
        log_lr_draws: the vertex refitted on seed-bootstrap resamples (natural log).
    """

    lr: float
    log_lr_draws: FloatArray

    @property
    def log_lr_sd(self) -> float:
        return float(np.std(self.log_lr_draws, ddof=1))

    def interval(self, q: float = 0.9) -> tuple[float, float]:
        """The bootstrap's equal-tailed ``q`` interval of the optimum, in LR units."""
        lo, hi = np.quantile(self.log_lr_draws, [(1 - q) / 2, (1 + q) / 2])
        return math.exp(lo), math.exp(hi)


def local_optimum(runs: pd.DataFrame, *, reach: float = 0.75, draws: int = 2000, seed: int = 0) -> LocalOptimum:
    """Where a dense grid's loss is lowest, between its grid LRs: the vertex of a least-squares
    parabola in log LR through the seed-mean losses within ``reach`` (log LR) of the best
    seed-mean grid LR, clipped to those LRs. Its uncertainty resamples whole seeds (a seed's
    runs share initialization and batches, so their errors move together).

    ``runs`` has columns ``lr``, ``seed``, ``loss``; only grid LRs trained at every seed count.

    Example:
        >>> lrs = np.geomspace(1e-3, 1e-2, 9)
        >>> runs = pd.DataFrame({"lr": np.tile(lrs, 2), "seed": np.repeat([0, 1], 9),
        ...                      "loss": np.tile(2 + 0.05 * np.log(lrs / 3e-3) ** 2, 2) + np.repeat([0, 0.01], 9)})
        >>> round(local_optimum(runs).lr, 5)
        0.003
    """
    table = runs.pivot_table(index="lr", columns="seed", values="loss", aggfunc="mean").dropna()
    if table.shape[0] < 3 or table.shape[1] < 1:
        raise ValueError("a local optimum needs at least 3 grid LRs trained at every seed")
    x = np.log(table.index.to_numpy(dtype=float))
    losses = table.to_numpy(dtype=float)  # (LRs, seeds)

    def vertex(mean: FloatArray) -> float:
        best = int(np.argmin(mean))
        near = np.abs(x - x[best]) <= reach + 1e-9
        if near.sum() < 3:
            near[np.argsort(np.abs(x - x[best]))[:3]] = True
        c2, c1, _ = np.polyfit(x[near], mean[near], 2)
        lo, hi = x[near].min(), x[near].max()
        return float(np.clip(-c1 / (2 * c2), lo, hi)) if c2 > 0 else float(x[best])

    rng = np.random.default_rng(seed)
    picks = rng.integers(0, losses.shape[1], size=(draws, losses.shape[1]))
    log_draws = np.array([vertex(losses[:, pick].mean(axis=1)) for pick in picks])
    return LocalOptimum(math.exp(vertex(losses.mean(axis=1))), log_draws)
