"""A ready Optuna objective: train a proxy at one scale, at the learning rate the trial suggests."""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, replace

import optuna
import torch

from optuna_lrlaw.integration.study import DIVERGED_ATTR, NOISE_ATTR, SCALE_ATTRS, checked_lr_range
from optuna_lrlaw.proxies.config import ProxyConfig
from optuna_lrlaw.proxies.train import TrainConfig, checked_corpus, checked_memory, resolve_device, train_proxy
from optuna_lrlaw.science._arguments import check_writable
from optuna_lrlaw.science.scale import Scale

#: The relative sd of a proxy run's final loss between training seeds at and below its
#: optimal LR, measured at the default ladder's rungs (benchmarks/results/real_sweeps_cpu.csv:
#: 0.2% to 1.7%; four times more above the optimum, which `estimate_optimum` models itself).
SEED_NOISE = 0.01


class ProxyObjective:
    """``objective(trial)`` trains ``config`` at ``trial.suggest_float(lr_param, *lr_range, log=True)``.

    It returns the final validation loss and records on the trial what the plugin and the
    comparisons read: the run's scale (``lrlaw.params``, ``lrlaw.tokens``,
    ``lrlaw.batch_tokens``), ``lrlaw.diverged``, the training seed ``lrlaw.train_seed``, the
    seed noise ``lrlaw.noise`` (`SEED_NOISE`), and its FLOPs, tokens/s, MFU and wall time
    (`train_proxy` adds ``lrlaw.resumed_from_step`` when a checkpoint resumed it). A
    diverged run is a completed trial marked diverged (its value ``inf`` when the loss is
    not finite: Optuna would record NaN as a failure), never a crash. Build it with
    `proxy_objective`.
    """

    def __init__(self, config: TrainConfig, lr_range: tuple[float, float], lr_param: str, device: str | torch.device):
        self.lr_range = checked_lr_range(lr_range)
        # A device this machine lacks, a run that cannot fit in its memory, a corpus that is not
        # whole or too small, an unwritable checkpoint folder: refused now, not in the first trial.
        checked_memory(config, resolve_device(device))
        self.corpus_fingerprint = checked_corpus(config).fingerprint()
        if config.checkpoint_dir is not None:
            check_writable(config.checkpoint_dir, "checkpoint_dir", folder=True)
        self.config, self.lr_param, self.device = config, lr_param, device

    @property
    def scale(self) -> Scale:
        """The scale of every run of this objective: set it on the study with `set_study_scale`."""
        return self.config.scale()

    def identity(self) -> dict[str, object]:
        """What, besides the model and the LR, decides this objective's runs: the training
        settings (schedule, batch, horizon, optimizer) and the corpus's `Corpus.fingerprint`.
        Left out: the training seed (a ladder stores its own), and how often and on how many
        batches the loss is measured (``evals``, ``eval_batches``: the measurement, not the run)."""
        left_out = ("model", "lr", "seed", "corpus", "checkpoint_dir", "compile", "evals", "eval_batches")
        settings = {key: value for key, value in asdict(self.config).items() if key not in left_out}
        settings["betas"] = list(settings["betas"])  # as JSON gives it back
        return {**settings, "corpus": self.corpus_fingerprint}

    def with_seed(self, seed: int) -> ProxyObjective:
        """This objective, training at another seed (initialization and batch order)."""
        twin = copy.copy(self)
        twin.config = replace(self.config, seed=seed)
        return twin

    def __call__(self, trial: optuna.Trial) -> float:
        lr = trial.suggest_float(self.lr_param, *self.lr_range, log=True)
        result = train_proxy(replace(self.config, lr=lr), trial=trial, device=self.device)
        scale = self.scale
        for name, attr in SCALE_ATTRS.items():
            trial.set_user_attr(attr, getattr(scale, name))
        finite = math.isfinite(result.final_loss)
        trial.set_user_attr(DIVERGED_ATTR, result.diverged or not finite)
        if result.divergence_reason:
            trial.set_user_attr("lrlaw.divergence_reason", result.divergence_reason)
        trial.set_user_attr("lrlaw.train_seed", self.config.seed)
        trial.set_user_attr(NOISE_ATTR, SEED_NOISE)
        trial.set_user_attr("flops", result.flops)
        trial.set_user_attr("tokens_per_second", result.tokens_per_second)
        trial.set_user_attr("wall_seconds", result.wall_seconds)
        trial.set_user_attr("device", result.device)
        if result.mfu is not None:
            trial.set_user_attr("mfu", result.mfu)
        return result.final_loss if finite else math.inf


def proxy_objective(
    model: ProxyConfig,
    *,
    tokens: int,
    batch_size: int = 32,
    lr_range: tuple[float, float] = (1e-4, 1e-1),
    lr_param: str = "lr",
    device: str | torch.device = "auto",
    **training,
) -> ProxyObjective:
    """An Optuna objective that trains ``model`` on ``tokens`` tokens at the suggested learning rate.

    ``training`` takes any other `TrainConfig` field (``schedule``, ``weight_decay``,
    ``corpus``, ``checkpoint_dir``, ...).

    Example:
        >>> import optuna
        >>> from optuna_lrlaw import LRLawSampler, set_study_scale
        >>> objective = proxy_objective(ProxyConfig(width=32, depth=1, heads=2, seq_len=32),
        ...                             tokens=2**13, batch_size=8, evals=2, device="cpu")
        >>> study = optuna.create_study(sampler=LRLawSampler(seed=0))
        >>> set_study_scale(study, objective.scale)
        >>> study.optimize(objective, n_trials=2)
        >>> len(study.trials), study.best_value < 5.5
        (2, True)
    """
    config = TrainConfig(model, lr=lr_range[0], tokens=tokens, batch_size=batch_size, **training)
    return ProxyObjective(config, lr_range, lr_param, device)
