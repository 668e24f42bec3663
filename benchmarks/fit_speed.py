"""How long `fit_law` takes on 10,000 runs over 20 scales.

    python benchmarks/fit_speed.py [--distinct]

Each scale is a sweep of 500 runs: 25 learning rates x 20 seeds by default, or 500
distinct random LRs with --distinct (the worst case: nothing pools). Prints the median of
5 fits after one warm-up, and writes benchmarks/results/fit_speed.json.
"""

from __future__ import annotations

import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from optuna_lrlaw import fit_law


def make_runs(distinct: bool, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frames = []
    for n in np.geomspace(1e7, 1e9, 5):
        for d in np.geomspace(1e9, 1e11, 4):
            optimum = 3e-3 * (n / 1e7) ** -0.5 * (d / 1e9) ** 0.1
            lrs = (
                np.exp(rng.uniform(-3, 3, 500)) * optimum
                if distinct
                else np.repeat(optimum * np.geomspace(0.05, 20, 25), 20)
            )
            u = np.log(lrs / optimum)
            loss = 2.5 * (1 + np.where(u < 0, 0.01, 0.03) * u**2 + rng.normal(0, 2e-3, lrs.size))
            frames.append(pd.DataFrame({"params": n, "tokens": d, "lr": lrs, "loss": loss}))
    return pd.concat(frames, ignore_index=True)


def main() -> None:
    distinct = "--distinct" in sys.argv
    runs = make_runs(distinct)
    fit_law(runs)
    times = []
    for _ in range(5):
        start = time.perf_counter()
        fit_law(runs)
        times.append(time.perf_counter() - start)
    result = {
        "runs": len(runs),
        "scales": 20,
        "lrs": "500 distinct per scale" if distinct else "25 LRs x 20 seeds per scale",
        "median_seconds": statistics.median(times),
        "all_seconds": times,
        "machine": f"{platform.processor() or platform.machine()}, {platform.python_version()}",
        "command": "python benchmarks/fit_speed.py" + (" --distinct" if distinct else ""),
    }
    out = Path(__file__).parent / "results" / f"fit_speed{'_distinct' if distinct else ''}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"fit_law on {len(runs)} runs over 20 scales ({result['lrs']}): median {result['median_seconds']:.3f} s")


if __name__ == "__main__":
    main()
