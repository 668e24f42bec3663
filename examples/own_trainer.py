"""Climb a scale-up ladder with your own training code: three sizes of a small byte-level MLP
language model, written here as a user would write it, not with optuna-lrlaw's proxies.

    python examples/own_trainer.py [--storage sqlite:///own_trainer.db] [--hidden 32 64 128]
                                   [--tokens-per-param 8] [--trials 6]

Each rung is a `TrainerRung`: the model's scale (parameters, tokens) and a ``train(lr, trial)``
that trains one run and returns its validation loss. `run_ladder` does the rest as for the
built-in proxies: one LR search per rung, each starting from the law of the rungs below,
pruning, bracketing, everything stored (rerun to resume), and the law's prediction for a
larger model at the end. About three minutes on 2 CPU cores (2 min 45 s measured); a rerun
reads everything back in seconds.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import optuna
import torch
import torch.nn.functional as F
from torch import nn

from optuna_lrlaw import Scale
from optuna_lrlaw.ladder import TrainerRung, run_ladder

CONTEXT, EMBED, BATCH = 8, 16, 64
TEXT = b"".join(path.read_bytes() for path in sorted(Path(optuna.__file__).parent.rglob("*.py")))
SPLIT = int(0.95 * len(TEXT))
DATA = torch.frombuffer(bytearray(TEXT), dtype=torch.uint8).long()


class MLPLanguageModel(nn.Module):
    """Predicts the next byte from the previous CONTEXT bytes (Bengio et al. 2003, in bytes)."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(256, EMBED)
        self.body = nn.Sequential(nn.Linear(CONTEXT * EMBED, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU())
        self.head = nn.Linear(hidden, 256)

    def forward(self, context: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(self.embed(context).flatten(1)))


def params(hidden: int) -> int:
    """Non-embedding parameters, the N of the law."""
    return CONTEXT * EMBED * hidden + hidden * hidden + hidden * 256


def batch(generator: torch.Generator, start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor]:
    at = torch.randint(start, stop - CONTEXT - 1, (BATCH,), generator=generator)
    windows = torch.stack([DATA[i : i + CONTEXT + 1] for i in at.tolist()])
    return windows[:, :-1], windows[:, -1]


def make_train(hidden: int, tokens: int):
    """The training function of one size: AdamW, 5% warmup, linear decay, the loss on held-out bytes."""

    def train(lr: float, trial: optuna.Trial) -> float:
        torch.manual_seed(0)
        model = MLPLanguageModel(hidden)
        optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.1)
        steps = tokens // BATCH
        warmup = max(1, steps // 20)
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda s: min((s + 1) / warmup, max(0.0, (steps - s) / (steps - warmup)))
        )
        data = torch.Generator().manual_seed(1)
        for step in range(steps):
            context, target = batch(data, 0, SPLIT)
            loss = F.cross_entropy(model(context), target)
            if not math.isfinite(loss.item()):
                return math.nan  # diverged: the ladder reads a non-finite loss as such
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            if (step + 1) % (steps // 4) == 0:
                trial.report(validation_loss(model), step)
                if trial.should_prune():
                    raise optuna.TrialPruned()
        return validation_loss(model)

    return train


@torch.no_grad()
def validation_loss(model: nn.Module) -> float:
    generator = torch.Generator().manual_seed(2)
    losses = [F.cross_entropy(model(x), y).item() for x, y in (batch(generator, SPLIT, len(DATA)) for _ in range(16))]
    return sum(losses) / len(losses)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--storage", default="sqlite:///own_trainer.db")
    parser.add_argument("--hidden", type=int, nargs="+", default=[32, 64, 128], help="hidden widths of the rungs")
    parser.add_argument("--tokens-per-param", type=float, default=8.0)
    parser.add_argument("--trials", type=int, default=6, help="the most trials a rung runs")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    torch.set_num_threads(2)
    rungs = []
    for hidden in args.hidden:
        n = params(hidden)
        tokens = int(args.tokens_per_param * n)  # the same tokens per parameter at every size
        rungs.append(TrainerRung(f"mlp-h{hidden}", Scale(params=n, tokens=tokens), make_train(hidden, tokens)))
    result = run_ladder(rungs, storage=args.storage, name="own-trainer", trials=args.trials, lr_range=(1e-4, 3e-1))
    print(result.rungs[["rung", "trials", "best_lr", "best_loss", "lr_star", "lr_lo", "lr_hi"]].to_string(index=False))
    if result.law is None:
        print("no rung's sweep brackets its optimum yet: rerun with more --trials to extend it")
        return
    target = Scale(params=params(512), tokens=int(args.tokens_per_param * params(512)))
    prediction = result.predict(target)
    print(f"hidden 512 ({target.params:.3g} parameters): {prediction}; recommended {prediction.recommend().lr:.3g}")


if __name__ == "__main__":
    main()
