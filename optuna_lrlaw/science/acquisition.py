"""Where to try the next learning rate so a short sweep measures what it claims.

A sweep is there to locate eta* and, with it, the curvature of the loss around it: a
parabola's vertex is pinned down by points on both of its sides, far enough apart that the
loss differences between them stand clear of the noise (the classic optimal design for
the vertex of a quadratic puts the points at the centre and at the two edges of the range
where the quadratic holds). Thompson sampling from a confident belief does the opposite:
every draw lands near the centre, and six runs within a factor 1.3 can locate neither the
optimum nor the curvature, whatever the belief said before.

So after the first run (at the recommended LR), `spread_design` proposes the belief's
centre and one point on each side of it, at ``max(1.5 posterior sds, h)``, further while
the belief is wide. The least spread ``h`` is where the loss rises clear of the noise: with
the law's relative curvature ``c`` at this scale (`LossShape.curvature`; paper B: it falls
with the horizon), ``c h^2`` is four times the 0.1% noise the sweep fit expects, within a
factor 1.5 to 3; without a law, a factor 2. It takes the proposal farthest from every run
made or running, and says when all three are already covered; then the belief is sharp
and spread enough, and sampling from it (Thompson) refines the rest.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

#: The side points sit this many posterior sds from the centre, and at least `MIN_SPREAD`
#: away without a law; with one, where the loss excess is `_CLEAR_OF_NOISE`, within
#: `_SPREAD_RANGE` (log LR).
SPREAD_SDS = 1.5
MIN_SPREAD = math.log(2.0)
_CLEAR_OF_NOISE = 4e-3
_SPREAD_RANGE = (math.log(1.5), math.log(3.0))
#: A proposal within this share of the spread of a run already made counts as covered.
COVERED_WITHIN = 1.0 / 3.0


def spread_design(
    centre: float,
    sd: float,
    taken: Sequence[float],
    bounds: tuple[float, float] | None = None,
    *,
    curvature: float | None = None,
) -> float | None:
    """The next log LR of a sweep: the centre or a side point not yet covered, or None.

    Args:
        centre, sd: the belief about log eta* (its median and sd).
        taken: the log LRs of the sweep's runs, finished or running.
        bounds: the log LR range allowed; proposals are clipped to it.
        curvature: the expected relative loss excess per (log LR)^2 at the optimum, if known.

    Example:
        >>> round(spread_design(0.0, 0.2, taken=[0.0]), 3)  # a factor 2 below the centre
        -0.693
    """
    least = MIN_SPREAD
    if curvature is not None and curvature > 0:
        least = float(np.clip(math.sqrt(_CLEAR_OF_NOISE / curvature), *_SPREAD_RANGE))
    spread = max(SPREAD_SDS * sd, least)
    # The lower side first: it is the gentle one, far from any cliff.
    proposals = np.array([centre, centre - spread, centre + spread])
    if bounds is not None:
        proposals = np.clip(proposals, *bounds)
    runs = np.asarray(taken, dtype=float)
    if runs.size == 0:
        return float(proposals[0])
    distance = np.abs(proposals[:, None] - runs[None, :]).min(axis=1)
    best = int(np.argmax(distance))  # ties go to the first: centre, then below
    return float(proposals[best]) if distance[best] > COVERED_WITHIN * spread else None
