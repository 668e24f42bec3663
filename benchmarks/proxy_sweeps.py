"""Real learning-rate sweeps of GPT proxies on the built-in corpus, under sp and μP.

    python benchmarks/proxy_sweeps.py --parametrization mup [--widths 64 128 256] [--storage sqlite:///sweeps.db]
    python benchmarks/proxy_sweeps.py --report benchmarks/results/proxy_sweeps.json \
                                      --figure docs/figures/proxy_sweeps.html

Each (parametrization, width) is one Optuna study over a log grid of peak LRs (factors
of 2 from 5e-4; each enqueued), trained with `proxy_objective`: depth 2, 4 heads, sequence 128, batch 16,
2^19 tokens (256 steps), linear decay to zero after 5% warmup, weight decay 0.1, base
width 64. Runs already in the storage are skipped, so the sweep can be stopped and
resumed, or split across processes by parametrization.

The report fits `estimate_optimum` to every sweep and checks the transfer claims of
μP: across the 4x width change the best LR moves by less than 2x, and at its best LR
the wider model is better; under sp the best LR moves more.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import torch

from optuna_lrlaw import estimate_optimum, set_study_scale
from optuna_lrlaw.integration.study import DIVERGED_ATTR
from optuna_lrlaw.proxies import ProxyConfig, proxy_objective

LRS = [5e-4 * 2**k for k in range(8)]
LR_RANGE = (2.5e-4, 0.1)
TOKENS = 2**19
SHAPE = {"depth": 2, "heads": 4, "seq_len": 128, "base_width": 64, "base_depth": 2}
TRAINING = {"batch_size": 16, "evals": 8, "eval_batches": 4, "schedule": "linear"}


def study_name(parametrization: str, width: int, seed: int = 0) -> str:
    return f"proxy-sweep-{parametrization}-w{width}" + (f"-s{seed}" if seed else "")


def run(parametrization: str, widths: list[int], lrs: list[float], storage: str, device: str, seed: int) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for width in widths:
        model = ProxyConfig(width=width, parametrization=parametrization, **SHAPE)
        objective = proxy_objective(model, tokens=TOKENS, lr_range=LR_RANGE, device=device, seed=seed, **TRAINING)
        study = optuna.create_study(
            study_name=study_name(parametrization, width, seed),
            storage=storage,
            pruner=optuna.pruners.NopPruner(),
            load_if_exists=True,
        )
        set_study_scale(study, objective.scale)
        done = {trial.params["lr"] for trial in study.get_trials(states=[optuna.trial.TrialState.COMPLETE])}
        for lr in lrs:
            if any(math.isclose(lr, seen) for seen in done):
                continue
            study.enqueue_trial({"lr": lr})
            study.optimize(objective, n_trials=1)
            trial = study.trials[-1]
            print(
                f"{parametrization} width {width} lr {lr:.2e}: loss {trial.value:.4f}"
                f" diverged={trial.user_attrs.get(DIVERGED_ATTR)} {trial.user_attrs['wall_seconds']:.0f}s",
                flush=True,
            )


def sweeps(storage: str) -> pd.DataFrame:
    """Every finished run in the storage, one row each."""
    rows = []
    for summary in optuna.get_all_study_summaries(storage):
        if not summary.study_name.startswith("proxy-sweep-"):
            continue
        _, _, parametrization, width, *seed = summary.study_name.split("-")
        study = optuna.load_study(study_name=summary.study_name, storage=storage)
        for trial in study.get_trials(states=[optuna.trial.TrialState.COMPLETE]):
            rows.append(
                {
                    "parametrization": parametrization,
                    "width": int(width[1:]),
                    "seed": int(seed[0][1:]) if seed else 0,
                    "params": trial.user_attrs["lrlaw.params"],
                    "lr": trial.params["lr"],
                    "loss": trial.value,
                    "diverged": bool(trial.user_attrs.get(DIVERGED_ATTR)),
                    "wall_seconds": trial.user_attrs["wall_seconds"],
                    "tokens_per_second": trial.user_attrs["tokens_per_second"],
                }
            )
    return pd.DataFrame(rows).sort_values(["parametrization", "width", "lr"]).reset_index(drop=True)


def three_point_vertex(sweep: pd.DataFrame) -> float:
    """The vertex of the parabola in log LR through the best grid run and its two neighbours."""
    finite = sweep[~sweep["diverged"]].reset_index(drop=True)
    best = int(finite["loss"].idxmin())
    if best in (0, len(finite) - 1):
        return float(finite["lr"].iloc[best])  # at the edge of the grid: no vertex
    x = np.log(finite["lr"].iloc[best - 1 : best + 2].to_numpy())
    curvature, slope, _ = np.polyfit(x, finite["loss"].iloc[best - 1 : best + 2].to_numpy(), 2)
    return float(np.exp(-slope / (2 * curvature)))


def summarize(frame: pd.DataFrame) -> dict:
    """Best LR per sweep (grid, three-point vertex, `estimate_optimum`) and the transfer checks.

    The checks use the three-point vertex of the seed-0 sweeps: on single-seed sweeps this
    bumpy, `estimate_optimum` (a band within 5% of the best loss) is reported beside it.
    Where an LR was run with more seeds, "wider is better" is also judged on the mean loss
    over seeds of the best such LR.
    """
    optima = {}
    for (parametrization, width), sweep in frame[frame["seed"] == 0].groupby(["parametrization", "width"]):
        estimate = estimate_optimum(sweep["lr"], sweep["loss"], diverged=sweep["diverged"], window=0.05)
        optima.setdefault(parametrization, {})[int(width)] = {
            "params": int(sweep["params"].iloc[0]),
            "best_grid_lr": float(sweep.loc[sweep["loss"].idxmin(), "lr"]),
            "best_loss": float(sweep.loc[~sweep["diverged"], "loss"].min()),
            "vertex_lr": three_point_vertex(sweep),
            "estimate_optimum_lr": estimate.lr,
            "estimate_optimum_interval_80": list(estimate.interval(0.8)),
            "bracketed": estimate.bracketed,
        }
        repeated = frame[(frame["parametrization"] == parametrization) & (frame["width"] == width)]
        by_lr = repeated.groupby("lr")["loss"].agg(["mean", "count"])
        by_lr = by_lr[by_lr["count"] > 1]
        if not by_lr.empty:
            optima[parametrization][int(width)]["best_mean_loss_over_seeds"] = {
                "lr": float(by_lr["mean"].idxmin()),
                "seeds": int(by_lr["count"].max()),
                "loss": float(by_lr["mean"].min()),
            }
    checks = {}
    for parametrization, by_width in optima.items():
        widths = sorted(by_width)
        pairs = list(zip(widths, widths[1:], strict=False))
        checks[parametrization] = {
            "width_ratio": widths[-1] / widths[0],
            "vertex_lr_shift": by_width[widths[-1]]["vertex_lr"] / by_width[widths[0]]["vertex_lr"],
            "grid_lr_shift": by_width[widths[-1]]["best_grid_lr"] / by_width[widths[0]]["best_grid_lr"],
            "wider_is_better": {f"{a}->{b}": by_width[b]["best_loss"] < by_width[a]["best_loss"] for a, b in pairs},
        }
        if all("best_mean_loss_over_seeds" in by_width[w] for w in widths):
            mean_loss = {w: by_width[w]["best_mean_loss_over_seeds"]["loss"] for w in widths}
            checks[parametrization]["wider_is_better_mean_over_seeds"] = {
                f"{a}->{b}": mean_loss[b] < mean_loss[a] for a, b in pairs
            }
    return {"optima": optima, "checks": checks}


def figure(frame: pd.DataFrame, path: Path) -> None:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    frame = frame[frame["seed"] == 0]
    parametrizations = sorted(frame["parametrization"].unique())
    fig = make_subplots(rows=1, cols=len(parametrizations), subplot_titles=parametrizations, shared_yaxes=True)
    colors = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728"]
    for col, parametrization in enumerate(parametrizations, start=1):
        sweeps_by_width = frame[frame["parametrization"] == parametrization].groupby("width")
        for color, (width, sweep) in zip(colors, sweeps_by_width, strict=False):
            finite = sweep[~sweep["diverged"]]
            fig.add_trace(
                go.Scatter(
                    x=finite["lr"],
                    y=finite["loss"],
                    mode="lines+markers",
                    line={"color": color},
                    name=f"width {width} ({sweep['params'].iloc[0] / 1e3:.0f}k)",
                    legendgroup=str(width),
                    showlegend=col == 1,
                ),
                row=1,
                col=col,
            )
        fig.update_xaxes(type="log", title_text="peak learning rate", row=1, col=col)
    fig.update_yaxes(title_text="validation loss (nats/byte)", row=1, col=1)
    fig.update_layout(title="Loss versus learning rate, GPT proxies on the standard-library corpus", height=450)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.write_html(path, include_plotlyjs="cdn")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parametrization", choices=["sp", "mup", "completep"])
    parser.add_argument("--widths", type=int, nargs="+", default=[64, 128, 256])
    parser.add_argument("--lrs", type=float, nargs="+", default=LRS, help="peak LRs to run (default: the grid)")
    parser.add_argument("--storage", default="sqlite:///proxy_sweeps.db")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seed", type=int, default=0, help="training seed; seeds other than 0 get their own studies")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--report", type=Path, help="write the summary JSON here")
    parser.add_argument("--figure", type=Path, help="write the plotly figure here")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.parametrization:
        run(args.parametrization, args.widths, args.lrs, args.storage, args.device, args.seed)
    if args.report or args.figure:
        frame = sweeps(args.storage)
        if args.report:
            report = {
                "command": "python benchmarks/proxy_sweeps.py --parametrization {sp,mup} && "
                "python benchmarks/proxy_sweeps.py --report ... --figure ...",
                "device": frame["device"].iloc[0] if "device" in frame else platform.processor() or "cpu",
                "torch": torch.__version__,
                "settings": {"lrs": LRS, "tokens": TOKENS, **SHAPE, **TRAINING},
                **summarize(frame),
                "runs": frame.to_dict(orient="records"),
            }
            args.report.parent.mkdir(parents=True, exist_ok=True)
            args.report.write_text(json.dumps(report, indent=2) + "\n")
            print(json.dumps(report["checks"], indent=2))
        if args.figure:
            figure(frame, args.figure)


if __name__ == "__main__":
    main()
