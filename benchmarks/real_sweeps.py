"""Dense learning-rate grids of real proxy runs at the default ladder's rungs, at several seeds.

    python benchmarks/real_sweeps.py --seeds 0,1,2,3,4,5,6,7,8 --out benchmarks/results/real_sweeps_cpu.csv
    python benchmarks/real_sweeps.py --widths 32,48,64 --seeds 0,1,2,3 --device cuda --out ...

The first command trains 3 rungs x 14 LRs x 9 seeds (378 runs; about 105 minutes on 2 cores).

Each (rung, LR, training seed) is one run of `train_proxy` exactly as `optuna-lrlaw ladder`
trains it with its defaults (``default_rungs``: depth 2, heads of 16, 10 tokens per
parameter, sequence 128, batch 32, linear decay), at LRs ``5e-4 * 2^(k/2)``: nodes 0.35
e-fold apart, a factor 90 end to end. The training seed sets the initialization and the
order of the batches, so one seed's runs share both across LRs (common random numbers), as
one ladder's runs do. Rows already in ``--out`` are skipped: the script resumes.

These grids are the real-sweep calibration set of ``benchmarks/sweep_replay.py``.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from optuna_lrlaw.ladder import default_rungs
from optuna_lrlaw.proxies import train_proxy

COLUMNS = ["rung", "width", "params", "tokens", "batch_tokens", "steps", "seed", "lr", "loss", "diverged", "seconds"]


def grid(nodes: int, start: float) -> list[float]:
    return [float(start * 2 ** (k / 2)) for k in range(nodes)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", default="32,48,64")
    parser.add_argument("--seeds", default="0,1,2,3,4,5,6,7,8")
    parser.add_argument("--nodes", type=int, default=14)
    parser.add_argument("--start", type=float, default=5e-4)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    done: set[tuple[str, int, str]] = set()
    if args.out.exists():
        with args.out.open() as f:
            done = {(row["rung"], int(row["seed"]), f"{float(row['lr']):.6g}") for row in csv.DictReader(f)}
    else:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(",".join(COLUMNS) + "\n")
    rungs = default_rungs([int(w) for w in args.widths.split(",")])
    seeds = [int(s) for s in args.seeds.split(",")]
    todo = [(r, s, lr) for r in rungs for s in seeds for lr in grid(args.nodes, args.start)]
    todo = [(r, s, lr) for r, s, lr in todo if (r.name, s, f"{lr:.6g}") not in done]
    started = time.time()
    for index, (rung, seed, lr) in enumerate(todo, start=1):
        config = replace(rung.training(lr), seed=seed)
        result = train_proxy(config, device=args.device)
        scale = config.scale()
        row = [
            rung.name,
            rung.model.width,
            scale.params,
            scale.tokens,
            scale.batch_tokens,
            config.steps,
            seed,
            f"{lr:.6g}",
            repr(float(result.final_loss)),
            int(result.diverged or not np.isfinite(result.final_loss)),
            f"{result.wall_seconds:.2f}",
        ]
        with args.out.open("a") as f:
            f.write(",".join(str(v) for v in row) + "\n")
        elapsed = time.time() - started
        print(
            f"[{index}/{len(todo)}] {rung.name} seed {seed} lr {lr:.3g}: loss {result.final_loss:.4f} "
            f"({result.wall_seconds:.1f} s; {elapsed / index * (len(todo) - index) / 60:.1f} min left)",
            file=sys.stderr,
            flush=True,
        )


if __name__ == "__main__":
    main()
