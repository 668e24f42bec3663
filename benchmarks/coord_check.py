"""The μP checks across width, at lr 1e-3 and at the learning rate we train at, as JSON and a figure.

    python benchmarks/coord_check.py --out benchmarks/results/coord_check.json --figure docs/figures/coord_check.html

Dense proxies (depth 2, 4 heads, sequence 32, base width 64) at widths 64 to 2048:

- **coordinate check**: 5 AdamW steps on one fixed batch, 8 seeds, at lr 1e-3 and at lr 1e-2
  (the μP sweeps' optimum lies between 4e-3 and 8e-3, docs/proxies.md: 1e-2 is on the
  harsh side of where we train). Per step, the successive-width slopes of log mean|a|:
  their median over modules, the steepest module, and the logits'.
- **first-order check** at lr 1e-2, 3 seeds: the slope of each group's first-step loss drop
  against width, dense and MoE (4 experts, top 2).
- **router**: the MoE router's logit change since initialisation, widths 256 to 2048, lr
  1e-2, batch 4, 6 steps, 4 seeds: successive slopes per step, under the rules and with the
  router at LR eta (rules version 1).
- **depth**: depths 2 to 16 at width 128, the residual stream's slope against depth under
  μP and CompleteP; and the steepest module across width at depth 4 (base depth 2).
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import pandas as pd
import torch

import optuna_lrlaw.proxies.model as model_module
from optuna_lrlaw.proxies import ProxyConfig, coordinate_check, first_order_check, width_slopes
from optuna_lrlaw.proxies.parametrization import GroupRule, group_rules

WIDTHS = [64, 128, 256, 512, 1024, 2048]
ROUTER_WIDTHS = [256, 512, 1024, 2048]
DEPTHS = [2, 4, 8, 16]
LRS = {"1e-3": 1e-3, "1e-2": 1e-2}
SHOWN = ["embed", "blocks.0.attention", "blocks.1.mlp", "logits"]
DENSE = {"width": 64, "depth": 2, "heads": 4, "seq_len": 32}
MOE = {**DENSE, "n_experts": 4, "top_k": 2}


def coordinate_summary(frame: pd.DataFrame) -> dict:
    """Per step after 0: successive-width slopes (median over modules, steepest module, logits)."""
    slopes = width_slopes(frame, successive=True)
    slopes = slopes[slopes["step"] >= 1]
    summary = {}
    for step, at_step in slopes.groupby("step"):
        by_pair = {}
        for (low, high), pair in at_step.groupby(["from", "to"]):
            steepest = pair.loc[pair["slope"].abs().idxmax()]
            by_pair[f"{low}->{high}"] = {
                "median": float(pair["slope"].median()),
                "steepest": {"module": steepest["module"], "slope": float(steepest["slope"])},
                "logits": float(pair.loc[pair["module"] == "logits", "slope"].iloc[0]),
            }
        summary[int(step)] = by_pair
    return summary


def router_slopes(rules=group_rules) -> dict:
    """Successive-width slopes of the router logits' change, per step, under ``rules``."""
    model_module.group_rules = rules
    try:
        config = ProxyConfig(**MOE, parametrization="mup")
        frame = coordinate_check(config, ROUTER_WIDTHS, lr=1e-2, steps=6, batch_size=4, seeds=4)
    finally:
        model_module.group_rules = group_rules
    router = frame[frame["module"].str.endswith("router")].assign(module="router")
    slopes = width_slopes(router, value="mean_abs_change", successive=True)
    return {
        int(step): {f"{row['from']}->{row['to']}": float(row["slope"]) for _, row in at_step.iterrows()}
        for step, at_step in slopes.groupby("step")
    }


def router_at_eta(config: ProxyConfig) -> dict[str, GroupRule]:
    """Rules version 1's router: hidden-matrix initialisation, LR eta."""
    rules = group_rules(config)
    return {**rules, "router": GroupRule(rules["hidden"].init_std, 1.0, 0.0)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--figure", type=Path)
    args = parser.parse_args()
    frames, coordinate = {}, {}
    for parametrization in ("sp", "mup", "completep"):
        config = ProxyConfig(**DENSE, parametrization=parametrization)
        for label, lr in LRS.items():
            frame = coordinate_check(config, WIDTHS, lr=lr, seeds=8)
            frames[parametrization, label] = frame
            coordinate.setdefault(parametrization, {})[label] = coordinate_summary(frame)
            last = coordinate[parametrization][label][4]
            print(parametrization, "lr", label, {pair: round(v["median"], 3) for pair, v in last.items()}, flush=True)
    first_order = {}
    for name, shape in (("dense", DENSE), ("moe", MOE)):
        for parametrization in ("sp", "mup", "completep"):
            frame = first_order_check(ProxyConfig(**shape, parametrization=parametrization), WIDTHS, lr=1e-2)
            slopes = width_slopes(frame, value="drop", by=("group",))
            first_order.setdefault(name, {})[parametrization] = dict(zip(slopes["group"], slopes["slope"], strict=True))
            print("first-order", name, parametrization, first_order[name][parametrization], flush=True)
    router = {"rules": router_slopes(), "router_at_eta": router_slopes(router_at_eta)}
    print("router step 5", router["rules"][5], "at eta:", router["router_at_eta"][5], flush=True)
    deeper = {}
    for parametrization in ("mup", "completep"):
        config = ProxyConfig(**{**DENSE, "depth": 4}, base_depth=2, parametrization=parametrization)
        slopes = width_slopes(coordinate_check(config, WIDTHS[:4]))
        worst = slopes.loc[slopes.loc[slopes["step"] >= 1, "slope"].abs().idxmax()]
        deeper[parametrization] = {"module": worst["module"], "step": int(worst["step"]), "slope": worst["slope"]}
    depth_slopes = {}
    for parametrization in ("mup", "completep"):
        config = ProxyConfig(**{**DENSE, "width": 128}, base_width=128, parametrization=parametrization)
        slopes = width_slopes(coordinate_check(config, depths=DEPTHS), along="depth")
        residual = slopes[slopes["module"] == "residual"]
        depth_slopes[parametrization] = dict(zip(residual["step"].astype(int), residual["slope"], strict=True))
        print(parametrization, "residual stream slope against depth", depth_slopes[parametrization], flush=True)
    report = {
        "command": "python benchmarks/coord_check.py --out ... --figure ...",
        "machine": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "widths": WIDTHS,
        "coordinate_check_successive_slopes": coordinate,
        "first_order_slopes_lr_1e-2": first_order,
        "router_change_successive_slopes": router,
        "steepest_at_depth_4": deeper,
        "depths": DEPTHS,
        "residual_slope_against_depth": depth_slopes,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    if args.figure:
        figure(frames, args.figure)


def figure(frames: dict, path: Path) -> None:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    columns = list(frames)
    fig = make_subplots(
        rows=len(SHOWN),
        cols=len(columns),
        column_titles=[f"{name}, lr {label}" for name, label in columns],
        row_titles=SHOWN,
        shared_xaxes=True,
        vertical_spacing=0.05,
    )
    colors = ["#c6dbef", "#9ecae1", "#6baed6", "#3182bd", "#08519c"]
    for col, key in enumerate(columns, start=1):
        frame = frames[key]
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
    fig.update_layout(title="Coordinate check: mean |activation| against width, per step", height=900, width=1600)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.write_html(path, include_plotlyjs="directory")


if __name__ == "__main__":
    main()
