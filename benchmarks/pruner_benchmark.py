"""How much compute LRLawPruner saves on an LR search, and what it costs in final loss.

    python benchmarks/pruner_benchmark.py [--seeds 20] [--trials 30] [--out benchmarks/results/pruner.json]

Until real proxy curves exist, the runs follow a documented synthetic model of training
under a warmup-cosine schedule (`loss_curve`). For each seed, the same 30 learning rates
(a seeded RandomSampler over [1e-4, 1e-1], log) are trained with no pruner, with Optuna's
MedianPruner, and with LRLawPruner. Reported: the fraction of training steps run, the best
final loss's regret against the unpruned search, and whether the eventually best trial (the
best of the unpruned search) was pruned.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import optuna
import pandas as pd

from optuna_lrlaw import LRLawPruner

STEPS = 200
REPORT_EVERY = 10
LR_RANGE = (1e-4, 1e-1)


def lr_multiplier(step: np.ndarray, warmup: int = 10, floor: float = 0.1) -> np.ndarray:
    """Linear warmup, then cosine decay to ``floor`` of the peak LR at the last step."""
    progress = np.clip((step - warmup) / (STEPS - warmup), 0.0, 1.0)
    cosine = floor + (1 - floor) * 0.5 * (1 + np.cos(np.pi * progress))
    return np.where(step < warmup, (step + 1) / warmup, cosine)


def loss_curve(lr: float, seed: int) -> np.ndarray:
    """Validation loss at steps REPORT_EVERY, 2 REPORT_EVERY, ..., STEPS of one run.

    ``L(t) = L_inf + A (eta S(t) / eta_0)^-alpha + B (eta m(t) / eta_0) + noise``: S(t) is the
    area under the LR schedule m so far (progress grows with the LR: high LRs look better
    early), and the second term is the LR-driven noise floor, which shrinks as the LR decays
    (high LRs pay for it at the end). Above ``eta_div`` the run diverges: the loss climbs
    back to its initial value of about 10 from a random step on. Constants: L_inf = 2,
    A = 0.5, alpha = 0.5, B = 0.25, eta_0 = 1e-3, eta_div = 3e-2, noise sd 0.004: the best final
    loss is near eta = 5e-3, and runs above it look worse than lower LRs until the LR decays.
    """
    rng = np.random.default_rng([seed, int(lr * 1e12)])
    steps = np.arange(STEPS)
    area = np.cumsum(lr_multiplier(steps)) / STEPS
    loss = 2.0 + 0.5 * (lr * area / 1e-3) ** -0.5 + 0.25 * lr * lr_multiplier(steps) / 1e-3
    if lr > 3e-2:
        start = rng.integers(20, 120)
        loss[start:] = np.minimum(loss[start:] * np.exp(0.05 * np.arange(STEPS - start)), 10.0)
    loss = loss + rng.normal(0, 0.004, STEPS)
    return loss[REPORT_EVERY - 1 :: REPORT_EVERY]


def search(pruner: optuna.pruners.BasePruner, seed: int, trials: int) -> pd.DataFrame:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed), pruner=pruner)

    def objective(trial: optuna.Trial) -> float:
        lr = trial.suggest_float("lr", *LR_RANGE, log=True)
        curve = loss_curve(lr, seed)
        for i, value in enumerate(curve):
            trial.report(float(value), (i + 1) * REPORT_EVERY)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return float(curve[-1])

    study.optimize(objective, n_trials=trials)
    return pd.DataFrame(
        {
            "lr": [t.params["lr"] for t in study.trials],
            "pruned": [t.state == optuna.trial.TrialState.PRUNED for t in study.trials],
            "steps": [max(t.intermediate_values) for t in study.trials],
            "value": [t.value if t.value is not None else math.nan for t in study.trials],
        }
    )


def benchmark(seeds: int, trials: int) -> pd.DataFrame:
    pruners = {
        "none": lambda: optuna.pruners.NopPruner(),
        "MedianPruner": lambda: optuna.pruners.MedianPruner(),
        "LRLawPruner": lambda: LRLawPruner(),
    }
    rows = []
    for seed in range(seeds):
        unpruned = search(optuna.pruners.NopPruner(), seed, trials)
        winner = int(np.nanargmin(unpruned["value"]))
        best_unpruned = unpruned["value"].min()
        for name, make in pruners.items():
            runs = unpruned if name == "none" else search(make(), seed, trials)
            rows.append(
                {
                    "pruner": name,
                    "seed": seed,
                    "steps_fraction": runs["steps"].sum() / (STEPS * trials),
                    "regret": runs["value"].min() / best_unpruned - 1,
                    "winner_pruned": bool(runs["pruned"].iloc[winner]),
                }
            )
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    runs = benchmark(args.seeds, args.trials)
    summary = runs.groupby("pruner", sort=False).agg(
        steps_run=("steps_fraction", "mean"),
        compute_saved=("steps_fraction", lambda f: 1 - f.mean()),
        median_regret=("regret", "median"),
        max_regret=("regret", "max"),
        seeds_where_winner_pruned=("winner_pruned", "sum"),
    )
    print(summary.to_string(float_format=lambda v: f"{v:.4g}"))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "command": f"python benchmarks/pruner_benchmark.py --seeds {args.seeds} --trials {args.trials}",
            "optuna": optuna.__version__,
            "summary": summary.reset_index().to_dict(orient="records"),
        }
        args.out.write_text(json.dumps(payload, indent=1))


if __name__ == "__main__":
    main()
