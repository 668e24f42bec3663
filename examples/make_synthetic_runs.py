"""Write examples/data/synthetic_runs.csv: LR sweeps drawn from a known law, for trying the CLI.

The true law is lr* = 0.5 * N^-0.35 * D^-0.05 (so lr* ~ 6.3e-4 at N=1e7, D=1e9); each
sweep's loss is a skewed parabola in log LR (steeper above the optimum), with 0.2% noise,
and runs more than 4x above the optimum diverge (loss NaN, diverged=true). The ``noise``
column states that 0.2%, as a trainer that measured its seed spread would.

    python examples/make_synthetic_runs.py
"""

from pathlib import Path

import numpy as np
import pandas as pd


def true_optimum(params: float, tokens: float) -> float:
    return 0.5 * params**-0.35 * tokens**-0.05


def main() -> None:
    rng = np.random.default_rng(20261122)
    rows = []
    for params in (2e6, 5e6, 1.2e7, 3e7):
        for tokens in (4e8, 1.6e9):
            best = true_optimum(params, tokens)
            floor = 1.5 + 30 * params**-0.2 + 40 * tokens**-0.15
            for lr in np.geomspace(1e-4, 1e-1, 11):
                u = np.log(lr / best)
                curve = 0.03 * 2 * (np.expm1(1.5 * u) - 1.5 * u) / 1.5**2
                diverged = u > np.log(4.0)
                loss = np.nan if diverged else floor * (1 + curve + rng.normal(0, 0.002))
                rows.append(
                    {"params": params, "tokens": tokens, "lr": lr, "loss": loss, "diverged": diverged, "noise": 0.002}
                )
    out = Path(__file__).parent / "data" / "synthetic_runs.csv"
    out.parent.mkdir(exist_ok=True)
    pd.DataFrame(rows).to_csv(out, index=False, float_format="%.6g")
    print(f"wrote {len(rows)} runs to {out}")


if __name__ == "__main__":
    main()
