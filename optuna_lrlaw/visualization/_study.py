"""One study's LR search: its sweep against the posterior of eta*, and the sampler's belief trial by trial."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import optuna
import pandas as pd

from optuna_lrlaw.integration.sampler import BELIEF_ATTR
from optuna_lrlaw.integration.study import observations_from_study
from optuna_lrlaw.science.law import stated_noise
from optuna_lrlaw.science.optimum import OptimumEstimate, estimate_optimum
from optuna_lrlaw.visualization._plotly import graph_objects

if TYPE_CHECKING:
    import plotly.graph_objects as go

#: How far around eta* the fitted parabola is drawn, in log LR: where it describes the runs.
_PARABOLA_REACH = 1.0


def plot_sweep(study: optuna.Study, lr_param: str = "lr") -> go.Figure:
    """Final loss against LR for a study's finished runs (diverged ones as crosses at the top),
    with the posterior of eta* (`estimate_optimum`): its median, 90% interval, and the
    parabola fitted near the minimum.

    Example:
        >>> plot_sweep(optuna.load_study(study_name="ladder/w64-d2-D983040", storage=url)).show()  # doctest: +SKIP
    """
    go = graph_objects()
    runs = observations_from_study(study, lr_param=lr_param)
    diverged = runs["diverged"].to_numpy(dtype=bool)
    finite = runs[~diverged]
    estimate = sweep_optimum(runs)
    fig = go.Figure()
    if estimate is not None:
        lo, hi = estimate.interval(0.9)
        fig.add_vrect(x0=lo, x1=hi, fillcolor="hsla(30, 90%, 55%, 0.2)", line_width=0)
        fig.add_vline(x=estimate.lr, line_dash="dash", line_color="hsl(30, 90%, 40%)")
    fig.add_scatter(
        x=finite["lr"],
        y=finite["loss"],
        mode="markers",
        marker={"size": 9, "color": "hsl(210, 60%, 45%)"},
        name="run (final loss)",
        text=[f"trial {t}" for t in finite["trial"]],
    )
    top = float(finite["loss"].max()) if len(finite) else 0.0
    if diverged.any():
        fig.add_scatter(
            x=runs.loc[diverged, "lr"],
            y=np.full(int(diverged.sum()), top),
            mode="markers",
            marker={"size": 11, "symbol": "x", "color": "hsl(0, 75%, 50%)"},
            name="diverged run (drawn at the top)",
        )
    if estimate is not None and estimate.curvature is not None and estimate.min_loss is not None:
        # Within the runs it was fitted near, not beyond them: there the parabola says nothing.
        span = np.log(finite["lr"].to_numpy(dtype=float) / estimate.lr)
        u = np.linspace(max(span.min(), -_PARABOLA_REACH), min(span.max(), _PARABOLA_REACH), 81)
        fig.add_scatter(
            x=estimate.lr * np.exp(u),
            y=estimate.min_loss + estimate.curvature * u**2,
            mode="lines",
            line={"color": "hsl(210, 30%, 60%)"},
            name="parabola fitted near the minimum",
        )
    if estimate is None:
        title = f"{study.study_name}: too few finite runs to locate eta*"
    else:
        note = "" if estimate.bracketed else f" (not bracketed: the optimum may lie {estimate.beyond})"
        title = f"{study.study_name}: eta* = {estimate.lr:.3g}, 90% interval {lo:.3g} to {hi:.3g}{note}"
    fig.update_xaxes(title_text=f"peak learning rate ({lr_param})", type="log")
    fig.update_yaxes(title_text="final validation loss (nats/token)")
    fig.update_layout(
        title=title,
        height=480,
    )
    return fig


def sweep_optimum(runs: pd.DataFrame) -> OptimumEstimate | None:
    """The posterior of a sweep's optimum, or None while its runs cannot locate one: the
    estimate the law and the ladder's table use (at the trainer's stated noise)."""
    try:
        diverged = runs["diverged"].to_numpy(dtype=bool)
        return estimate_optimum(runs["lr"], runs["loss"], diverged=diverged, noise=stated_noise(runs))
    except ValueError:  # fewer than three finite runs, and no prior
        return None


def plot_belief(study: optuna.Study, lr_param: str = "lr") -> go.Figure:
    """The `LRLawSampler`'s belief about eta* as each trial was sampled (median and 90%
    interval, recorded on the trial), and the LR each trial took, coloured by its loss.

    Example:
        >>> plot_belief(study).show()  # doctest: +SKIP
    """
    go = graph_objects()
    trials = [t for t in study.get_trials(deepcopy=False) if BELIEF_ATTR in t.system_attrs and lr_param in t.params]
    if not trials:
        raise ValueError(f"study {study.study_name!r} has no trial sampled by LRLawSampler with {lr_param!r}")
    numbers = [t.number for t in trials]
    beliefs = [t.system_attrs[BELIEF_ATTR] for t in trials]
    lo, hi = np.array([b["interval_90"] for b in beliefs]).T
    fig = go.Figure()
    fig.add_scatter(x=numbers, y=hi, mode="lines", line={"width": 0, "shape": "hv"}, showlegend=False)
    fig.add_scatter(
        x=numbers,
        y=lo,
        mode="lines",
        line={"width": 0, "shape": "hv"},
        fill="tonexty",
        fillcolor="hsla(30, 90%, 55%, 0.25)",
        name="belief: 90% interval of eta*",
    )
    fig.add_scatter(
        x=numbers,
        y=[b["lr"] for b in beliefs],
        mode="lines",
        line={"color": "hsl(30, 90%, 40%)", "shape": "hv"},
        name="belief: median of eta*",
    )
    values = [t.value if t.value is not None else np.nan for t in trials]
    fig.add_scatter(
        x=numbers,
        y=[t.params[lr_param] for t in trials],
        mode="markers",
        marker={"size": 10, "color": values, "colorscale": "Viridis_r", "colorbar": {"title": "final loss"}},
        name="trial's LR",
        text=[t.state.name.lower() for t in trials],
    )
    fig.update_xaxes(title_text="trial")
    fig.update_yaxes(title_text=f"learning rate ({lr_param})", type="log")
    fig.update_layout(
        title=f"{study.study_name}: the sampler's belief, trial by trial",
        height=480,
        legend={"orientation": "h", "y": -0.2},  # the loss colour bar holds the right side
    )
    return fig
