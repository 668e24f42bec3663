"""Replay LR searches at Step Law's largest model against the measured runs.

    python benchmarks/steplaw_replay.py [--seeds 100] [--trials 16] [--out benchmarks/results/steplaw_replay.json]
                                        [--figure docs/figures/steplaw_replay.html]
    python benchmarks/steplaw_replay.py --redraw benchmarks/results/steplaw_replay.json \
        --figure docs/figures/steplaw_replay.html

Target: the two N = 1.07e9 cells, each at its best batch size. Every sampler searches the
same user range, the table's LR range [2.44e-4, 2.21e-2] on a log scale; the oracle answers
a suggested LR with the measured smooth loss of the nearest grid LR in log space (the
replay oracle of ``shared/data/steplaw/README.md``) and charges one run, 6 N D FLOPs.
LRLawSampler's law is fitted on the smaller cells at their best batch sizes with the weak
default prior (setting (a) of ``steplaw_holdout.py``); "no law" runs the same sampler from
its wide default prior, to separate the law's share from the posterior search's. The grid
baseline is Optuna's GridSampler over 8 log-spaced LRs across the range, in its seeded
random order. TPE and GP run with their defaults (10 random start-up trials).

Reported per sampler and cell, over seeds: the median number of trials (and FLOPs) until
the best trial so far is within 0.25% of the cell's best loss, with a bootstrap 90% interval
of that median (with few good LRs in the range, 20 seeds leave the median a trial or two
uncertain), and the median best-so-far regret after 1, 2, 3, 5 and 8 trials.
"""

from __future__ import annotations

import argparse
import json
import math
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
from steplaw_holdout import DEFAULT_CSV, TARGET_PARAMS, at_best_batch_size, steplaw_csv_or_exit

from optuna_lrlaw import LRLawSampler, Scale, fit_law
from optuna_lrlaw.science.steplaw import read_steplaw

LR_RANGE = (2.44e-4, 2.21e-2)
REGRET_GOAL = 0.0025
#: Samplers whose first 10 trials are the same random draws (Optuna's start-up): drawn dotted.
SAME_START = ("TPESampler", "GPSampler", "RandomSampler")
CHECKPOINTS = (1, 2, 3, 5, 8)
BOOTSTRAP = 2000


def _samplers(law, scale: Scale) -> dict[str, Callable[[int], optuna.samplers.BaseSampler]]:
    grid = {"lr": np.geomspace(*LR_RANGE, 8).tolist()}
    return {
        "LRLawSampler": lambda seed: LRLawSampler(law, scale=scale, seed=seed),
        "LRLawSampler, median first": lambda seed: LRLawSampler(law, scale=scale, seed=seed, first_trial="median"),
        "LRLawSampler, spread": lambda seed: LRLawSampler(law, scale=scale, seed=seed, acquisition="spread"),
        "LRLawSampler, no law": lambda seed: LRLawSampler(seed=seed),
        "TPESampler": lambda seed: optuna.samplers.TPESampler(seed=seed),
        "GPSampler": lambda seed: optuna.samplers.GPSampler(seed=seed),
        "RandomSampler": lambda seed: optuna.samplers.RandomSampler(seed=seed),
        "log grid (8)": lambda seed: optuna.samplers.GridSampler(grid, seed=seed),
    }


def _oracle(column: pd.DataFrame) -> Callable[[float], float]:
    log_grid = np.log(column["lr"].to_numpy())
    losses = column["loss"].to_numpy()
    return lambda lr: float(losses[np.argmin(np.abs(log_grid - math.log(lr)))])


def replay(
    csv: str | Path = DEFAULT_CSV, *, seeds: int = 100, trials: int = 16, samplers: list[str] | None = None
) -> pd.DataFrame:
    """One row per (cell, sampler, seed): the best-so-far regret after each trial.

    ``samplers`` picks some of the samplers by name (default: all of them)."""
    runs = read_steplaw(csv)
    cells = at_best_batch_size(runs)
    law = fit_law(cells[cells["params"] < TARGET_PARAMS])
    rows = []
    for (params, tokens, batch_tokens), column in cells[cells["params"] >= TARGET_PARAMS].groupby(
        ["params", "tokens", "batch_tokens"]
    ):
        scale = Scale(params, tokens, batch_tokens)
        loss_at = _oracle(column)
        best = column["loss"].min()
        for name, make in _samplers(law, scale).items():
            if samplers is not None and name not in samplers:
                continue
            for seed in range(seeds):
                study = optuna.create_study(sampler=make(seed))
                study.optimize(
                    lambda t, loss_at=loss_at: loss_at(t.suggest_float("lr", *LR_RANGE, log=True)), n_trials=trials
                )
                values = np.array([t.value for t in study.trials])
                regret = np.minimum.accumulate(values) / best - 1
                rows.append(
                    {
                        "params": params,
                        "tokens": tokens,
                        "sampler": name,
                        "seed": seed,
                        "flops_per_trial": scale.flops(),
                        "regret": regret.tolist(),
                    }
                )
    return pd.DataFrame(rows)


def summarize(runs: pd.DataFrame) -> pd.DataFrame:
    """Medians over seeds: trials and FLOPs to the regret goal (with a bootstrap 90% interval of
    the median trials), regret at the checkpoints."""

    def trials_to_goal(regret: list[float]) -> float:
        hits = np.flatnonzero(np.asarray(regret) <= REGRET_GOAL)
        return float(hits[0] + 1) if hits.size else math.inf

    runs = runs.assign(trials_to_goal=runs["regret"].map(trials_to_goal))
    rng = np.random.default_rng(0)
    rows = []
    for (params, tokens, sampler), group in runs.groupby(["params", "tokens", "sampler"], sort=False):
        trials = group["trials_to_goal"].to_numpy()
        median_trials = float(np.median(trials))
        resampled = np.median(rng.choice(trials, size=(BOOTSTRAP, trials.size)), axis=1)
        row = {
            "params": params,
            "tokens": tokens,
            "sampler": sampler,
            "median_trials_to_0.25%": median_trials,
            "median_trials_lo90": float(np.quantile(resampled, 0.05)),
            "median_trials_hi90": float(np.quantile(resampled, 0.95)),
            "median_flops_to_0.25%": median_trials * group["flops_per_trial"].iloc[0],
        }
        ran = len(group["regret"].iloc[0])
        for k in [k for k in CHECKPOINTS if k <= ran]:
            row[f"regret_after_{k}"] = float(np.median([r[k - 1] for r in group["regret"]]))
        rows.append(row)
    return pd.DataFrame(rows)


def figure(runs: pd.DataFrame):
    """Median best-so-far regret against trials, per sampler, one panel per target cell."""
    from plotly.colors import qualitative
    from plotly.subplots import make_subplots

    cells = list(runs.groupby(["params", "tokens"]).groups)
    fig = make_subplots(rows=1, cols=len(cells), subplot_titles=[f"N={n:.3g}, D={d:.3g}" for n, d in cells])
    for col, (params, tokens) in enumerate(cells, start=1):
        cell = runs[(runs["params"] == params) & (runs["tokens"] == tokens)]
        for k, (sampler, group) in enumerate(cell.groupby("sampler", sort=False)):
            median = 100 * np.median(np.stack(group["regret"].to_numpy()), axis=0)
            fig.add_scatter(
                x=np.arange(1, median.size + 1),
                y=median,
                name=sampler,
                legendgroup=sampler,
                showlegend=col == 1,
                line={"color": qualitative.D3[k], "dash": "dot" if sampler in SAME_START else "solid"},
                row=1,
                col=col,
            )
        fig.add_hline(y=100 * REGRET_GOAL, line_dash="dot", row=1, col=col)
    fig.update_xaxes(title_text="trials at the target scale")
    # Linear, not log: a median regret of 0 (the cell's best grid LR found) must stay on the chart.
    fig.update_yaxes(title_text="median best regret (%)", rangemode="tozero")
    seeds = runs["seed"].nunique()
    fig.update_layout(
        title=f"Replay on Step Law's largest model ({seeds} seeds)",
        height=460,
        annotations=[
            *fig.layout.annotations,
            {
                "text": "TPE and GP start with 10 random trials (Optuna's defaults): until then they are random search",
                "xref": "paper",
                "yref": "paper",
                "x": 0.5,
                "y": -0.28,
                "showarrow": False,
            },
        ],
        margin={"b": 110},
    )
    return fig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("csv", nargs="?", default=DEFAULT_CSV, type=Path, help="Step Law's dense_lr_bs_loss.csv")
    parser.add_argument("--seeds", type=int, default=100)
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--out", type=Path, default=None, help="write the summary and every run as JSON here")
    parser.add_argument("--figure", type=Path, default=None, help="write the regret curves as plotly HTML here")
    parser.add_argument("--redraw", type=Path, default=None, help="draw --figure from this JSON of --out; run nothing")
    args = parser.parse_args()
    if args.redraw:
        args.figure.parent.mkdir(parents=True, exist_ok=True)
        figure(pd.DataFrame(json.loads(args.redraw.read_text())["runs"])).write_html(
            args.figure, include_plotlyjs="directory"
        )
        return
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    runs = replay(steplaw_csv_or_exit(args.csv), seeds=args.seeds, trials=args.trials)
    summary = summarize(runs)
    with pd.option_context("display.width", 220, "display.max_columns", 20):
        print(summary.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "command": f"python benchmarks/steplaw_replay.py --seeds {args.seeds} --trials {args.trials}",
            "optuna": optuna.__version__,
            "summary": summary.to_dict(orient="records"),
            "runs": runs.to_dict(orient="records"),
        }
        args.out.write_text(json.dumps(payload, indent=1))
    if args.figure:
        args.figure.parent.mkdir(parents=True, exist_ok=True)
        figure(runs).write_html(args.figure, include_plotlyjs="directory")


if __name__ == "__main__":
    main()
