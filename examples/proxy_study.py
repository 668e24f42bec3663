"""Search the learning rate of a real GPT proxy with the plugin, on the CPU in a few minutes.

    python examples/proxy_study.py [--trials 6] [--storage sqlite:///proxy_study.db]

A 98k-parameter byte-level model (width 64, depth 2) trains on the built-in corpus (the
standard library's sources) for 2^18 tokens per trial. The sampler starts from its wide
default prior (no law yet) and narrows in after every run; the pruner stops runs that
diverge. The study's scale is recorded, so a later, larger study in the same storage can
fit its law on this one with `LawFromStorage`.
"""

from __future__ import annotations

import argparse

import optuna

from optuna_lrlaw import LRLawPruner, LRLawSampler, set_study_scale
from optuna_lrlaw.proxies import ProxyConfig, proxy_objective


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=6)
    parser.add_argument("--storage", default=None, help="an Optuna storage URL; in memory by default")
    parser.add_argument("--tokens", type=int, default=2**18)
    args = parser.parse_args()

    model = ProxyConfig(width=64, depth=2, heads=4, seq_len=128, parametrization="mup", base_width=64)
    objective = proxy_objective(model, tokens=args.tokens, batch_size=16, lr_range=(1e-4, 1e-1), eval_batches=4)
    study = optuna.create_study(
        study_name="proxy-w64",
        storage=args.storage,
        load_if_exists=True,
        sampler=LRLawSampler(seed=0),
        pruner=LRLawPruner(),
    )
    set_study_scale(study, objective.scale)
    study.optimize(objective, n_trials=args.trials)
    belief = study.sampler.belief(study)
    print(f"best lr {study.best_params['lr']:.3g} (loss {study.best_value:.4f}); posterior of lr*: {belief.posterior}")


if __name__ == "__main__":
    main()
