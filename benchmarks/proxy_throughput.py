"""Training throughput of GPT proxies: tokens/s and MFU by size, dense and MoE, compiled or not.

    python benchmarks/proxy_throughput.py --preset gpu --out benchmarks/results/proxy_throughput_h100.json
    python benchmarks/proxy_throughput.py --preset cpu --out benchmarks/results/proxy_throughput_cpu.json

Each case trains with `train_proxy` itself (the trainer a study runs) on the built-in
corpus for a fixed number of steps; tokens/s leaves out the first steps, which pay for
compilation. MFU is 6 N_active + head + attention FLOPs per token (``ProxyConfig.flops_per_token``)
times tokens/s over the device's dense bf16 peak (``PEAK_FLOPS``); CPUs have no MFU.
The ``cpu`` preset also times the CPU path of the docs: a ~100k-parameter model trained
to below the corpus's unigram entropy, wall clock included.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from optuna_lrlaw.proxies import ProxyConfig, TrainConfig, builtin_corpus, train_proxy

#: (width, depth, heads, n_experts, top_k) per case; seq_len and batch by preset.
PRESETS = {
    "gpu": {
        "seq_len": 1024,
        "batch_size": 32,
        "steps": 40,
        "shapes": [
            (128, 4, 2, 0, 1),
            (256, 6, 4, 0, 1),
            (512, 8, 8, 0, 1),
            (768, 12, 12, 0, 1),
            (1024, 16, 16, 0, 1),
            (512, 8, 8, 8, 2),
            (768, 12, 12, 8, 2),
        ],
        "compile": [True, False],
    },
    "cpu": {
        "seq_len": 128,
        "batch_size": 16,
        "steps": 30,
        "shapes": [(32, 2, 2, 0, 1), (64, 2, 4, 0, 1), (128, 2, 4, 0, 1), (64, 2, 4, 4, 2)],
        "compile": [False],
    },
}


def measure(preset: dict, device: str) -> list[dict]:
    corpus = builtin_corpus()
    rows = []
    for width, depth, heads, experts, top_k in preset["shapes"]:
        for compiled in preset["compile"]:
            model = ProxyConfig(
                width=width,
                depth=depth,
                heads=heads,
                n_experts=experts,
                top_k=top_k,
                seq_len=preset["seq_len"],
                base_width=width,
            )
            tokens = preset["steps"] * preset["batch_size"] * preset["seq_len"]
            config = TrainConfig(
                model,
                lr=1e-3,
                tokens=tokens,
                batch_size=preset["batch_size"],
                evals=1,
                eval_batches=1,
                compile=compiled,
            )
            result = train_proxy(config, device=device, corpus=corpus)
            rows.append(
                {
                    "width": width,
                    "depth": depth,
                    "heads": heads,
                    "n_experts": experts,
                    "top_k": top_k,
                    "params": model.params(),
                    "active_params": model.active_params(),
                    "compiled": compiled,
                    "seq_len": preset["seq_len"],
                    "batch_size": preset["batch_size"],
                    "tokens_per_second": result.tokens_per_second,
                    "mfu": result.mfu,
                    "device": result.device,
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    return rows


def cpu_path() -> dict:
    """The docs' CPU claim: a ~100k-parameter proxy below the unigram entropy in under a minute."""
    model = ProxyConfig(width=64, depth=2, heads=4, seq_len=128)
    corpus = builtin_corpus()
    started = time.perf_counter()
    result = train_proxy(
        TrainConfig(model, lr=8e-3, tokens=2**20, batch_size=16, eval_batches=4), device="cpu", corpus=corpus
    )
    wall = time.perf_counter() - started
    counts = np.bincount(np.asarray(corpus.val), minlength=256) / len(corpus.val)
    counts = counts[counts > 0]
    return {
        "params": model.params(),
        "tokens": result.tokens,
        "wall_seconds": wall,
        "final_loss": result.final_loss,
        "unigram_entropy": float(-(counts * np.log(counts)).sum()),
        "threads": torch.get_num_threads(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="gpu")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    report = {
        "command": f"python benchmarks/proxy_throughput.py --preset {args.preset} --out {args.out}",
        "torch": torch.__version__,
        "host": platform.node(),
        "cpu_threads": torch.get_num_threads(),
        "cases": measure(PRESETS[args.preset], args.device),
    }
    if args.preset == "cpu":
        report["cpu_path"] = cpu_path()
        print(json.dumps(report["cpu_path"]))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
