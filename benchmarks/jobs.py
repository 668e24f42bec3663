"""The same ladder climbed with ``--jobs 1`` and ``--jobs K``, side by side: wall time, budgets, law.

    python benchmarks/jobs.py --jobs 1,2 --out benchmarks/results/jobs_cpu.json
    python benchmarks/jobs.py --jobs 1,8 --device cuda --out $OUT/jobs_gpu.json

Each setting climbs the README's main job (`optuna-lrlaw ladder`, its defaults; ``--args``
adds options) in a fresh SQLite file, one after the other, and is checked as the tests check
many workers: every rung exactly its budget of searched runs, no LR trained twice, nothing
left running. The law's answer at the target is printed beside the time: the jobs draw other
LRs, so the answers differ as two climbs at other sampler seeds would.
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
import torch

from optuna_lrlaw.ladder.run import BRACKET_ATTR, SURPLUS_ATTR, WORKER_ATTR
from optuna_lrlaw.proxies.concurrency import usable_cores


def climb(jobs: int, device: str, extra: list[str], folder: Path) -> dict[str, object]:
    storage = f"sqlite:///{folder / f'jobs{jobs}.db'}"
    cli = [sys.executable, "-c", "from optuna_lrlaw.cli import main; main()"]  # this Python's optuna-lrlaw
    command = [*cli, "ladder", "--storage", storage, "--device", device, "--jobs", str(jobs), "--json"]
    started = time.perf_counter()
    done = subprocess.run([*command, *extra], capture_output=True, text=True, check=True)
    seconds = time.perf_counter() - started
    payload = json.loads(done.stdout.strip().splitlines()[-1])
    rungs = []
    for summary in optuna.get_all_study_summaries(storage):
        trials = optuna.load_study(study_name=summary.study_name, storage=storage).trials
        runs = [t for t in trials if t.state.is_finished() and not t.user_attrs.get(SURPLUS_ATTR)]
        searched = [t for t in runs if t.state != optuna.trial.TrialState.FAIL and not t.user_attrs.get(BRACKET_ATTR)]
        lrs = [t.params["lr"] for t in runs if t.state != optuna.trial.TrialState.FAIL]
        rungs.append(
            {
                "rung": summary.study_name,
                "searched_runs": len(searched),
                "bracketing_runs": len(lrs) - len(searched),
                "lr_twice": len(lrs) != len(set(lrs)),
                "unfinished": sum(not t.state.is_finished() for t in trials),
                "workers": len({t.user_attrs.get(WORKER_ATTR) for t in runs}),
            }
        )
    target = payload["target"]
    return {"jobs": jobs, "seconds": seconds, "rungs": rungs, "target": {k: target[k] for k in ("lr", "lo90", "hi90")}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", default="1,2", help="comma-separated job counts, climbed in turn")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--args", default="", help="further options of optuna-lrlaw ladder")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    results = []
    with tempfile.TemporaryDirectory() as folder:
        for jobs in (int(j) for j in args.jobs.split(",")):
            results.append(climb(jobs, args.device, shlex.split(args.args), Path(folder)))
            print(json.dumps(results[-1]), flush=True)
    base = results[0]["seconds"]
    payload = {
        "command": "python " + " ".join(sys.argv),
        "machine": {"cpus": usable_cores(), "python": platform.python_version()},
        "torch": torch.__version__,
        "climbs": results,
        "speedup": {str(r["jobs"]): base / r["seconds"] for r in results},
    }
    print(json.dumps(payload["speedup"]))
    if args.out:
        args.out.write_text(json.dumps(payload, indent=1))


if __name__ == "__main__":
    main()
