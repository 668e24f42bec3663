"""Regret against FLOPs: every way of choosing the target's LR on one chart."""

from __future__ import annotations

from typing import TYPE_CHECKING

from optuna_lrlaw.visualization._plotly import graph_objects

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from optuna_lrlaw.ladder import Comparison

#: The replayed searches drawn as curves (mean regret after k trials, ± one standard error).
_REPLAYED = ("TPE", "GP", "random", "law + LRLawSampler")


def plot_search_costs(comparison: Comparison) -> go.Figure:
    """Regret of each strategy's chosen LR (vs its own parametrization's best, ± one standard
    error) against the FLOPs it trained: one-shot strategies as points, replayed searches as
    curves over their trial counts.

    Example:
        >>> plot_search_costs(compare_search_costs(plan)).write_html("costs.html")  # doctest: +SKIP
    """
    go = graph_objects()
    fig = go.Figure()
    for k, sampler in enumerate(_REPLAYED):
        curve = comparison.replays[comparison.replays["sampler"] == sampler]
        if curve.empty:
            continue
        fig.add_scatter(
            x=curve["flops"],
            y=100 * curve["regret"],
            error_y={"type": "data", "array": 100 * curve["regret_se"], "thickness": 1},
            mode="lines+markers",
            name=f"{sampler} (replayed, by trials)",
            line={"color": f"hsl({200 + 40 * k}, 45%, 55%)", "dash": "dot"},
            marker={"size": 5},
        )
    shots = comparison.strategies[comparison.strategies["scored_by"] != "replay mean"]
    fig.add_scatter(
        x=shots["flops"],
        y=100 * shots["regret"],
        error_y={"type": "data", "array": 100 * shots["regret_se"]},
        mode="markers+text",
        text=shots["strategy"],
        textposition="top center",
        name="strategies (one chosen LR)",
        marker={"size": 11, "color": "hsl(10, 75%, 50%)", "symbol": "diamond"},
    )
    fig.add_hline(y=0.5, line_dash="dash", annotation_text="0.5% regret")
    fig.update_xaxes(title_text="FLOPs trained to choose the LR (target run included)", type="log")
    fig.update_yaxes(title_text="regret vs own parametrization's best (%)", rangemode="tozero")
    fig.update_layout(title="Choosing the target's learning rate: regret against compute", height=560)
    return fig
