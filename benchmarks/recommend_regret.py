"""Does the recommended LR (lowest expected loss) beat the posterior median of eta*?

    python benchmarks/recommend_regret.py [--problems 200] [--seeds 0 1] [--out results.json]

Two test beds, each scoring one run at the law's median and one at `recommend()`:

- synthetic problems (tests/synthetic.py): laws with scattered optima, asymmetric curves
  with a cubic kick above the optimum and a divergence cliff 3x to 10x above it, predicted
  at a held-out scale 25x larger in N; regret is that scale's true relative loss excess
  (noise-free), a run past the cliff counts as diverged;
- Step Law's table, each model size held out in turn (predicted from the others; the
  largest from the smaller ones only): its 17 (N, D) cells at their best batch size with
  the law in N and D, and every (cell, batch size) sweep with >= 4 LRs with the law in N,
  D and B; regret is the loss of the grid LR nearest the chosen LR over the sweep's best,
  minus 1 (as a grid search would measure it), and again "interpolated": the sweep's losses
  joined by a shape-preserving cubic in log LR (`fit_truth_curve`), read at the chosen LR
  itself over the cubic's minimum. Rounding to the grid (a factor 1.41 apart) decides a
  gap of a few percent in LR by which side of a grid midpoint it falls; the cubic does not.

Differences are paired (same problem, same law) and called only beyond twice their
standard error.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from steplaw_holdout import (  # noqa: E402
    BATCH_FEATURES,
    DEFAULT_CSV,
    MIN_SWEEP_LRS,
    _regret,
    at_best_batch_size,
    laws_without_each_model_size,
)
from synthetic import draw_problem  # noqa: E402

from optuna_lrlaw import Scale, fit_law  # noqa: E402
from optuna_lrlaw.science.loss_shape import DIVERGED_EXCESS  # noqa: E402
from optuna_lrlaw.science.steplaw import WHERE_TO_GET, read_steplaw  # noqa: E402
from optuna_lrlaw.science.truth_curve import fit_truth_curve  # noqa: E402


def synthetic_rows(problems: int, seed: int, *, batch: bool = False) -> list[dict]:
    rng = np.random.default_rng(seed)
    features = BATCH_FEATURES if batch else ("params", "tokens")
    rows = []
    for index in range(problems):
        problem = draw_problem(rng, batch=batch)
        prediction = fit_law(problem.observations, features=features).predict(Scale(**problem.holdout))
        recommendation = prediction.recommend()
        row = {"bed": f"synthetic{' + batch' if batch else ''}", "seed": seed, "problem": index}
        for name, lr in (("median", prediction.lr), ("recommended", recommendation.lr)):
            u = math.log(lr / problem.holdout_lr)
            diverged = u > problem.holdout_curve.cliff
            row[f"{name}_diverged"] = bool(diverged)
            row[f"{name}_regret"] = DIVERGED_EXCESS if diverged else float(problem.holdout_curve.excess(u))
        rows.append(row)
    return rows


def steplaw_rows(csv: Path) -> list[dict]:
    runs = read_steplaw(csv)
    beds = {
        "steplaw, 17 cells at their best B": (at_best_batch_size(runs), ("params", "tokens")),
        "steplaw, every (cell, B) sweep": (runs, BATCH_FEATURES),
    }
    rows = []
    for bed, (table, features) in beds.items():
        for held_out, law in laws_without_each_model_size(table, features=features):
            for (tokens, batch_tokens), sweep in table[table["params"] == held_out].groupby(["tokens", "batch_tokens"]):
                if sweep["lr"].nunique() < MIN_SWEEP_LRS:
                    continue
                scale = Scale(held_out, tokens, batch_tokens if "batch_tokens" in features else None)
                prediction = law.predict(scale)
                row = {"bed": bed, "params": held_out, "tokens": tokens, "batch_tokens": batch_tokens}
                curve = fit_truth_curve(sweep.assign(seed=0), min_seeds=1)
                interpolated = {**row, "bed": f"{bed} (interpolated)"}
                for name, lr in (("median", prediction.lr), ("recommended", prediction.recommend().lr)):
                    nearest, regret = _regret(sweep, sweep["loss"].min(), lr)
                    row[f"{name}_diverged"] = bool(sweep.loc[sweep["lr"] == nearest, "diverged"].all())
                    row[f"{name}_regret"] = regret
                    interpolated[f"{name}_diverged"] = row[f"{name}_diverged"]
                    interpolated[f"{name}_regret"] = float(curve.regret(lr))
                rows += [row, interpolated]
    return rows


def summarize(rows: pd.DataFrame) -> pd.DataFrame:
    out = []
    for bed, group in rows.groupby("bed", sort=False):
        difference = group["recommended_regret"] - group["median_regret"]
        se = float(difference.std(ddof=1) / math.sqrt(len(group)))
        out.append(
            {
                "bed": bed,
                "problems": len(group),
                "median: mean regret": group["median_regret"].mean(),
                "median: diverged": group["median_diverged"].mean(),
                "recommended: mean regret": group["recommended_regret"].mean(),
                "recommended: diverged": group["recommended_diverged"].mean(),
                "difference": float(difference.mean()),
                "difference se": se,
                "called": "recommended better"
                if difference.mean() < -2 * se
                else ("median better" if difference.mean() > 2 * se else "no difference beyond 2 se"),
            }
        )
    return pd.DataFrame(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", type=int, default=200)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--batch-problems", type=int, default=0, help="synthetic problems with a batch axis, per seed")
    parser.add_argument(
        "--csv",
        type=Path,
        default=DEFAULT_CSV,
        help="Step Law's dense_lr_bs_loss.csv; its rows are left out without it",
    )
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    start = time.time()
    rows = [r for seed in args.seeds for r in synthetic_rows(args.problems, seed)]
    rows += [r for seed in args.seeds for r in synthetic_rows(args.batch_problems, seed, batch=True)]
    if args.csv.is_file():
        rows += steplaw_rows(args.csv)
    else:
        print(f"no Step Law table at {args.csv}, so no Step Law rows: {WHERE_TO_GET}", file=sys.stderr)
    table = summarize(pd.DataFrame(rows))
    print(table.to_string(index=False, float_format="{:.4g}".format))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "command": "python " + " ".join(sys.argv),
            "machine": platform.platform(),
            "python": platform.python_version(),
            "seconds": round(time.time() - start, 1),
            "summary": table.to_dict(orient="records"),
        }
        args.out.write_text(json.dumps(payload, indent=2))


if __name__ == "__main__":
    main()
