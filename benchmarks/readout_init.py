"""Why μP's readout starts at sigma x sqrt(m): the cost of a small or zero readout at the base shape.

    python benchmarks/readout_init.py --out benchmarks/results/readout_init.json

The base model (width 64, depth 2, sequence 128, batch 16) trained for 2^18 tokens at
lr 8e-3 on the built-in corpus, with the readout initialised at sigma (what every
parametrization uses at the base shape), sigma/10, sigma/100 and zero. Only the
readout's initialisation differs: the script swaps the output group's rule.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

import optuna_lrlaw.proxies.model as model_module
from optuna_lrlaw.proxies import ProxyConfig, TrainConfig, train_proxy
from optuna_lrlaw.proxies.parametrization import GroupRule, group_rules

SCALES = {"sigma": 1.0, "sigma/10": 0.1, "sigma/100": 0.01, "zero": 0.0}


def with_readout_scale(scale: float):
    def rules(config: ProxyConfig) -> dict[str, GroupRule]:
        chosen = group_rules(config)
        output = chosen["output"]
        return {**chosen, "output": GroupRule(scale * output.init_std, output.lr, output.weight_decay)}

    return rules


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    model = ProxyConfig(width=64, depth=2, heads=4, seq_len=128, parametrization="mup")
    config = TrainConfig(model, lr=8e-3, tokens=2**18, batch_size=16, evals=4, eval_batches=4)
    losses = {}
    for name, scale in SCALES.items():
        model_module.group_rules = with_readout_scale(scale)
        losses[name] = train_proxy(config, device="cpu").final_loss
        print(f"readout init {name}: validation loss {losses[name]:.4f}", flush=True)
    model_module.group_rules = group_rules
    report = {
        "command": f"python benchmarks/readout_init.py --out {args.out}",
        "torch": torch.__version__,
        "final_validation_loss": losses,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
