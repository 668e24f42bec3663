"""Climbs replayed on real dense grids: are the sweeps' intervals and the law's expected regret honest?

    python benchmarks/sweep_replay.py --climbs 400 --sweeps 1000 --out benchmarks/results/sweep_replay_cpu.json

The grids are `real_sweeps.py`'s: every default rung trained at 14 LRs 0.35 e-fold apart and
9 training seeds. A replayed climb picks one training seed (one ladder's runs share it) and
climbs the rungs as `optuna-lrlaw ladder` does: at each rung the law fitted on the replayed
rungs below gives the prior (none at the first), the first run takes its recommended LR (the
prior's median without a law), the next ones `spread_design`'s points, then Thompson draws
from `estimate_optimum`'s posterior, 6 runs in all, LRs clipped to the ladder's range
1e-4..1e-1. Each LR asked for is answered by the grid run of that seed at the nearest grid
LR not yet used in the sweep, and the sweep records that grid LR (the estimator sees only
real runs). Bracketing runs and early stops of the real ladder are left out. A first rung
always starts from the same wide prior, so a climb's sweeps differ only by their seed; for
calibration, ``--sweeps`` more per rung start from priors such as a law gives (sd 0.3 to 1,
centred one sd off the grid's optimum on average), each at a random training seed.

Each replayed sweep is scored against its rung's dense-grid optimum (`local_optimum`: a
parabola through the seed means near their best, bootstrapped over seeds): does the sweep's
90% interval hold it, and the best run's LR; how wide is it next to the grid's own 90%
interval. At the top rung, the law of the rungs below predicts it before it is climbed:
its expected regret at the LR it recommends is set against the regret that LR realises on
the top rung's seed-mean curve (`TruthCurve`). (`top_rung_trend.py` does the same for the
law of the lower rungs' seed-mean curves: the error every climb shares.) Each climb's law on all rungs then predicts
``--target-width`` as the CLI does: how often do three climbs at distinct training seeds
agree (each 90% interval holding the others' medians, expected regrets within a factor 2)?
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from optuna_lrlaw import Scale, estimate_optimum, fit_law
from optuna_lrlaw.ladder import default_rungs
from optuna_lrlaw.proxies.objective import SEED_NOISE
from optuna_lrlaw.science.acquisition import spread_design
from optuna_lrlaw.science.truth_curve import fit_truth_curve, local_optimum

LR_RANGE = (1e-4, 1e-1)
NO_LAW_SD_FRACTION = 0.5  # LRLawSampler's prior over the range when there is no law


class Grid:
    """One rung's dense grid: the runs of each seed, by grid LR."""

    def __init__(self, runs: pd.DataFrame) -> None:
        first = runs.iloc[0]
        self.name = str(first["rung"])
        self.scale = Scale(
            params=float(first["params"]), tokens=float(first["tokens"]), batch_tokens=float(first["batch_tokens"])
        )
        self.runs = runs
        self.log_lrs = np.log(np.sort(runs["lr"].unique()))
        self.by_seed = {s: g.set_index(np.log(g["lr"]).round(9)) for s, g in runs.groupby("seed")}
        self.optimum = local_optimum(runs)
        self.truth = fit_truth_curve(
            runs.assign(loss=np.where(runs["diverged"] > 0, np.nan, runs["loss"])).dropna(subset=["loss"])
        )

    def run(self, log_lr: float, seed: int, used: set[float]) -> tuple[float, float, bool]:
        """The seed's run at the grid LR nearest ``log_lr`` not in ``used``: (lr, loss, diverged)."""
        order = np.argsort(np.abs(self.log_lrs - log_lr), kind="stable")
        node = next((float(v) for v in self.log_lrs[order] if round(float(v), 9) not in used), None)
        if node is None:
            raise RuntimeError("the grid is used up")
        used.add(round(node, 9))
        row = self.by_seed[seed].loc[round(node, 9)]
        return math.exp(node), float(row["loss"]), bool(row["diverged"])


def replay_sweep(
    grid: Grid, seed: int, law, rng: np.random.Generator, trials: int, prior: tuple[float, float] | None = None
) -> pd.DataFrame:
    """One rung's sweep as the ladder draws it: from ``law``'s prediction, or from ``prior``
    (mean, sd of log eta*) as a law might give it, or from the wide prior of a first rung."""
    bounds = tuple(math.log(v) for v in LR_RANGE)
    if prior is not None:
        start, curvature = prior[0], None
    elif law is None:
        prior = (0.5 * sum(bounds), NO_LAW_SD_FRACTION * (bounds[1] - bounds[0]))
        start, curvature = prior[0], None
    else:
        prediction = law.predict(grid.scale)
        prior = (prediction.log_lr_mean, prediction.log_lr_sd)
        start, curvature = math.log(prediction.recommend().lr), prediction.shape.curvature
    used: set[float] = set()
    lrs, losses, diverged = [], [], []
    for index in range(trials):
        if index == 0:
            log_lr = start
        else:
            belief = estimate_optimum(lrs, losses, diverged=diverged, prior=prior, noise=SEED_NOISE)
            log_lr = spread_design(math.log(belief.lr), belief.log_lr_sd, np.log(lrs), bounds, curvature=curvature)
            if log_lr is None:
                log_lr = float(belief.sample_log_lr(rng, bounds=bounds))
        lr, loss, flag = grid.run(float(np.clip(log_lr, *bounds)), seed, used)
        lrs.append(lr)
        losses.append(math.inf if flag else loss)
        diverged.append(flag)
    s = grid.scale
    return pd.DataFrame(
        {
            "params": s.params,
            "tokens": s.tokens,
            "batch_tokens": s.batch_tokens,
            "lr": lrs,
            "loss": losses,
            "diverged": diverged,
            "noise": SEED_NOISE,
        }
    )


def score_sweep(grid: Grid, sweep: pd.DataFrame) -> dict[str, object]:
    ok = ~sweep["diverged"].to_numpy(dtype=bool)
    try:
        estimate = estimate_optimum(sweep["lr"], sweep["loss"], diverged=~ok, noise=SEED_NOISE)
    except ValueError:
        return {"rung": grid.name, "estimated": False}
    lo, hi = estimate.interval(0.9)
    best_lr = float(sweep["lr"][ok].iloc[int(np.argmin(sweep["loss"][ok]))])
    truth_lo, truth_hi = grid.optimum.interval(0.9)
    return {
        "rung": grid.name,
        "estimated": True,
        "bracketed": estimate.bracketed,
        "covers_optimum": lo <= grid.optimum.lr <= hi,
        "covers_best_run": lo <= best_lr <= hi,
        "log_width": math.log(hi / lo),
        "truth_log_width": math.log(truth_hi / truth_lo),
        "error_sds": (math.log(grid.optimum.lr) - estimate.log_lr_mean) / estimate.log_lr_sd,
    }


def top_rung_check(grid: Grid, law) -> dict[str, float]:
    prediction = law.predict(grid.scale)
    recommendation = prediction.recommend()
    row = {"median_lr": prediction.lr, "recommended_lr": recommendation.lr, "log_lr_sd": prediction.log_lr_sd}
    lo, hi = prediction.interval(0.9)
    row["covers_optimum"] = lo <= grid.optimum.lr <= hi
    for name, lr in (("median", prediction.lr), ("recommended", recommendation.lr)):
        row[f"{name}_expected_regret"] = float(prediction.expected_regret(lr))
        row[f"{name}_realised_regret"] = float(grid.truth.regret(lr))
    return row


def top_rung_from_seed_means(grids: list[Grid]) -> dict[str, float]:
    """The law of the lower rungs' seed-mean curves (their sweeps without the training noise)
    predicting the top rung: the error that belongs to this ladder's configuration (how far
    the top rung's optimum lies off the trend of the rungs below), which every replayed climb
    shares, however many are replayed."""
    sweeps = []
    for grid in grids[:-1]:
        means = grid.runs.groupby("lr", as_index=False).agg(loss=("loss", "mean"), diverged=("diverged", "max"))
        s = grid.scale
        sweeps.append(
            means.assign(
                params=s.params, tokens=s.tokens, batch_tokens=s.batch_tokens, diverged=means["diverged"] > 0
            ).assign(noise=SEED_NOISE / math.sqrt(grid.runs["seed"].nunique()))
        )
    top = grids[-1]
    prediction = fit_law(pd.concat(sweeps, ignore_index=True)).predict(top.scale)
    return {
        "lr": prediction.lr,
        "log_lr_sd": prediction.log_lr_sd,
        "grid_optimum": top.optimum.lr,
        "z": (math.log(top.optimum.lr) - prediction.log_lr_mean) / prediction.log_lr_sd,
        "expected_regret": float(prediction.expected_regret(prediction.lr)),
        "realised_regret": float(top.truth.regret(prediction.lr)),
    }


def seed_clustered_se(rows: pd.DataFrame, values: pd.Series) -> float:
    """The standard error of ``values``' mean when rows of one training seed share its runs
    (its climbs are nearly the same climb): the spread of the per-seed means over the seeds."""
    per_seed = values.groupby(rows["seed"]).mean()
    return float(per_seed.std(ddof=1) / math.sqrt(len(per_seed)))


def target_prediction(law, target) -> dict[str, float]:
    """What a climb tells the user about the target: the median, its 90% interval and the
    expected regret of a run at the median (`Recommendation`'s parts)."""
    prediction = law.predict(target.scale())
    lo, hi = prediction.interval(0.9)
    risk = prediction.assess(prediction.lr)
    return {
        "lr": prediction.lr,
        "lo": lo,
        "hi": hi,
        "expected_regret": risk.expected_regret,
        "regret_in_band": risk.regret_in_band,
        "outside_band_probability": risk.outside_band_probability,
    }


def climbs_agree(targets: pd.DataFrame, rng: np.random.Generator, draws: int = 20000) -> dict[str, float]:
    """How often three climbs at distinct training seeds agree as issue "Honest rungs" asks:
    each one's 90% interval holds the other two's medians, and their expected regrets lie
    within a factor 2 of each other."""
    by_seed = {seed: rows.reset_index(drop=True) for seed, rows in targets.groupby("seed")}
    if len(by_seed) < 3:
        return {}
    seeds = list(by_seed)
    intervals = regrets = 0
    for _ in range(draws):
        trio = [by_seed[s].iloc[int(rng.integers(len(by_seed[s])))] for s in rng.choice(seeds, 3, replace=False)]
        intervals += all(a["lo"] <= b["lr"] <= a["hi"] for a in trio for b in trio)
        regret = [row["expected_regret"] for row in trio]
        regrets += max(regret) <= 2 * min(regret)
    return {
        "p_intervals_hold_each_other": intervals / draws,
        "p_regrets_within_factor_2": regrets / draws,
        "expected_regret_median": float(targets["expected_regret"].median()),
        "expected_regret_band80": [float(v) for v in targets["expected_regret"].quantile([0.1, 0.9])],
        "median_lr_band80": [float(v) for v in targets["lr"].quantile([0.1, 0.9])],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", type=Path, default=Path("benchmarks/results/real_sweeps_cpu.csv"))
    parser.add_argument("--climbs", type=int, default=400)
    parser.add_argument("--trials", type=int, default=6)
    parser.add_argument("--sweeps", type=int, default=1000, help="sweeps per rung from priors a law might give")
    parser.add_argument("--target-width", type=int, default=256, help="the width climbs predict (the CLI default)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    runs = pd.read_csv(args.grid)
    seeds = sorted(runs["seed"].unique())
    complete = [g for _, g in runs.groupby("rung") if g["seed"].nunique() == len(seeds)]
    grids = sorted((Grid(g) for g in complete), key=lambda grid: grid.scale.params)
    started = time.time()
    (target,) = default_rungs([args.target_width])
    sweeps, tops, targets = [], [], []
    for climb in range(args.climbs):
        rng = np.random.default_rng([climb, 7])
        seed = int(seeds[climb % len(seeds)])
        below, law = [], None
        for index, grid in enumerate(grids):
            if index == len(grids) - 1 and law is not None:
                tops.append({"climb": climb, "seed": seed, **top_rung_check(grid, law)})
            sweep = replay_sweep(grid, seed, law, rng, args.trials)
            sweeps.append({"climb": climb, "seed": seed, **score_sweep(grid, sweep)})
            below.append(sweep)
            try:
                law = fit_law(pd.concat(below, ignore_index=True))
            except ValueError:
                law = None
        if law is not None:
            targets.append({"climb": climb, "seed": seed, **target_prediction(law, target)})
        if (climb + 1) % 20 == 0:
            print(f"{climb + 1}/{args.climbs} climbs, {time.time() - started:.0f} s", file=sys.stderr, flush=True)
    # Sweeps from priors such as a law gives: sd 0.3 to 1, centred one sd off the grid's
    # optimum on average, each at a random training seed.
    rng = np.random.default_rng(11)
    for grid in grids:
        for index in range(args.sweeps):
            sd = rng.uniform(0.3, 1.0)
            prior = (math.log(grid.optimum.lr) + sd * rng.standard_normal(), sd)
            seed = int(rng.choice(seeds))
            sweep = replay_sweep(grid, seed, None, rng, args.trials, prior=prior)
            sweeps.append({"climb": -1 - index, "seed": seed, **score_sweep(grid, sweep)})
    sweeps, tops, targets = pd.DataFrame(sweeps), pd.DataFrame(tops), pd.DataFrame(targets)
    summary = []
    for source, chosen in (("from a prior", sweeps["climb"] < 0), ("in a climb", sweeps["climb"] >= 0)):
        for grid in grids:
            rows = sweeps[chosen & (sweeps["rung"] == grid.name)]
            bracketed = rows[rows["estimated"].astype(bool) & rows["bracketed"].fillna(False).astype(bool)]
            if bracketed.empty:
                continue
            lo, hi = grid.optimum.interval(0.9)
            summary.append(
                {
                    "sweeps": source,
                    "rung": grid.name,
                    "grid_optimum": grid.optimum.lr,
                    "grid_optimum_90": [lo, hi],
                    "replayed": int(len(rows)),
                    "bracketed": int(len(bracketed)),
                    "coverage_optimum": float(bracketed["covers_optimum"].mean()),
                    # Sweeps of one training seed share its runs: the coverage's standard
                    # error counts seeds, not sweeps.
                    "coverage_optimum_se": seed_clustered_se(bracketed, bracketed["covers_optimum"].astype(float)),
                    "coverage_best_run": float(bracketed["covers_best_run"].mean()),
                    "narrower_than_half_grid": float(
                        (bracketed["log_width"] < 0.5 * bracketed["truth_log_width"]).mean()
                    ),
                    "median_width_factor": float(np.exp(bracketed["log_width"].median())),
                    "error_sd": float(bracketed["error_sds"].std()),
                }
            )
            print(json.dumps(summary[-1]))
    top = {}
    if len(tops):
        for name in ("median", "recommended"):
            expected, realised = tops[f"{name}_expected_regret"], tops[f"{name}_realised_regret"]
            top[name] = {
                "expected_mean": float(expected.mean()),
                "expected_band80": [float(expected.quantile(0.1)), float(expected.quantile(0.9))],
                "realised_mean": float(realised.mean()),
                "realised_se": seed_clustered_se(tops, realised),
                "p_realised_under_0.5pct": float((realised <= 0.005).mean()),
            }
        gap = tops["median_realised_regret"] - tops["recommended_realised_regret"]
        top["median_minus_recommended"] = {"mean": float(gap.mean()), "se": seed_clustered_se(tops, gap)}
        top["coverage_90"] = float(tops["covers_optimum"].mean())
        top["climbs"] = int(len(tops))
        print(json.dumps(top))
    agreement = climbs_agree(targets, np.random.default_rng(5))
    print(json.dumps({"target": target.name, **agreement}))
    if args.out:
        payload = {
            "command": "python " + " ".join(sys.argv),
            "rungs": summary,
            "top_rung": top,
            "target": {"rung": target.name, **agreement},
            "grids": {g.name: {"seeds": len(seeds), "lrs": len(g.log_lrs)} for g in grids},
        }
        args.out.write_text(json.dumps(payload, indent=1))


if __name__ == "__main__":
    main()
