"""How the memory estimate that refuses oversized runs (`training_memory`) compares with what
a CPU run holds: each configuration trains 3 steps in a fresh process, and its peak resident
memory, less what it held before training, is set against the estimate.

    python benchmarks/training_memory.py
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys

CONFIGS = ((64, 2, 16), (128, 2, 64), (256, 4, 32), (512, 6, 32))  # width, depth, batch size


def measure(width: int, depth: int, batch_size: int) -> dict[str, float]:
    import torch

    from optuna_lrlaw.proxies import ProxyConfig
    from optuna_lrlaw.proxies.train import TrainConfig, checked_corpus, train_proxy, training_memory

    torch.set_num_threads(2)
    model = ProxyConfig(width=width, depth=depth, heads=max(1, width // 32))
    config = TrainConfig(model, lr=1e-3, tokens=3 * batch_size * model.seq_len, batch_size=batch_size, evals=1)
    corpus = checked_corpus(config)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    train_proxy(config, device="cpu", corpus=corpus)
    held = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
    estimate = training_memory(config)
    return {
        "width": width,
        "depth": depth,
        "batch_size": batch_size,
        "estimate_MiB": estimate / 2**20,
        "measured_MiB": held / 2**20,
        "measured_over_estimate": held / estimate,
    }


if __name__ == "__main__":
    if len(sys.argv) == 4:
        print(json.dumps(measure(*map(int, sys.argv[1:]))))
    else:
        for config in CONFIGS:
            run = subprocess.run(
                [sys.executable, __file__, *map(str, config)], capture_output=True, text=True, check=True
            )
            print(run.stdout.strip())
