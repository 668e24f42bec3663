"""The law across scales: each sweep's optimum with its interval, and the predictive band to a target."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from optuna_lrlaw.science.law import LRLaw
from optuna_lrlaw.science.scale import Scale
from optuna_lrlaw.visualization._plotly import graph_objects

if TYPE_CHECKING:
    import plotly.graph_objects as go

#: Points along the predictive band.
_BAND_POINTS = 60


def plot_law(law: LRLaw, target: Scale | None = None) -> go.Figure:
    """Optimal LR against model size: every sweep's optimum (its 90% interval as error bars,
    hollow when the sweep does not bracket it), and the law's median with its 90% predictive
    band, one continuous band from the smallest sweep through the largest to ``target``
    (marked at its median, the one-shot LR, with its 90% interval), or across the sweeps.

    The path moves N, D (and B) together, log-linearly from sweep to sweep and then to the
    target: the band widens as the law extrapolates.

    Example:
        >>> plot_law(fit_law(runs), target=Scale(1.07e9, 2e10)).show()  # doctest: +SKIP
    """
    go = graph_objects()
    optima = law.optima[law.optima["lr"].notna()]
    fig = go.Figure()
    for bracketed, group in optima.groupby("bracketed"):
        fig.add_scatter(
            x=group["params"],
            y=group["lr"],
            error_y=_error_bars(group["lr"], group["lr_lo"], group["lr_hi"]),
            mode="markers",
            marker={"size": 9, "symbol": "circle" if bracketed else "circle-open", "color": "hsl(210, 60%, 45%)"},
            name="sweep optimum (90% interval)" if bracketed else "sweep optimum, not bracketed (bound)",
            text=[f"D={d:.3g}" for d in group["tokens"]],
        )
    path = _path(law, target)
    predictions = [law.predict(scale) for scale in path]
    params = [scale.params for scale in path]
    lo, hi = np.array([p.interval(0.9) for p in predictions]).T
    fig.add_scatter(x=params, y=hi, mode="lines", line={"width": 0}, showlegend=False, hoverinfo="skip")
    fig.add_scatter(
        x=params,
        y=lo,
        mode="lines",
        line={"width": 0},
        fill="tonexty",
        fillcolor="hsla(30, 90%, 55%, 0.25)",
        name="law: 90% predictive interval",
    )
    fig.add_scatter(
        x=params, y=[p.lr for p in predictions], mode="lines", line={"color": "hsl(30, 90%, 40%)"}, name="law: median"
    )
    if target is not None:
        prediction = law.predict(target)
        t_lo, t_hi = prediction.interval(0.9)
        fig.add_scatter(
            x=[target.params],
            y=[prediction.lr],
            error_y={
                "type": "data",
                "symmetric": False,
                "array": [t_hi - prediction.lr],
                "arrayminus": [prediction.lr - t_lo],
            },
            mode="markers",
            marker={"size": 15, "symbol": "star", "color": "hsl(0, 75%, 50%)"},
            name=f"target: one-shot LR, the median (N={target.params:.3g}, D={target.tokens:.3g})",
        )
    fig.update_xaxes(title_text="parameters N", type="log")
    fig.update_yaxes(title_text="optimal peak learning rate", type="log")
    fig.update_layout(title="The learning-rate law", height=520)
    return fig


def _error_bars(y, lo, hi) -> dict[str, object]:
    """plotly error bars from ``y`` down to ``lo`` and up to ``hi``."""
    return {"type": "data", "symmetric": False, "array": hi - y, "arrayminus": y - lo}


def _path(law: LRLaw, target: Scale | None) -> list[Scale]:
    """Scales from the smallest model size through each larger one to ``target`` (if given),
    log-linear between consecutive stops; sweeps of one model size make one stop, at the
    geometric mean of their scales."""
    keys = [k for k in ("params", "tokens", "batch_tokens") if k in law.optima.columns]
    sizes = np.exp(np.log(law.optima[keys].astype(float)).groupby(law.optima["params"]).mean()).sort_index()
    stops = [row.to_numpy() for _, row in sizes.iterrows()]
    if target is not None:
        stops.append(np.array([float(getattr(target, k) or sizes.iloc[-1][k]) for k in keys]))
    per_leg = max(2, _BAND_POINTS // max(len(stops) - 1, 1))
    legs = [
        np.exp(np.linspace(np.log(begin), np.log(end), per_leg))[(1 if leg else 0) :]
        for leg, (begin, end) in enumerate(zip(stops[:-1], stops[1:], strict=True))
    ] or [stops[0][None, :]]
    return [Scale(**dict(zip(keys, row, strict=True))) for row in np.concatenate(legs)]
