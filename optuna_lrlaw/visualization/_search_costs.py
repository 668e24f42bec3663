"""Regret against FLOPs: every way of choosing the target's LR on one chart."""

from __future__ import annotations

from typing import TYPE_CHECKING

from optuna_lrlaw.visualization._plotly import graph_objects

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from optuna_lrlaw.ladder import Comparison

#: Marker shapes of the one-shot strategies, in turn.
_SYMBOLS = ("diamond", "circle", "square", "triangle-up", "x", "star", "triangle-down", "cross", "pentagon", "hexagon")
#: The replayed searches drawn as curves (mean regret after k trials, ± one standard error).
_REPLAYED = ("TPE", "GP", "random", "TPE in the law's window", "law + LRLawSampler")


def plot_search_costs(comparison: Comparison) -> go.Figure:
    """Regret of each strategy's chosen LR (vs its own parametrization's best, ± one standard
    error) against the FLOPs it trained: one-shot strategies as points (one legend entry
    each), replayed searches as curves over their trial counts.

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
            line={"color": f"hsl({200 + 32 * k}, 45%, 55%)", "dash": "dot"},
            marker={"size": 5},
        )
    shots = comparison.strategies[comparison.strategies["scored_by"] != "replay mean"]
    # One legend entry per strategy: their points crowd near one target run's FLOPs, where
    # text labels would overlap.
    for k, (_, shot) in enumerate(shots.iterrows()):
        fig.add_scatter(
            x=[shot["flops"]],
            y=[100 * shot["regret"]],
            error_y={"type": "data", "array": [100 * shot["regret_se"]]},
            mode="markers",
            name=shot["strategy"],
            marker={
                "size": 11,
                "symbol": _SYMBOLS[k % len(_SYMBOLS)],
                "color": f"hsl({(k * 37) % 360}, 70%, 45%)",
                "line": {"width": 1, "color": "white"},
            },
        )
    fig.add_hline(y=0.5, line_dash="dash", annotation_text="0.5% regret")
    fig.update_xaxes(title_text="FLOPs trained to choose the LR (target run included)", type="log")
    fig.update_yaxes(title_text="regret vs own parametrization's best (%)", rangemode="tozero")
    fig.update_layout(
        title="Choosing the target's learning rate: regret against compute", height=640, legend={"font": {"size": 11}}
    )
    return fig
