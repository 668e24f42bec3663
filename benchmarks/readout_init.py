"""Which readout initialisation trains best once width has grown: μP's readout at m = 4.

    python benchmarks/readout_init.py --out benchmarks/results/readout_init.json

The μP proxy at width 256 from base width 64 (m = 4; depth 2, 4 heads, sequence 128,
batch 16), trained for 2^18 tokens at lr 8e-3 on the built-in corpus, two seeds. (At the
base shape 8e-3 is within 0.1% of the μP sweeps' best, 5.66e-3: 2.046 against 2.044, mean
of three seeds, docs/proxies.md.) Three readouts that all have logits x 1/m and differ only
in the stored weight's initial spread:

- ``sigma``: microsoft/mup's MuReadout, the rule (effective weight sigma/m);
- ``sigma*sqrt(m)``: rules version 1 (effective weight sigma/sqrt(m), the standard
  parametrization's readout);
- ``zero``: microsoft/mup's zero readout.

At m = 1 the first two are the same model, so only a grown width can tell them apart.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import torch

import optuna_lrlaw.proxies.model as model_module
from optuna_lrlaw.proxies import ProxyConfig, TrainConfig, train_proxy
from optuna_lrlaw.proxies.parametrization import GroupRule, group_rules

READOUTS = {"sigma": lambda m: 1.0, "sigma*sqrt(m)": math.sqrt, "zero": lambda m: 0.0}
SEEDS = (0, 1)


def with_readout_spread(spread):
    def rules(config: ProxyConfig) -> dict[str, GroupRule]:
        chosen = group_rules(config)
        return {**chosen, "output": GroupRule(spread(config.width_multiplier), 1.0, 1.0)}

    return rules


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    model = ProxyConfig(width=256, depth=2, heads=4, seq_len=128, parametrization="mup")
    losses = {}
    try:
        for name, spread in READOUTS.items():
            model_module.group_rules = with_readout_spread(spread)
            for seed in SEEDS:
                config = TrainConfig(model, lr=8e-3, tokens=2**18, batch_size=16, evals=4, eval_batches=4, seed=seed)
                losses.setdefault(name, []).append(train_proxy(config, device="cpu").final_loss)
                print(f"readout {name}, seed {seed}: validation loss {losses[name][-1]:.4f}", flush=True)
    finally:
        model_module.group_rules = group_rules
    report = {
        "command": f"python benchmarks/readout_init.py --out {args.out}",
        "torch": torch.__version__,
        "width_multiplier": model.width_multiplier,
        "final_validation_loss": losses,
        "mean_over_seeds": {name: sum(values) / len(values) for name, values in losses.items()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
