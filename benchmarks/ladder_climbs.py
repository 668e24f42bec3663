"""Do a climb's rung intervals hold the rungs' optima, and does its one LR at width 80 pay?

    python benchmarks/ladder_climbs.py [--seeds 0 1 2] [--dir /tmp/climbs] [--out benchmarks/results/ladder_climbs.json]

For each sampler seed, on a fresh SQLite storage, the documented command runs as a user
runs it:

    optuna-lrlaw ladder --storage sqlite:///DIR/climbSEED.db --seed SEED --target-width 80 --json

Then each rung's 90% interval for its own optimum is checked against a dense grid at that
rung (7 LRs, log-spaced over 16x around the optimum; trained once into DIR/grids.db and
reused: a benchmark, not part of the ladder), whose optimum is `estimate_optimum`'s
posterior median over the grid. The law's recommended LR at width 80 is scored on the
truth curve of the same grid at width 80 trained at two seeds (`fit_truth_curve`): its
regret against the curve's best, with the standard error the two seeds leave.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import torch

from optuna_lrlaw import estimate_optimum
from optuna_lrlaw.ladder import default_rungs
from optuna_lrlaw.science.truth_curve import TruthCurve, fit_truth_curve

GRID_WIDTHS = (32, 48, 64, 80)
GRID = np.geomspace(2e-3, 3.2e-2, 7)
TARGET_WIDTH = 80


def grid_trials(storage: str, rung, seed: int = 0) -> list[optuna.trial.FrozenTrial]:
    """The grid's runs of ``rung`` at training seed ``seed``, trained once and reused."""
    suffix = "" if seed == 0 else f"/seed{seed}"
    study = optuna.create_study(
        storage=storage,
        study_name=f"grid/{rung.name}{suffix}",
        pruner=optuna.pruners.NopPruner(),  # every grid run trains to the end
        load_if_exists=True,
    )
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    done = {round(t.params["lr"], 12) for t in complete}
    for lr in GRID:
        if round(float(lr), 12) not in done:
            study.enqueue_trial({"lr": float(lr)})
    left = sum(round(float(lr), 12) not in done for lr in GRID)
    if left:
        study.optimize(rung.objective((1e-4, 1e-1), seed=seed), n_trials=left)
    return [t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.COMPLETE]


def target_truth(storage: str) -> TruthCurve:
    """The width-80 grid at seeds 0 and 1, as a truth curve."""
    (rung,) = default_rungs([TARGET_WIDTH])
    runs = pd.DataFrame(
        {"lr": t.params["lr"], "seed": seed, "loss": t.value, "diverged": bool(t.user_attrs.get("lrlaw.diverged"))}
        for seed in (0, 1)
        for t in grid_trials(storage, rung, seed)
    )
    return fit_truth_curve(runs)


def rung_grids(storage: str) -> dict[int, dict]:
    """The dense grid at every rung width and at the target: runs, and the optimum they show."""
    out = {}
    for rung in default_rungs(GRID_WIDTHS):
        trials = grid_trials(storage, rung)
        lrs = np.array([t.params["lr"] for t in trials])
        losses = np.array([t.value for t in trials])
        diverged = np.array([bool(t.user_attrs.get("lrlaw.diverged", False)) for t in trials])
        estimate = estimate_optimum(lrs, losses, diverged=diverged)
        out[rung.model.width] = {
            "rung": rung.name,
            "lrs": lrs.tolist(),
            "losses": losses.tolist(),
            "lr_star": estimate.lr,
            "interval90": list(estimate.interval(0.9)),
            "best_lr": float(lrs[np.argmin(np.where(diverged, np.inf, losses))]),
            "best_loss": float(np.min(np.where(diverged, np.inf, losses))),
        }
    return out


def climb(storage: str, seed: int) -> dict:
    """The documented command on ``storage``: its JSON report and its wall time."""
    command = str(Path(sys.executable).with_name("optuna-lrlaw"))
    args = [command, "ladder", "--storage", storage, "--seed", str(seed), "--target-width", str(TARGET_WIDTH)]
    start = time.time()
    done = subprocess.run([*args, "--json"], capture_output=True, text=True, check=True)
    return {**json.loads(done.stdout), "seconds": round(time.time() - start, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--dir", type=Path, default=Path("/tmp/climbs"))
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    args.dir.mkdir(parents=True, exist_ok=True)
    grids = rung_grids(f"sqlite:///{args.dir / 'grids.db'}")
    for width, grid in grids.items():
        lo, hi = grid["interval90"]
        print(f"grid w{width}: optimum {grid['lr_star']:.3g} [{lo:.3g}, {hi:.3g}], best run {grid['best_lr']:.3g}")
    truth = target_truth(f"sqlite:///{args.dir / 'grids.db'}")
    print(f"width-80 truth: best {truth.best_lr:.3g} (loss {truth.best_loss:.4f}), seed sd {truth.seed_sd:.4f}")
    results = []
    for seed in args.seeds:
        storage = args.dir / f"climb{seed}.db"
        storage.unlink(missing_ok=True)
        report = climb(f"sqlite:///{storage}", seed)
        rungs = []
        for row in report["rungs"]:
            width = int(row["rung"].split("-")[0][1:])
            grid_optimum = grids[width]["lr_star"]
            rungs.append(
                {
                    "rung": row["rung"],
                    "trials": row["trials"],
                    "lr_lo": row["lr_lo"],
                    "lr_hi": row["lr_hi"],
                    "grid_optimum": grid_optimum,
                    "inside": bool(row["lr_lo"] <= grid_optimum <= row["lr_hi"]),
                    "span": max(row["best_lr"], row["lr_hi"]) / min(row["best_lr"], row["lr_lo"]),
                }
            )
        lr = report["target"]["recommended_lr"]
        result = {
            "seed": seed,
            "rungs": rungs,
            "target": report["target"],
            "law_lr": lr,
            "law_regret": float(truth.regret(lr)),
            "law_regret_se": float(truth.regret_se(lr)),
            "law_log_distance_from_truth_optimum": math.log(lr / truth.best_lr),
            "seconds": report["seconds"],
        }
        results.append(result)
        inside = ", ".join(f"{r['rung']} {'in' if r['inside'] else 'OUT'}" for r in rungs)
        print(
            f"seed {seed}: law lr {lr:.3g}, regret {100 * result['law_regret']:.2f}% "
            f"± {100 * result['law_regret_se']:.2f} on the width-80 truth; {inside}"
        )
    if args.out:
        payload = {
            "command": "python " + " ".join(sys.argv),
            "machine": f"{platform.machine()}, Python {platform.python_version()}",
            "torch": torch.__version__,
            "grids": grids,
            "target_truth": truth.to_dict(),
            "climbs": results,
        }
        args.out.write_text(json.dumps(payload, indent=1, default=float) + "\n")


if __name__ == "__main__":
    main()
