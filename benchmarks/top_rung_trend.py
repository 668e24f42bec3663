"""The error of the top-rung check that no number of replayed climbs can average away.

    python benchmarks/top_rung_trend.py --out benchmarks/results/top_rung_trend_cpu.json

`sweep_replay.py` checks the law's expected regret at the top rung against the regret its
prediction realises, over climbs replayed on the dense grids of one ladder. Every one of
those climbs shares this ladder's configuration: how far the top rung's optimum lies off
the trend of the rungs below. This script measures that part alone: the law fitted on the
lower rungs' seed-mean curves (their sweeps with the training noise averaged out, stated
noise 1% over the square root of the seeds) predicts the top rung, and its error, in sds
of its own interval, is one draw of the law's structural error.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd
from sweep_replay import Grid, top_rung_from_seed_means


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", type=Path, default=Path("benchmarks/results/real_sweeps_cpu.csv"))
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    runs = pd.read_csv(args.grid)
    grids = sorted((Grid(g) for _, g in runs.groupby("rung")), key=lambda grid: grid.scale.params)
    result = {"command": "python " + " ".join(sys.argv), **top_rung_from_seed_means(grids)}
    print(json.dumps(result))
    if args.out:
        args.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
