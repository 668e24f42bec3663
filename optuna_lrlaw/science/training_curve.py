"""What an unfinished run's loss curve says: has it diverged, and can it still win?

Two questions a pruner asks at every reported step, answered here without torch or optuna:

- `divergence`: the run has blown up. Its loss is NaN or infinite, clearly above its first
  reported value (training that works lowers the loss; the 10% margin keeps a run at a
  too-small LR, whose loss barely moves, from being taken for a diverged one), or
  ``spike_factor`` times above its lowest value so far (a loss explosion). A diverged run
  never comes back to win under a decaying schedule, and for the LR search it is a censored
  observation: the optimum lies below it.
- `probability_to_beat`: given finished runs' losses at the same step and at the end, how
  likely is this run's final loss to beat a target? Intermediate losses rank runs wrongly
  under decaying schedules: a high LR looks better early (it moves faster) and worse at the
  end (its noise floor is higher until the LR decays). So the final loss is regressed on the
  intermediate loss *and* log LR, ``final = b0 + b1 * now + b2 * log lr``, which corrects
  for exactly that, and the Student-t predictive of that Bayesian regression (flat prior)
  gives the probability, its tails widening when the finished runs are few or disagree.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import special

from optuna_lrlaw.science._bayes import FloatArray

#: Predictors of the final-loss regression: intercept, loss now, log LR.
_N_COEFFICIENTS = 3


def divergence(values: Sequence[float], *, spike_factor: float = 1.5, rise_tolerance: float = 0.1) -> str | None:
    """Why the loss curve ``values`` (in step order) has diverged, or None when it has not.

    Args:
        values: the losses reported so far, oldest first.
        spike_factor: a loss above ``spike_factor`` times the lowest one so far is an
            explosion (applied to positive losses only, as cross-entropies are).
        rise_tolerance: how far (relative) the loss may rise above its first value.

    Example:
        >>> divergence([4.0, 2.5, 2.4, 3.7])
        'loss 3.7 is 1.5x its lowest value so far'
        >>> divergence([4.0, 3.1, 2.9]) is None
        True
    """
    if not spike_factor > 1:
        raise ValueError(f"spike_factor must exceed 1, got {spike_factor!r}")
    if not rise_tolerance >= 0:
        raise ValueError(f"rise_tolerance must be non-negative, got {rise_tolerance!r}")
    curve = np.asarray(values, dtype=float)
    if curve.size == 0:
        return None
    if not np.all(np.isfinite(curve)):
        return "the loss is not finite"
    last, first, lowest = curve[-1], curve[0], curve.min()
    if curve.size > 1 and last > first + rise_tolerance * abs(first):
        return f"loss {last:.3g} is above its first value {first:.3g}"
    if lowest > 0 and last > spike_factor * lowest:
        return f"loss {last:.3g} is {last / lowest:.2g}x its lowest value so far"
    return None


def probability_to_beat(
    target: float,
    *,
    now: float,
    lr: float,
    finished_now: Sequence[float] | FloatArray,
    finished_final: Sequence[float] | FloatArray,
    finished_lrs: Sequence[float] | FloatArray,
) -> float | None:
    """P(this run's final loss < ``target``), from finished runs seen at the same step.

    Args:
        target: the loss to beat (the best final loss so far).
        now, lr: this run's loss at the current step and its learning rate.
        finished_now, finished_final, finished_lrs: the finished runs' losses at the same
            step, their final losses and their learning rates.

    Returns:
        The probability, or None when the finished runs cannot support the regression
        (fewer than five, all at one LR or one loss, or ``lr`` outside their LR range,
        where the correction would extrapolate): then nothing should be pruned.

    Example:
        >>> lrs = [1e-3, 2e-3, 4e-3, 8e-3, 1.6e-2]
        >>> now = [3.0, 2.9, 2.85, 2.9, 3.1]
        >>> p = probability_to_beat(2.6, now=3.5, lr=3e-3, finished_now=now,
        ...                         finished_final=[v - 0.3 for v in now], finished_lrs=lrs)
        >>> p < 0.01
        True
    """
    v = np.asarray(finished_now, dtype=float)
    f = np.asarray(finished_final, dtype=float)
    x = np.log(np.asarray(finished_lrs, dtype=float))
    keep = np.isfinite(v) & np.isfinite(f) & np.isfinite(x)
    v, f, x = v[keep], f[keep], x[keep]
    dof = v.size - _N_COEFFICIENTS
    if dof < 2 or not all(math.isfinite(t) for t in (target, now, lr)) or lr <= 0:
        return None
    if not x.min() <= math.log(lr) <= x.max():
        return None  # the LR correction is trusted between finished LRs, never beyond them
    design = np.column_stack([np.ones(v.size), v, x])
    if np.linalg.matrix_rank(design) < _N_COEFFICIENTS:
        return None
    coef, *_ = np.linalg.lstsq(design, f, rcond=None)
    residual = f - design @ coef
    noise_var = float(residual @ residual) / dof
    point = np.array([1.0, now, math.log(lr)])
    leverage = float(point @ np.linalg.solve(design.T @ design, point))
    spread = math.sqrt(max(noise_var * (1.0 + leverage), 1e-24))
    return float(special.stdtr(dof, (target - point @ coef) / spread))
