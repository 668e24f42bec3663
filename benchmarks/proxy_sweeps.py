"""Real learning-rate sweeps of GPT proxies on the built-in corpus: does the optimum transfer?

    S="--storage sqlite:///proxy_sweeps.db --bracket 4"
    python benchmarks/proxy_sweeps.py $S --lrs 4e-3 8e-3 1.6e-2 --parametrization mup --seed 0  # widths 32-256
    python benchmarks/proxy_sweeps.py $S --lrs 4e-3 8e-3 1.6e-2 --parametrization sp --seed 0
    python benchmarks/proxy_sweeps.py $S --lrs 4e-3 8e-3 1.6e-2 --parametrization mup --seed 1
    python benchmarks/proxy_sweeps.py $S --lrs 4e-3 8e-3 1.6e-2 --parametrization completep --widths 64 \
        --depths 2 4 8 --seed 0
    for seed in 0 1 2; do python benchmarks/proxy_sweeps.py $S --grid 2e-3 1.6e-2 --parametrization mup \
        --seed $seed; done
    for seed in 0 1; do python benchmarks/proxy_sweeps.py $S --grid 2e-3 1.6e-2 --parametrization completep \
        --widths 64 --depths 2 4 8 --seed $seed; done
    python benchmarks/proxy_sweeps.py --storage sqlite:///proxy_sweeps.db \
        --report benchmarks/results/proxy_sweeps.json --figure docs/figures/proxy_sweeps.html

Each (parametrization, width, depth, seed) is one Optuna study of peak LRs (``--lrs``, or
``--grid LOW HIGH``: a sqrt(2) grid from LOW to HIGH), trained with `proxy_objective`: 4
heads (so heads widen with width), sequence 128, batch 16, 2^19 tokens (256 steps), linear
decay to zero after 5% warmup, weight decay 0.1, base width 64 and base depth 2. With
``--bracket K`` a sweep whose best run sits at an edge adds an LR a factor 2 beyond it, up
to K times. Runs already in the storage are skipped, so a sweep can be stopped and resumed,
or split across processes.

The report takes the vertex of the least-squares parabola in log LR through the best point
of each seed-mean curve and the points within a factor 2 of it (`parabola_vertex`), and
checks the transfer claims: under μP the vertex barely moves from the narrowest to the
widest model (CompleteP: from the shallowest to the deepest) and the larger model is better
at its best LR; under sp it moves.
"""

from __future__ import annotations

import argparse
import itertools
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
SHAPE = {"heads": 4, "seq_len": 128, "base_width": 64, "base_depth": 2}
TRAINING = {"batch_size": 16, "evals": 8, "eval_batches": 4, "schedule": "linear"}


def study_name(parametrization: str, width: int, depth: int, seed: int = 0) -> str:
    return f"proxy-sweep-{parametrization}-w{width}-d{depth}" + (f"-s{seed}" if seed else "")


def run(
    parametrization: str,
    widths: list[int],
    depths: list[int],
    lrs: list[float],
    storage: str,
    device: str,
    seed: int,
    bracket: int,
) -> None:
    """Train every (width, depth) at ``lrs``; then, up to ``bracket`` times, one LR a factor
    2 beyond the sweep's edge while its best run sits there."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for width, depth in itertools.product(widths, depths):
        model = ProxyConfig(width=width, depth=depth, parametrization=parametrization, **SHAPE)
        objective = proxy_objective(model, tokens=TOKENS, lr_range=LR_RANGE, device=device, seed=seed, **TRAINING)
        study = optuna.create_study(
            study_name=study_name(parametrization, width, depth, seed),
            storage=storage,
            pruner=optuna.pruners.NopPruner(),
            load_if_exists=True,
        )
        set_study_scale(study, objective.scale)

        label = f"{parametrization} width {width} depth {depth} seed {seed}"
        for lr in lrs:
            train_at(study, objective, lr, label)
        for _ in range(bracket):
            runs = sorted(
                (trial.params["lr"], trial.value)
                for trial in study.get_trials(states=[optuna.trial.TrialState.COMPLETE])
                if not trial.user_attrs.get(DIVERGED_ATTR)
            )
            best = min(range(len(runs)), key=lambda i: runs[i][1])
            if 0 < best < len(runs) - 1:
                break
            edge = runs[best][0] / 2 if best == 0 else runs[best][0] * 2
            if not LR_RANGE[0] <= edge <= LR_RANGE[1]:
                break
            train_at(study, objective, edge, label)


def train_at(study: optuna.Study, objective, lr: float, label: str) -> None:
    """One run of ``study`` at ``lr``, unless the study has finished one there."""
    done = [trial.params["lr"] for trial in study.get_trials(states=[optuna.trial.TrialState.COMPLETE])]
    if any(math.isclose(lr, seen) for seen in done):
        return
    study.enqueue_trial({"lr": lr})
    study.optimize(objective, n_trials=1)
    trial = study.trials[-1]
    print(
        f"{label} lr {lr:.2e}: loss {trial.value:.4f}"
        f" diverged={trial.user_attrs.get(DIVERGED_ATTR)} {trial.user_attrs['wall_seconds']:.0f}s",
        flush=True,
    )


def sweeps(storage: str) -> pd.DataFrame:
    """Every finished run in the storage, one row each."""
    rows = []
    for summary in optuna.get_all_study_summaries(storage):
        if not summary.study_name.startswith("proxy-sweep-"):
            continue
        _, _, parametrization, width, depth, *seed = summary.study_name.split("-")
        study = optuna.load_study(study_name=summary.study_name, storage=storage)
        for trial in study.get_trials(states=[optuna.trial.TrialState.COMPLETE]):
            rows.append(
                {
                    "parametrization": parametrization,
                    "width": int(width[1:]),
                    "depth": int(depth[1:]),
                    "seed": int(seed[0][1:]) if seed else 0,
                    "params": trial.user_attrs["lrlaw.params"],
                    "lr": trial.params["lr"],
                    "loss": trial.value,
                    "diverged": bool(trial.user_attrs.get(DIVERGED_ATTR)),
                    "wall_seconds": trial.user_attrs["wall_seconds"],
                    "tokens_per_second": trial.user_attrs["tokens_per_second"],
                }
            )
    return pd.DataFrame(rows).sort_values(["parametrization", "width", "depth", "seed", "lr"]).reset_index(drop=True)


def parabola_vertex(curve: pd.DataFrame) -> float:
    """The vertex of the least-squares parabola in log LR through the best point of ``curve``
    (lr, loss) and every point within a factor 2 of its LR: the three neighbours on a factor-2
    grid, five on a sqrt(2) grid. The best LR itself when it sits at the edge (no vertex)."""
    curve = curve.sort_values("lr").reset_index(drop=True)
    best = int(curve["loss"].idxmin())
    if best in (0, len(curve) - 1):
        return float(curve["lr"].iloc[best])
    near = curve[np.abs(np.log(curve["lr"] / curve["lr"].iloc[best])) <= math.log(2) + 1e-9]
    curvature, slope, _ = np.polyfit(np.log(near["lr"].to_numpy()), near["loss"].to_numpy(), 2)
    return float(np.exp(-slope / (2 * curvature)))


def mean_curve(sweeps_of_one_shape: pd.DataFrame) -> pd.DataFrame:
    """Loss per LR averaged over seeds, at the LRs every seed ran and none diverged at."""
    seeds = sweeps_of_one_shape["seed"].nunique()
    by_lr = sweeps_of_one_shape.groupby("lr").agg(
        loss=("loss", "mean"), sd=("loss", "std"), seeds=("seed", "nunique"), diverged=("diverged", "any")
    )
    return by_lr[(by_lr["seeds"] == seeds) & ~by_lr["diverged"]].reset_index()


def summarize(frame: pd.DataFrame) -> dict:
    """Per (parametrization, width, depth): the best LR of the seed-mean curve (grid and
    parabola vertex) and of seed 0 (`estimate_optimum` beside it); then the transfer
    checks from the narrowest to the widest model (and shallowest to deepest): how far the
    vertex moves, and whether the larger model is better at its best LR, on seed means."""
    optima: dict[str, dict[str, dict]] = {}
    for (parametrization, width, depth), sweep in frame.groupby(["parametrization", "width", "depth"]):
        curve = mean_curve(sweep)
        first = sweep[(sweep["seed"] == 0) & ~sweep["diverged"]]
        if len(first) < 3 or len(curve) < 3:
            continue  # a sweep still running
        estimate = estimate_optimum(first["lr"], first["loss"], window=0.05)
        optima.setdefault(parametrization, {})[f"w{width}-d{depth}"] = {
            "width": int(width),
            "depth": int(depth),
            "params": int(sweep["params"].iloc[0]),
            "seeds": int(sweep["seed"].nunique()),
            "best_grid_lr": float(curve.loc[curve["loss"].idxmin(), "lr"]),
            "best_mean_loss": float(curve["loss"].min()),
            "vertex_lr": parabola_vertex(curve),
            "seed_0_vertex_lr": parabola_vertex(first),
            "seed_0_estimate_optimum_lr": estimate.lr,
            "seed_0_estimate_optimum_interval_80": list(estimate.interval(0.8)),
        }
    checks = {}
    for parametrization, shapes in optima.items():
        for along in ("width", "depth"):
            fixed = "depth" if along == "width" else "width"
            for value in sorted({shape[fixed] for shape in shapes.values()}):
                line = sorted((s for s in shapes.values() if s[fixed] == value), key=lambda s: s[along])
                if len(line) < 2:
                    continue
                pairs = list(zip(line, line[1:], strict=False))
                checks[f"{parametrization} across {along} ({fixed} {value})"] = {
                    along: [s[along] for s in line],
                    "vertex_lr": [s["vertex_lr"] for s in line],
                    "vertex_lr_shift": line[-1]["vertex_lr"] / line[0]["vertex_lr"],
                    "larger_is_better_mean_over_seeds": {
                        f"{a[along]}->{b[along]}": b["best_mean_loss"] < a["best_mean_loss"] for a, b in pairs
                    },
                }
    return {"optima": optima, "checks": checks}


def figure(frame: pd.DataFrame, path: Path) -> None:
    """Loss (mean over seeds) against LR, one panel per parametrization, one line per shape."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    parametrizations = sorted(frame["parametrization"].unique())
    fig = make_subplots(rows=1, cols=len(parametrizations), subplot_titles=parametrizations, shared_yaxes=True)
    colors = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd"]
    for col, parametrization in enumerate(parametrizations, start=1):
        shapes = frame[frame["parametrization"] == parametrization].groupby(["width", "depth"])
        for color, ((width, depth), sweep) in zip(colors, shapes, strict=False):
            curve = mean_curve(sweep)
            fig.add_trace(
                go.Scatter(
                    x=curve["lr"],
                    y=curve["loss"],
                    error_y={"type": "data", "array": curve["sd"].fillna(0) / np.sqrt(curve["seeds"])},
                    mode="lines+markers",
                    line={"color": color},
                    name=f"{parametrization} w{width} d{depth} ({sweep['params'].iloc[0] / 1e3:.0f}k)",
                ),
                row=1,
                col=col,
            )
        fig.update_xaxes(type="log", title_text="peak learning rate", row=1, col=col)
    fig.update_yaxes(title_text="validation loss (nats/byte), mean over seeds", row=1, col=1)
    fig.update_layout(title="Loss versus learning rate, GPT proxies on the standard-library corpus", height=480)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.write_html(path, include_plotlyjs="directory")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parametrization", choices=["sp", "mup", "completep"])
    parser.add_argument("--widths", type=int, nargs="+", default=[32, 64, 128, 256])
    parser.add_argument("--depths", type=int, nargs="+", default=[2])
    parser.add_argument("--bracket", type=int, default=0, help="LRs to add beyond an edge holding the best run")
    parser.add_argument("--lrs", type=float, nargs="+", default=LRS, help="peak LRs to run (default: the grid)")
    parser.add_argument("--grid", type=float, nargs=2, metavar=("LOW", "HIGH"), help="instead: a sqrt(2) grid")
    parser.add_argument("--storage", default="sqlite:///proxy_sweeps.db")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seed", type=int, default=0, help="training seed; seeds other than 0 get their own studies")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--report", type=Path, help="write the summary JSON here")
    parser.add_argument("--figure", type=Path, help="write the plotly figure here")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.grid:
        low, high = args.grid
        args.lrs = [low * 2 ** (k / 2) for k in range(int(round(2 * math.log2(high / low))) + 1)]
    if args.parametrization:
        run(
            args.parametrization, args.widths, args.depths, args.lrs, args.storage, args.device, args.seed, args.bracket
        )
    if args.report or args.figure:
        frame = sweeps(args.storage)
        if args.report:
            report = {
                "command": "the commands in benchmarks/proxy_sweeps.py's docstring",
                "device": frame["device"].iloc[0] if "device" in frame else platform.processor() or "cpu",
                "torch": torch.__version__,
                "settings": {"tokens": TOKENS, **SHAPE, **TRAINING},
                **summarize(frame),
                "checks_on_seeds_0_and_1": summarize(frame[frame["seed"] <= 1])["checks"],
                "runs": frame.to_dict(orient="records"),
            }
            args.report.parent.mkdir(parents=True, exist_ok=True)
            args.report.write_text(json.dumps(report, indent=2) + "\n")
            print(json.dumps(report["checks"], indent=2))
        if args.figure:
            figure(frame, args.figure)


if __name__ == "__main__":
    main()
