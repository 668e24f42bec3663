"""Per-trial overhead of LRLawSampler against TPE and GP, at 50, 200 and 500 trials.

    python benchmarks/sampler_overhead.py [--trials 500] [--samplers LRLawSampler TPESampler GPSampler]
                                          [--out benchmarks/results/sampler_overhead.json]

The objectives cost nothing (an analytic loss of the LR alone, and of the LR with two more
parameters, weight decay and warmup, which LRLawSampler hands to its inner TPE), so a
trial's wall time is the sampler's and Optuna's own overhead. Each trial is timed between consecutive callbacks on
an in-memory study; the figure at n trials is the median over trials n-9 to n.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time
import warnings
from pathlib import Path

import numpy as np
import optuna

from optuna_lrlaw import LRLawSampler

CHECKPOINTS = (50, 200, 500)
SAMPLERS = {
    "LRLawSampler": lambda: LRLawSampler(seed=0),
    "TPESampler": lambda: optuna.samplers.TPESampler(seed=0),
    "GPSampler": lambda: optuna.samplers.GPSampler(seed=0),
}


def lr_loss(lr: float) -> float:
    u = math.log(lr / 3e-3)
    return math.nan if u > 2.5 else 2.5 + 0.02 * (math.expm1(u) - u)  # NaN: diverged, a failed trial


def lr_only(trial: optuna.Trial) -> float:
    return lr_loss(trial.suggest_float("lr", 1e-5, 1e-1, log=True))


def lr_and_two_more(trial: optuna.Trial) -> float:
    lr = trial.suggest_float("lr", 1e-5, 1e-1, log=True)
    weight_decay = trial.suggest_float("weight_decay", 0.0, 0.3)
    warmup = trial.suggest_int("warmup", 0, 2000)
    return lr_loss(lr) + 0.05 * (weight_decay - 0.1) ** 2 + 1e-6 * abs(warmup - 500)


OBJECTIVES = {"lr only": lr_only, "lr + weight_decay + warmup": lr_and_two_more}


def trial_times(make_sampler, objective, n_trials: int) -> np.ndarray:
    stamps = [time.perf_counter()]
    study = optuna.create_study(sampler=make_sampler())
    study.optimize(objective, n_trials=n_trials, callbacks=[lambda s, t: stamps.append(time.perf_counter())])
    return np.diff(stamps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=max(CHECKPOINTS))
    parser.add_argument("--samplers", nargs="+", default=list(SAMPLERS), choices=list(SAMPLERS))
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore")
    results = []
    for objective_name, objective in OBJECTIVES.items():
        for name in args.samplers:
            times = trial_times(SAMPLERS[name], objective, args.trials)
            row = {"objective": objective_name, "sampler": name}
            row.update(
                {f"ms_at_{n}": float(np.median(times[n - 10 : n]) * 1e3) for n in CHECKPOINTS if n <= args.trials}
            )
            results.append(row)
            print(row, flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "command": f"python benchmarks/sampler_overhead.py --trials {args.trials} --samplers "
            + " ".join(args.samplers),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.system()}, "
            f"Python {platform.python_version()}",
            "optuna": optuna.__version__,
            "results": results,
        }
        args.out.write_text(json.dumps(payload, indent=1))


if __name__ == "__main__":
    main()
