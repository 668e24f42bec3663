"""Do a climb's rung intervals hold the rungs' optima, and does its one LR at width 80 pay?

    python benchmarks/ladder_climbs.py [--seeds 0 1 2] [--dir /tmp/climbs] [--out benchmarks/results/ladder_climbs.json]

For each sampler seed, on a fresh SQLite storage, the documented commands run as a user
runs them:

    optuna-lrlaw ladder --storage sqlite:///DIR/climbSEED.db --seed SEED --json
    optuna-lrlaw ladder --storage sqlite:///DIR/climbSEED.db --seed SEED --target-width 80 --compare --json

Then each rung's 90% interval for its own optimum is checked against a dense grid at that
rung (7 LRs, log-spaced over 16x around the optimum; trained once into DIR/grids.db and
reused: a benchmark, not part of the ladder), whose optimum is `estimate_optimum`'s
posterior median over the grid. The law's width-80 run is scored twice: against the best
width-80 loss of the three strategies (the comparison's regret) and on the width-80 grid's
fitted curve.
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
import torch

from optuna_lrlaw import estimate_optimum
from optuna_lrlaw.ladder import default_rungs

GRID_WIDTHS = (32, 48, 64, 80)
GRID = np.geomspace(2e-3, 3.2e-2, 7)


def rung_grids(storage: str) -> dict[int, dict]:
    """The dense grid at every rung width and at the target: runs, and the optimum they show."""
    out = {}
    for rung in default_rungs(GRID_WIDTHS):
        study = optuna.create_study(
            storage=storage,
            study_name=f"grid/{rung.name}",
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
            study.optimize(rung.objective((1e-4, 1e-1)), n_trials=left)
        trials = [t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.COMPLETE]
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
    """The two documented commands on ``storage``, their JSON reports, and their wall time."""
    command = str(Path(sys.executable).with_name("optuna-lrlaw"))
    base = [command, "ladder", "--storage", storage, "--seed", str(seed), "--json"]
    reports = {}
    for label, extra in (("climb", []), ("compare", ["--target-width", "80", "--compare"])):
        start = time.time()
        done = subprocess.run(base + extra, capture_output=True, text=True, check=True)
        reports[label] = {**json.loads(done.stdout), "seconds": round(time.time() - start, 1)}
    return reports


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
    target_grid = grids[80]
    results = []
    for seed in args.seeds:
        storage = args.dir / f"climb{seed}.db"
        storage.unlink(missing_ok=True)
        reports = climb(f"sqlite:///{storage}", seed)
        rungs = []
        for row in reports["compare"]["rungs"]:
            width = int(row["rung"].split("-")[0][1:])
            truth = grids[width]["lr_star"]
            rungs.append(
                {
                    "rung": row["rung"],
                    "trials": row["trials"],
                    "lr_lo": row["lr_lo"],
                    "lr_hi": row["lr_hi"],
                    "grid_optimum": truth,
                    "inside": bool(row["lr_lo"] <= truth <= row["lr_hi"]),
                    "span": max(row["best_lr"], row["lr_hi"]) / min(row["best_lr"], row["lr_lo"]),
                }
            )
        law = next(r for r in reports["compare"]["comparison"] if r["strategy"] == "law ladder")
        u = math.log(law["lr"] / target_grid["lr_star"])
        result = {
            "seed": seed,
            "rungs": rungs,
            "target": reports["compare"]["target"],
            "comparison": reports["compare"]["comparison"],
            "law_lr": law["lr"],
            "law_regret_vs_strategies": law["regret"],
            "law_loss_vs_grid_best": law["loss"] / target_grid["best_loss"] - 1,
            "law_log_distance_from_grid_optimum": u,
            "seconds": {"climb": reports["climb"]["seconds"], "compare": reports["compare"]["seconds"]},
        }
        results.append(result)
        inside = ", ".join(f"{r['rung']} {'in' if r['inside'] else 'OUT'}" for r in rungs)
        print(
            f"seed {seed}: law lr {law['lr']:.3g}, regret {100 * law['regret']:.2f}% vs strategies, "
            f"{100 * result['law_loss_vs_grid_best']:.2f}% vs the width-80 grid's best; {inside}"
        )
    if args.out:
        payload = {
            "command": "python " + " ".join(sys.argv),
            "machine": f"{platform.machine()}, Python {platform.python_version()}",
            "torch": torch.__version__,
            "grids": grids,
            "climbs": results,
        }
        args.out.write_text(json.dumps(payload, indent=1, default=float) + "\n")


if __name__ == "__main__":
    main()
