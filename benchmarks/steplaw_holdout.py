"""Fit the law on Step Law's smaller models and predict the optimal LR of the largest one.

    python benchmarks/steplaw_holdout.py [PATH/TO/dense_lr_bs_loss.csv]

The table is Step Law's public one (the step-law/steplaw repository's data/); by default
it is read from ../shared/data/steplaw/ beside this checkout.

(a) at each (N, D) cell's best batch size, fit on the cells with N < 1e9 and predict the two
    N = 1.07e9 cells; (b) the same with batch_tokens as a third feature, using every run,
    predicting at the target cell's best batch size. Regret is the loss of the grid LR
    nearest the prediction (at that batch size) over the cell's best loss, minus 1. The
    measured best LR is a grid LR, so it is compared with the 90% interval and with that
    interval on the cell's grid (`LRPrediction.interval_on_grid`).
Step Law's own formula, and our law with a Step Law prior (which leaks: Step Law was fitted
on this very table), are shown beside the headline numbers with the weak default prior.

A second table checks setting (a)'s intervals model size by model size: each of the five
model sizes in turn is predicted from the others (the largest, as above, from the smaller
ones only), and every cell's prediction is compared with two measurements of its optimum,
the grid LR of its best run and the posterior of its own sweep (`estimate_optimum`).
`grid_coverage` scores the grid-best LRs fairly for a measurement on a grid.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from optuna_lrlaw import Scale, fit_batch_size_law, fit_law, priors
from optuna_lrlaw.science.law import estimate_optima
from optuna_lrlaw.science.steplaw import WHERE_TO_GET, read_steplaw

DEFAULT_CSV = Path(__file__).resolve().parents[2] / "shared" / "data" / "steplaw" / "dense_lr_bs_loss.csv"
TARGET_PARAMS = 1e9


def steplaw_csv_or_exit(path: Path) -> Path:
    """``path`` when the table is there; else one line saying where to get it, and exit 2."""
    if not Path(path).is_file():
        print(f"no Step Law table at {path}: {WHERE_TO_GET}", file=sys.stderr)
        sys.exit(2)
    return Path(path)


def _regret(column: pd.DataFrame, cell_best: float, lr: float) -> tuple[float, float]:
    grid = np.sort(column["lr"].unique())
    nearest = float(grid[np.argmin(np.abs(np.log(grid) - math.log(lr)))])
    return nearest, float(column.loc[column["lr"] == nearest, "loss"].min() / cell_best - 1)


def at_best_batch_size(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs of each (N, D) cell at the batch size of its best run: one LR sweep per cell."""
    best = runs.loc[runs.groupby(["params", "tokens"])["loss"].idxmin()]
    return runs.merge(best[["params", "tokens", "batch_tokens"]], on=["params", "tokens", "batch_tokens"])


def holdout_report(csv: str | Path = DEFAULT_CSV) -> pd.DataFrame:
    runs = read_steplaw(csv)
    best = runs.loc[runs.groupby(["params", "tokens"])["loss"].idxmin()]
    at_best_batch = at_best_batch_size(runs)
    small = runs["params"] < TARGET_PARAMS
    laws = {
        ("a", "weak"): fit_law(at_best_batch[at_best_batch["params"] < TARGET_PARAMS]),
        ("a", "step-law prior (leaks)"): fit_law(
            at_best_batch[at_best_batch["params"] < TARGET_PARAMS], prior=priors.STEP_LAW
        ),
        ("b", "weak"): fit_law(runs[small], features=("params", "tokens", "batch_tokens")),
    }
    rows = []
    for _, target in best[best["params"] >= TARGET_PARAMS].iterrows():
        column = runs[
            (runs["params"] == target["params"])
            & (runs["tokens"] == target["tokens"])
            & (runs["batch_tokens"] == target["batch_tokens"])
        ]
        scale = Scale(target["params"], target["tokens"], target["batch_tokens"])
        predictions = {key: law.predict(scale) for key, law in laws.items()}
        step_law_lr = 1.79 * scale.params**-0.713 * scale.tokens**0.307
        for (setting, prior), prediction in [*predictions.items(), (("a", "Step Law formula"), None)]:
            lr = prediction.lr if prediction else step_law_lr
            lo, hi = prediction.interval(0.9) if prediction else (math.nan, math.nan)
            grid_lo, grid_hi = prediction.interval_on_grid(column["lr"], 0.9) if prediction else (math.nan, math.nan)
            nearest, regret = _regret(column, target["loss"], lr)
            rows.append(
                {
                    "setting": setting,
                    "prior": prior,
                    "params": scale.params,
                    "tokens": scale.tokens,
                    "batch_tokens": scale.batch_tokens,
                    "predicted_lr": lr,
                    "lo90": lo,
                    "hi90": hi,
                    "grid_lo90": grid_lo,
                    "grid_hi90": grid_hi,
                    "measured_best_lr": target["lr"],
                    "best_inside_90": bool(lo <= target["lr"] <= hi),
                    "best_inside_grid_90": bool(grid_lo <= target["lr"] <= grid_hi),
                    "nearest_grid_lr": nearest,
                    "regret": regret,
                }
            )
    return pd.DataFrame(rows)


def _grid_cell(grid: pd.Series, lr: float) -> tuple[float, float]:
    """The LRs nearer (in log) to the grid LR ``lr`` than to any other grid LR."""
    points = np.sort(grid.unique())
    i = int(np.argmin(np.abs(np.log(points / lr))))
    lo = math.sqrt(points[i - 1] * points[i]) if i > 0 else 0.0
    hi = math.sqrt(points[i] * points[i + 1]) if i < len(points) - 1 else math.inf
    return lo, hi


def grid_coverage(cells: pd.DataFrame, q: float) -> float:
    """Expected share of grid-best LRs inside the central ``q`` predictive interval, for a
    measurement on a grid: each cell counts the share of its grid cell's predictive
    probability that falls inside (a randomized probability integral transform). A
    calibrated law gives ``q`` when the grid's best run is the one nearest eta*."""
    lo, hi = (1 - q) / 2, (1 + q) / 2
    overlap = (np.minimum(cells["cdf_cell_hi"], hi) - np.maximum(cells["cdf_cell_lo"], lo)).clip(lower=0)
    return float((overlap / (cells["cdf_cell_hi"] - cells["cdf_cell_lo"])).mean())


def laws_without_each_model_size(table: pd.DataFrame, **fit_options):
    """(held-out model size, law fitted on the other sizes' runs), smallest size first; the
    largest size is predicted from the smaller ones only, as in the headline check."""
    for held_out in sorted(table["params"].unique()):
        below = table["params"] < TARGET_PARAMS if held_out >= TARGET_PARAMS else True
        yield held_out, fit_law(table[(table["params"] != held_out) & below], **fit_options)


def leave_one_model_out(csv: str | Path = DEFAULT_CSV) -> pd.DataFrame:
    """Setting (a) with each model size held out in turn, one row per held-out cell.

    ``z_grid`` is the grid-best LR's distance from the prediction in predictive sds;
    ``z_sweep`` is that of the cell's own sweep posterior, in sds of the two combined.
    """
    runs = read_steplaw(csv)
    best = runs.loc[runs.groupby(["params", "tokens"])["loss"].idxmin()]
    at_best_batch = at_best_batch_size(runs)
    own = estimate_optima(at_best_batch).set_index(["params", "tokens"])
    rows = []
    for held_out, law in laws_without_each_model_size(at_best_batch):
        for _, cell in best[best["params"] == held_out].iterrows():
            prediction = law.predict(Scale(cell["params"], cell["tokens"]))
            lo, hi = prediction.interval(0.9)
            grid = at_best_batch.loc[
                (at_best_batch["params"] == cell["params"]) & (at_best_batch["tokens"] == cell["tokens"]), "lr"
            ]
            grid_lo, grid_hi = prediction.interval_on_grid(grid)
            cell_lo, cell_hi = _grid_cell(grid, cell["lr"])
            sweep = own.loc[(cell["params"], cell["tokens"])]
            rows.append(
                {
                    "params": cell["params"],
                    "tokens": cell["tokens"],
                    "predicted_lr": prediction.lr,
                    "lo90": lo,
                    "hi90": hi,
                    "grid_best_lr": cell["lr"],
                    "grid_best_inside_90": bool(lo <= cell["lr"] <= hi),
                    "grid_best_inside_grid_90": bool(grid_lo <= cell["lr"] <= grid_hi),
                    "cdf_cell_lo": prediction.cdf(cell_lo) if cell_lo > 0 else 0.0,
                    "cdf_cell_hi": prediction.cdf(cell_hi) if math.isfinite(cell_hi) else 1.0,
                    "z_grid": (math.log(cell["lr"]) - prediction.log_lr_mean) / prediction.log_lr_sd,
                    "sweep_lr": sweep["lr"],
                    "z_sweep": (sweep["log_lr_mean"] - prediction.log_lr_mean)
                    / math.hypot(prediction.log_lr_sd, sweep["log_lr_sd"]),
                }
            )
    return pd.DataFrame(rows)


BATCH_FEATURES = ("params", "tokens", "batch_tokens")
#: A (cell, batch size) sweep is scored only with this many LRs: fewer cannot show a best.
MIN_SWEEP_LRS = 4


def _batch_sweep_rows(law, runs: pd.DataFrame, params: float) -> list[dict]:
    """Score ``law`` on every (cell, batch size) sweep of model size ``params``."""
    rows = []
    sweeps = runs[runs["params"] == params].groupby(["tokens", "batch_tokens"])
    for (tokens, batch_tokens), sweep in sweeps:
        if sweep["lr"].nunique() < MIN_SWEEP_LRS:
            continue
        best = sweep.loc[sweep["loss"].idxmin()]
        prediction = law.predict(Scale(params, tokens, batch_tokens))
        nearest, regret = _regret(sweep, best["loss"], prediction.lr)
        grid_lo, grid_hi = prediction.interval_on_grid(sweep["lr"])
        cell_lo, cell_hi = _grid_cell(sweep["lr"], best["lr"])
        rows.append(
            {
                "params": params,
                "tokens": tokens,
                "batch_tokens": batch_tokens,
                "predicted_lr": prediction.lr,
                "grid_lo90": grid_lo,
                "grid_hi90": grid_hi,
                "measured_best_lr": best["lr"],
                "best_inside_grid_90": bool(grid_lo <= best["lr"] <= grid_hi),
                "cdf_cell_lo": prediction.cdf(cell_lo) if cell_lo > 0 else 0.0,
                "cdf_cell_hi": prediction.cdf(cell_hi) if math.isfinite(cell_hi) else 1.0,
                "nearest_grid_lr": nearest,
                "regret": regret,
            }
        )
    return rows


def batch_holdout(csv: str | Path = DEFAULT_CSV, batch_form: str = "auto") -> pd.DataFrame:
    """Fit on N < 1e9 with every batch size, predict every (cell, B) sweep of N = 1.07e9."""
    runs = read_steplaw(csv)
    law = fit_law(runs[runs["params"] < TARGET_PARAMS], features=BATCH_FEATURES, batch_form=batch_form)
    rows = _batch_sweep_rows(law, runs, float(runs["params"].max()))
    return pd.DataFrame(rows).assign(batch_form=law.batch_form)


def batch_leave_one_model_out(csv: str | Path = DEFAULT_CSV, batch_form: str = "auto") -> pd.DataFrame:
    """Each model size held out in turn (the largest from the smaller ones only), every
    (cell, B) sweep of it predicted by a law fitted on the others' runs at every B."""
    runs = read_steplaw(csv)
    rows = []
    for held_out, law in laws_without_each_model_size(runs, features=BATCH_FEATURES, batch_form=batch_form):
        rows += [dict(row, batch_form=law.batch_form) for row in _batch_sweep_rows(law, runs, held_out)]
    return pd.DataFrame(rows)


def best_batch_size_holdout(csv: str | Path = DEFAULT_CSV) -> pd.DataFrame:
    """`fit_batch_size_law` on N < 1e9 (in N and D, and in D alone), predicting the batch
    size with the lowest loss in each N = 1.07e9 cell; regret is the best loss of the batch
    size nearest the prediction over the cell's best loss, minus 1."""
    runs = read_steplaw(csv)
    rows = []
    for features in (("params", "tokens"), ("tokens",)):
        law = fit_batch_size_law(runs[runs["params"] < TARGET_PARAMS], features=features)
        exponents = law.coefficients()["estimate"]
        for tokens, cell in runs[runs["params"] >= TARGET_PARAMS].groupby("tokens"):
            prediction = law.predict(Scale(float(cell["params"].iloc[0]), tokens))
            best = cell.groupby("batch_tokens")["loss"].min()
            nearest = best.index[np.argmin(np.abs(np.log(best.index / prediction.batch_tokens)))]
            lo, hi = prediction.interval()
            rows.append(
                {
                    "features": " and ".join(features),
                    "tokens": tokens,
                    "exponent_N": exponents.get("params", math.nan),
                    "exponent_D": exponents["tokens"],
                    "predicted_B": prediction.batch_tokens,
                    "lo90": lo,
                    "hi90": hi,
                    "measured_best_B": best.idxmin(),
                    "nearest_B": nearest,
                    "regret": best[nearest] / best.min() - 1,
                }
            )
    return pd.DataFrame(rows)


def summarize_batch(rows: pd.DataFrame) -> dict[str, float]:
    """Median, 90th percentile and worst regret, and the coverage of the 90% intervals."""
    return {
        "sweeps": len(rows),
        "median_regret": float(rows["regret"].median()),
        "p90_regret": float(rows["regret"].quantile(0.9)),
        "worst_regret": float(rows["regret"].max()),
        "inside_grid_90": float(rows["best_inside_grid_90"].mean()),
        "fair_grid_coverage_90": grid_coverage(rows, 0.9),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("csv", nargs="?", default=DEFAULT_CSV, type=Path, help="Step Law's dense_lr_bs_loss.csv")
    csv = steplaw_csv_or_exit(parser.parse_args().csv)
    report = holdout_report(csv)
    cells = leave_one_model_out(csv)
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(
            report.assign(regret_pct=100 * report["regret"])
            .drop(columns="regret")
            .to_string(index=False, float_format=lambda v: f"{v:.4g}")
        )
        print("\nSetting (a), each model size held out in turn:")
        print(cells.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    inside_sweep = (cells["z_sweep"].abs() <= 1.645).mean()
    grid_vs_sweep = math.sqrt((np.log(cells["grid_best_lr"] / cells["sweep_lr"]) ** 2).mean())
    fair = ", ".join(f"{grid_coverage(cells, q):.0%}" for q in (0.5, 0.8, 0.9))
    print(
        f"\n{len(cells)} cells. Grid-best LR inside the 90% interval: {cells['grid_best_inside_90'].mean():.0%}, "
        f"rms z {math.sqrt((cells['z_grid'] ** 2).mean()):.2f}; inside it on the cell's grid: "
        f"{cells['grid_best_inside_grid_90'].mean():.0%}; expected share inside the 50%, 80% and 90% intervals "
        f"for a grid measurement: {fair}.\nOwn sweep posterior within 1.645 combined sds: "
        f"{inside_sweep:.0%}, rms z {math.sqrt((cells['z_sweep'] ** 2).mean()):.2f}. "
        f"Grid-best LR vs own sweep posterior: rms {grid_vs_sweep:.2f} in log LR."
    )
    print("\nEvery batch size: fit on N < 1e9, predict each (cell, B) sweep of N = 1.07e9 with >= 4 LRs.")
    summaries = []
    for form in ("loglinear", "surge", "auto"):
        held = batch_holdout(csv, form)
        lomo = batch_leave_one_model_out(csv, form)
        if form == "auto":
            with pd.option_context("display.width", 200, "display.max_columns", 20):
                print(
                    held.drop(columns=["cdf_cell_lo", "cdf_cell_hi"]).to_string(
                        index=False, float_format="{:.4g}".format
                    )
                )
        summaries += [
            {"check": "N = 1.07e9 held out", "batch_form": form, **summarize_batch(held)},
            {"check": "leave one model size out", "batch_form": form, **summarize_batch(lomo)},
        ]
    print(pd.DataFrame(summaries).to_string(index=False, float_format="{:.4g}".format))
    law = fit_law(read_steplaw(csv).query("params < @TARGET_PARAMS"), features=BATCH_FEATURES)
    print(f"\nThe law on N < 1e9 ({law.batch_form} form, held-out scores {law.form_scores}):")
    print(law.coefficients().to_string(float_format="{:.4g}".format))
    print("\nWhich batch size: the best batch size of each N = 1.07e9 cell, predicted from N < 1e9.")
    print(best_batch_size_holdout(csv).to_string(index=False, float_format="{:.4g}".format))


if __name__ == "__main__":
    main()
