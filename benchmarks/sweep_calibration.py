"""How honest are single-sweep intervals? Coverage of `estimate_optimum`'s 90% interval, and what drives it.

    python benchmarks/sweep_calibration.py [--sweeps 300] [--out benchmarks/results/sweep_calibration.json]

Sweeps of 11 log-spaced LRs over a factor of 100 around a known optimum, with relative
noise of 0.05% to 0.3% and divergence 3x to 10x above the optimum, as in
``tests/synthetic.py``. Two curve families: ``symmetric`` parabolas in log LR, and
``asymmetric`` ones (high side 1x to 4x steeper, plus a cubic kick): the latter is
``tests/synthetic.py``'s own. For each, the estimator as shipped, then one change at a
time, by overriding a module constant of ``optuna_lrlaw.science.optimum``:

- ``plain parabola``: fit the parabola alone instead of the 13 marginalized shapes;
- ``all runs``: fit every finite run instead of those within 2% of the best loss;
- ``noise prior 0.01%``: a prior guess of the loss noise of 0.01% instead of 0.1% (the
  value shipped until the law's scatter prior and its calibration test were revised).

Reported: coverage of the 90% interval, the spread (sd) and mean of the error in
posterior sds.

``--acquired`` adds sweeps drawn as the ladder draws them: a prior on log eta* as a law
would give it (sd 0.3 to 1, centred one prior sd off the truth on average), a first run
at its median, then `LRLawSampler`'s acquisition (``spread``: `spread_design`, then
Thompson draws; or ``thompson`` throughout) with the belief updated after every run, for
``--trials`` runs; the rung's optimum is then estimated from its runs alone, as the law
uses it, and counted when it brackets. The last part refits the law on the 200 problems of
``tests/test_law.py``'s calibration test with each noise prior, to show what it does
to the law's coverage, and whether the measured best LR of Step Law's two largest cells
falls inside the law's 90% interval (setting (a) of ``steplaw_holdout.py``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path

import numpy as np

import optuna_lrlaw.science.optimum as optimum_module
from optuna_lrlaw import estimate_optimum
from optuna_lrlaw.science.acquisition import spread_design

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from steplaw_holdout import holdout_report  # noqa: E402
from synthetic import law_coverage  # noqa: E402

PARABOLA = {"_SKEWS": np.array([]), "_RATIOS": np.array([1.0]), "_N_SHAPES": 1}
VARIANTS = {
    "as shipped": ({}, {}),
    "plain parabola": (PARABOLA, {}),
    "all runs": ({}, {"window": 1e9}),
    "noise prior 0.01%": ({"_RELATIVE_NOISE": 1e-4}, {}),
}


@contextlib.contextmanager
def overridden(constants: dict):
    saved = {name: getattr(optimum_module, name) for name in constants}
    for name, value in constants.items():
        setattr(optimum_module, name, value)
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(optimum_module, name, value)


def draw_curve(rng: np.random.Generator, family: str):
    """A random optimum and a function giving (loss, diverged) at any LRs, with fresh noise."""
    optimum = np.exp(rng.uniform(-8, -4))
    left = rng.uniform(0.005, 0.03)
    right, cubic = (left, 0.0) if family == "symmetric" else (left * rng.uniform(1, 4), rng.uniform(0, 0.02))
    noise, cliff = rng.uniform(0.0005, 0.003), np.log(rng.uniform(3, 10))

    def run(lrs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        u = np.log(lrs / optimum)
        curve = np.where(u < 0, left * u**2, right * u**2 + cubic * u**3)
        loss = 2.5 * (1 + curve + rng.normal(0, noise, u.size))
        diverged = u > cliff
        return np.where(diverged, np.nan, loss), diverged

    return optimum, run


def draw_sweep(rng: np.random.Generator, family: str) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
    optimum, run = draw_curve(rng, family)
    lrs = optimum * np.exp(rng.uniform(-0.7, 0.7)) * np.geomspace(0.1, 10, 11)
    losses, diverged = run(lrs)
    return optimum, lrs, losses, diverged


def acquired_coverage(family: str, acquisition: str, sweeps: int, trials: int) -> dict[str, float]:
    """Coverage of the rung's own 90% interval for sweeps drawn by the sampler's acquisition."""
    rng = np.random.default_rng(1)
    hits, bracketed, spans = 0, 0, []
    for _ in range(sweeps):
        optimum, run = draw_curve(rng, family)
        prior_sd = rng.uniform(0.3, 1.0)
        prior = (np.log(optimum) + rng.normal(0, prior_sd), prior_sd)
        lrs, losses, diverged = [], [], []
        for index in range(trials):
            if index == 0:
                log_lr = prior[0]
            else:
                belief = estimate_optimum(lrs, losses, diverged=diverged, prior=prior)
                centre, sd = np.log(belief.lr), belief.log_lr_sd
                log_lr = spread_design(centre, sd, np.log(lrs)) if acquisition == "spread" else None
                if log_lr is None:
                    log_lr = float(belief.sample_log_lr(rng))
            loss, flag = run(np.array([np.exp(log_lr)]))
            lrs.append(float(np.exp(log_lr)))
            losses.append(float(loss[0]))
            diverged.append(bool(flag[0]))
        spans.append(float(np.log(max(lrs) / min(lrs))))
        try:
            estimate = estimate_optimum(lrs, losses, diverged=diverged)
        except ValueError:
            continue
        if estimate.bracketed:
            bracketed += 1
            lo, hi = estimate.interval(0.9)
            hits += lo <= optimum <= hi
    return {
        "sweeps": sweeps,
        "bracketed": bracketed / sweeps,
        "coverage90": hits / max(bracketed, 1),
        "median_span_factor": float(np.exp(np.median(spans))),
    }


def sweep_coverage(family: str, variant: str, sweeps: int) -> dict[str, float]:
    constants, options = VARIANTS[variant]
    rng = np.random.default_rng(0)
    errors, hits = [], 0
    with overridden(constants):
        for _ in range(sweeps):
            optimum, lrs, losses, diverged = draw_sweep(rng, family)
            try:
                estimate = estimate_optimum(lrs, losses, diverged=diverged, **options)
            except ValueError:
                continue
            if not estimate.bracketed:
                continue
            lo, hi = estimate.interval(0.9)
            hits += lo <= optimum <= hi
            errors.append((np.log(optimum) - estimate.log_lr_mean) / estimate.log_lr_sd)
    errors = np.array(errors)
    return {
        "sweeps": errors.size,
        "coverage90": hits / errors.size,
        "error_sd": errors.std(),
        "error_mean": errors.mean(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweeps", type=int, default=300)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--acquired", type=int, default=0, help="sweeps drawn by each acquisition rule")
    parser.add_argument("--trials", type=int, default=6, help="runs per acquired sweep")
    parser.add_argument("--acquired-only", action="store_true", help="skip the fixed-grid and law parts")
    args = parser.parse_args()
    acquired = []
    for family in ("symmetric", "asymmetric") if args.acquired else ():
        for acquisition in ("spread", "thompson"):
            row = {"family": family, "acquisition": acquisition}
            row.update(acquired_coverage(family, acquisition, args.acquired, args.trials))
            acquired.append(row)
            print(
                "acquired: " + "  ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items())
            )
    if args.acquired_only:
        if args.out:
            command = "python " + " ".join(sys.argv)
            args.out.write_text(json.dumps({"command": command, "acquired": acquired}, indent=1))
        return
    rows = []
    for family in ("symmetric", "asymmetric"):
        for variant in VARIANTS:
            row = {"family": family, "variant": variant, **sweep_coverage(family, variant, args.sweeps)}
            rows.append(row)
            print(
                f"{family:10s} {variant:17s} "
                + "  ".join(f"{k} {v:.3g}" for k, v in row.items() if k not in ("family", "variant"))
            )
    laws = {}
    for variant in ("as shipped", "noise prior 0.01%"):
        with overridden(VARIANTS[variant][0]):
            # The 200 problems of tests/test_law.py's calibration test, and Step Law's table.
            laws[variant] = coverage = law_coverage(200, seed=0)
            real = holdout_report()
        weak_a = real[(real["setting"] == "a") & (real["prior"] == "weak")]
        coverage["steplaw_a_best_inside_90"] = weak_a["best_inside_90"].tolist()
        print(f"law, {variant}: " + ", ".join(f"{k} {v}" for k, v in coverage.items()))
    if args.out:
        command = "python " + " ".join(sys.argv)
        payload = {"command": command, "sweeps": rows, "law_coverage90": laws, "acquired": acquired}
        args.out.write_text(json.dumps(payload, indent=1))


if __name__ == "__main__":
    main()
