"""Three fresh climbs of the main job: do they agree, and do their rungs hold the dense grids' optima?

    python benchmarks/ladder_climbs.py [--seeds 0 1 2] [--dir /tmp/climbs] [--out benchmarks/results/ladder_climbs.json]

For each seed, on a fresh SQLite storage, the README's main job runs as a user runs it:

    optuna-lrlaw ladder --storage sqlite:///DIR/climbSEED.db --seed SEED --json

so each climb draws its own sampler and training seeds (a new ladder trains at its
``--seed``). ``--reuse`` reads back climbs already in DIR instead (the command resumes a
finished ladder without training).

Two checks, from issue "Honest rungs":

- the climbs agree within their stated uncertainty: each climb's 90% interval at the
  target holds the other climbs' medians, and their expected regrets (of a run at the
  median, the one-shot LR) lie within a factor 2 of each other;
- each rung's 90% interval holds its dense-grid optimum: the grids are
  `real_sweeps.py`'s (every default rung at 14 LRs and 9 training seeds), the optimum a
  parabola through their seed means (`local_optimum`).
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import torch

from optuna_lrlaw.science.truth_curve import local_optimum


def climb(storage: str, seed: int) -> dict:
    """The documented command on ``storage``: its JSON report and its wall time."""
    command = str(Path(sys.executable).with_name("optuna-lrlaw"))
    start = time.time()
    done = subprocess.run(
        [command, "ladder", "--storage", storage, "--seed", str(seed), "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    return {**json.loads(done.stdout), "seconds": round(time.time() - start, 1)}


def grid_optima(path: Path) -> dict[str, dict[str, float]]:
    """Each rung's dense-grid optimum and its 90% interval (a bootstrap over whole seeds)."""
    out = {}
    for rung, runs in pd.read_csv(path).groupby("rung"):
        optimum = local_optimum(runs)
        lo, hi = optimum.interval(0.9)
        out[str(rung)] = {"lr": optimum.lr, "lo90": lo, "hi90": hi, "seeds": int(runs["seed"].nunique())}
    return out


def agreement(targets: list[dict]) -> dict[str, object]:
    """Does every climb's 90% interval hold every other climb's median, and how far apart
    are their expected regrets?"""
    holds = {
        f"{a['seed']} holds {b['seed']}": bool(a["lo90"] <= b["lr"] <= a["hi90"])
        for a in targets
        for b in targets
        if a is not b
    }
    regrets = [t["expected_regret"] for t in targets]
    return {
        "intervals_hold_each_other": all(holds.values()),
        "holds": holds,
        "regret_ratio": max(regrets) / min(regrets),
        "regrets_within_factor_2": max(regrets) <= 2 * min(regrets),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--dir", type=Path, default=Path("/tmp/climbs"))
    parser.add_argument("--grid", type=Path, default=Path("benchmarks/results/real_sweeps_cpu.csv"))
    parser.add_argument("--reuse", action="store_true", help="read back the climbs already in --dir")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    grids = grid_optima(args.grid)
    climbs = []
    for seed in args.seeds:
        storage = args.dir / f"climb{seed}.db"
        if not args.reuse:
            storage.unlink(missing_ok=True)
        report = climb(f"sqlite:///{storage}", seed)
        rungs = []
        for row in report["rungs"]:
            grid = grids.get(row["rung"])
            inside = None if grid is None else bool(row["lr_lo"] <= grid["lr"] <= row["lr_hi"])
            rungs.append(
                {
                    **{k: row[k] for k in ("rung", "trials", "best_lr", "lr_star", "lr_lo", "lr_hi")},
                    "holds_grid_optimum": inside,
                }
            )
        target = report["target"]
        climbs.append({"seed": seed, "rungs": rungs, "target": target, "seconds": report["seconds"]})
        held = ", ".join(f"{r['rung']} {'holds' if r['holds_grid_optimum'] else 'MISSES'}" for r in rungs)
        print(
            f"seed {seed}: median {target['lr']:.3g} [{target['lo90']:.3g}, {target['hi90']:.3g}], "
            f"expected regret {100 * target['expected_regret']:.2f}% "
            f"({100 * target['regret_in_band']:.2f}% in band, {100 * target['outside_band_probability']:.0f}% outside, "
            f"{100 * target['within_tolerance_probability']:.0f}% within 0.5%); {held}; {report['seconds']:.0f} s"
        )
    agreed = agreement([{"seed": c["seed"], **c["target"]} for c in climbs])
    print(
        f"intervals hold each other's medians: {agreed['intervals_hold_each_other']}; "
        f"expected regrets within a factor 2: {agreed['regrets_within_factor_2']} (ratio {agreed['regret_ratio']:.2f})"
    )
    if args.out:
        payload = {
            "command": "python " + " ".join(sys.argv),
            "reused": args.reuse,  # then "seconds" is the read-back time, not the climb's
            "machine": f"{platform.machine()}, Python {platform.python_version()}",
            "torch": torch.__version__,
            "grids": grids,
            "climbs": climbs,
            "agreement": agreed,
        }
        args.out.write_text(json.dumps(payload, indent=1, default=float) + "\n")


if __name__ == "__main__":
    main()
