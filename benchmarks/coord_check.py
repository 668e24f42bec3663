"""The μP coordinate check, as a figure and a JSON summary.

    python benchmarks/coord_check.py --out benchmarks/results/coord_check.json --figure docs/figures/coord_check.html

Widths 64 to 512 (depth 2, 4 heads, sequence 32), 5 AdamW steps at lr 1e-3 on one fixed
batch, 3 seeds; the same settings as ``tests/test_proxies.py``. For each parametrization:
the slope of log mean|activation| against log width, per module and step (0 = flat).
The same width check at depth 4 (base depth 2), whose steepest module is reported.
Then depths 2 to 16 at width 128: the slope of the residual stream (entering the final
norm) against log depth, under μP and CompleteP.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from optuna_lrlaw.proxies import ProxyConfig, coordinate_check, width_slopes

WIDTHS = [64, 128, 256, 512]
DEPTHS = [2, 4, 8, 16]
SHOWN = ["embed", "blocks.0.attention", "blocks.1.mlp", "logits"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--figure", type=Path)
    args = parser.parse_args()
    frames, summary = {}, {}
    for parametrization in ("sp", "mup", "completep"):
        config = ProxyConfig(width=64, depth=2, heads=4, seq_len=32, parametrization=parametrization)
        frames[parametrization] = coordinate_check(config, WIDTHS)
        slopes = width_slopes(frames[parametrization])
        trained = slopes[slopes["step"] >= 1]
        summary[parametrization] = {
            "max_abs_slope_after_step_0": float(trained["slope"].abs().max()),
            "median_slope_last_step": float(trained.loc[trained["step"] == trained["step"].max(), "slope"].median()),
            "slopes": {f"{row.module}@{row.step}": row.slope for row in slopes.itertuples()},
        }
        print(parametrization, summary[parametrization]["max_abs_slope_after_step_0"])
    deeper = {}
    for parametrization in ("mup", "completep"):
        config = ProxyConfig(width=64, depth=4, heads=4, seq_len=32, base_depth=2, parametrization=parametrization)
        slopes = width_slopes(coordinate_check(config, WIDTHS))
        worst = slopes.loc[slopes.loc[slopes["step"] >= 1, "slope"].abs().idxmax()]
        deeper[parametrization] = {"module": worst["module"], "step": int(worst["step"]), "slope": worst["slope"]}
        print(parametrization, "depth 4, steepest module across width:", deeper[parametrization])
    depth_slopes = {}
    for parametrization in ("mup", "completep"):
        config = ProxyConfig(width=128, depth=2, heads=4, seq_len=32, base_width=128, parametrization=parametrization)
        slopes = width_slopes(coordinate_check(config, depths=DEPTHS), along="depth")
        residual = slopes[slopes["module"] == "residual"]
        steps_and_slopes = zip(residual["step"], residual["slope"], strict=True)
        depth_slopes[parametrization] = {int(step): slope for step, slope in steps_and_slopes}
        print(parametrization, "residual stream slope against depth", depth_slopes[parametrization])
    report = {
        "command": "python benchmarks/coord_check.py --out ... --figure ...",
        "torch": torch.__version__,
        "widths": WIDTHS,
        "summary": summary,
        "steepest_at_depth_4": deeper,
        "depths": DEPTHS,
        "residual_slope_against_depth": depth_slopes,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    if args.figure:
        figure(frames, args.figure)


def figure(frames, path: Path) -> None:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    names = list(frames)
    fig = make_subplots(
        rows=len(SHOWN),
        cols=len(names),
        column_titles=names,
        row_titles=SHOWN,
        shared_xaxes=True,
        vertical_spacing=0.05,
    )
    colors = ["#c6dbef", "#9ecae1", "#6baed6", "#3182bd", "#08519c"]
    for col, name in enumerate(names, start=1):
        frame = frames[name]
        for row, module in enumerate(SHOWN, start=1):
            for step, color in zip(sorted(frame["step"].unique()), colors, strict=False):
                points = frame[(frame["module"] == module) & (frame["step"] == step)]
                fig.add_trace(
                    go.Scatter(
                        x=points["width"],
                        y=points["mean_abs"],
                        mode="lines+markers",
                        line={"color": color},
                        name=f"step {step}",
                        legendgroup=str(step),
                        showlegend=row == 1 and col == 1,
                    ),
                    row=row,
                    col=col,
                )
            fig.update_xaxes(type="log", row=row, col=col)
            fig.update_yaxes(type="log", row=row, col=col)
    fig.update_layout(title="Coordinate check: mean |activation| against width, per step", height=900)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.write_html(path, include_plotlyjs="cdn")


if __name__ == "__main__":
    main()
