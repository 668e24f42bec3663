"""Learning-rate schedules: linear warmup, then cosine, linear decay or warmup-stable-decay."""

from __future__ import annotations

import math

SCHEDULES: tuple[str, ...] = ("cosine", "linear", "wsd")


def lr_factor(step: int, total_steps: int, *, schedule: str, warmup_steps: int, cooldown_fraction: float) -> float:
    """The fraction of the peak LR used at optimizer step ``step`` (0-based) of ``total_steps``.

    - ``cosine``: half a cosine from 1 down to 0.1 (the 10x decay of Chinchilla and nanoGPT);
    - ``linear``: a straight line down to 0 ("Straight to Zero", Bergsma et al., arXiv 2502.15938);
    - ``wsd``: constant, then a linear cooldown to 0 over the last ``cooldown_fraction`` of steps
      (Hu et al., MiniCPM, arXiv 2404.06395): the stable phase can be branched at any length.

    Example:
        >>> [round(lr_factor(s, 10, schedule="wsd", warmup_steps=2, cooldown_fraction=0.2), 2) for s in range(10)]
        [0.5, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.5]
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "wsd":
        cooldown_start = stable_steps(total_steps, warmup_steps, cooldown_fraction)
        if step < cooldown_start:
            return 1.0
        return (total_steps - step) / max(total_steps - cooldown_start, 1)
    progress = (step - warmup_steps) / max(total_steps - warmup_steps, 1)
    if schedule == "linear":
        return 1.0 - progress
    if schedule == "cosine":
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))
    raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")


def stable_steps(total_steps: int, warmup_steps: int, cooldown_fraction: float) -> int:
    """The step at which a WSD schedule starts its cooldown."""
    return max(warmup_steps, total_steps - int(round(cooldown_fraction * total_steps)))
