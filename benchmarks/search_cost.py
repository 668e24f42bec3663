"""What the law's ladder saves: its search cost against μTransfer and ordinary search at one target width.

    python benchmarks/search_cost.py [--widths 32 48 64] [--target-width 80] [--search-trials 8] \
        [--storage sqlite:///search_cost.db] [--device auto] [--out benchmarks/results/search_cost_cpu.json]

The default ladder (`default_rungs`, `run_ladder` with its defaults) is climbed, then
`compare_search_costs` trains the target three ways: once at the law's prediction; by
μTransfer from the smallest rung (an ordinary search of ``--search-trials`` on it in μP,
then the target in μP at its best LR); and by an ordinary TPE search of ``--search-trials``
at the target. Same as ``optuna-lrlaw ladder --target-width 80 --compare``. Everything is
stored, so a rerun with the same storage trains nothing and rewrites the report.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path

import optuna
import torch

from optuna_lrlaw.ladder import compare_search_costs, default_rungs, run_ladder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", type=int, nargs="+", default=[32, 48, 64])
    parser.add_argument("--target-width", type=int, default=80)
    parser.add_argument("--search-trials", type=int, default=8)
    parser.add_argument("--storage", default="sqlite:///search_cost.db")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    rungs = default_rungs(args.widths)
    (target,) = default_rungs([args.target_width])
    common = {"storage": args.storage, "device": args.device}
    ladder = run_ladder(rungs, **common)
    table = compare_search_costs(
        ladder, rungs, target, search_trials=args.search_trials, proxy_trials=args.search_trials, **common
    )
    prediction = ladder.predict(target.scale())
    lo90, hi90 = prediction.interval(0.9)
    print(ladder.rungs[["rung", "prior_lr", "trials", "best_lr", "lr_star", "flops", "wall_seconds"]].to_string())
    print(f"\n{target.name}: law predicts {prediction}")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    if args.out:
        report = {
            "command": "python benchmarks/search_cost.py "
            + " ".join(
                f"--{k.replace('_', '-')} {' '.join(map(str, v)) if isinstance(v, list) else v}"
                for k, v in vars(args).items()
                if k not in ("out", "storage") and v is not None
            ),
            "device": ", ".join(sorted(set(table["device"]))),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
            "torch": torch.__version__,
            "optuna": optuna.__version__,
            "target": {"rung": target.name, "params": target.scale().params, "tokens": target.scale().tokens},
            "law_prediction": {"lr": prediction.lr, "lo90": lo90, "hi90": hi90},
            "ladder": ladder.rungs.to_dict(orient="records"),
            "strategies": table.to_dict(orient="records"),
        }
        args.out.write_text(json.dumps(report, indent=1, default=float) + "\n")


if __name__ == "__main__":
    main()
