"""Training a proxy: one learning rate, one run, one result, robust enough to run inside a study.

`train_proxy` is a plain AdamW loop in the nanoGPT mould. What it adds is what a learning
rate search needs: the validation curve reported to an Optuna trial (and pruning
honoured), divergence ending the run as a result rather than an exception, checkpoints
that let a killed run resume exactly, and the compute of the run in FLOPs and seconds.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from optuna_lrlaw.proxies.config import ProxyConfig
from optuna_lrlaw.proxies.data import Corpus, builtin_corpus_for, open_corpus
from optuna_lrlaw.proxies.model import build_model, configure_optimizer
from optuna_lrlaw.proxies.parametrization import model_identity
from optuna_lrlaw.proxies.schedule import SCHEDULES, lr_factor, stable_steps
from optuna_lrlaw.science.scale import Scale
from optuna_lrlaw.science.training_curve import divergence

#: Dense bf16 tensor-core peak FLOP/s by device name, for MFU (NVIDIA data sheets, without sparsity).
PEAK_FLOPS: dict[str, float] = {
    "H100 SXM": 989.4e12,
    "H100 NVL": 835.5e12,
    "H100 PCIe": 756.0e12,
    "H100": 989.4e12,
    "H200": 989.4e12,
    "A100": 312.0e12,
    "L4": 121.0e12,
}
#: Steps left out of the throughput figure: the first ones pay for compilation and allocator warm-up.
_TIMED_AFTER = 3
#: How often (in steps) the training loss is brought to the host and checked; each check waits for the GPU.
_CHECK_EVERY = 16


@dataclass(frozen=True)
class TrainConfig:
    """One proxy training run: the model, its peak learning rate, and how long and how it trains.

    ``tokens`` is the training budget D; the run takes ``tokens // (batch_size * seq_len)``
    optimizer steps. ``corpus`` is a prepared corpus (``optuna-lrlaw data prepare``), or
    None for the built-in one. ``checkpoint_dir`` enables resuming: the run's checkpoint
    is named by a hash of this config, so a retried trial finds it.

    Example:
        >>> config = TrainConfig(ProxyConfig(width=64, depth=2, heads=4, seq_len=128), lr=3e-3, tokens=2**20)
        >>> config.steps, config.scale()
        (256, Scale(params=98624.0, tokens=1048576.0, batch_tokens=4096.0, active_params=None))
    """

    model: ProxyConfig
    lr: float
    tokens: int
    batch_size: int = 32
    schedule: str = "linear"
    warmup_fraction: float = 0.05
    cooldown_fraction: float = 0.2
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.95)
    grad_clip: float = 1.0
    balance_loss_weight: float = 0.01
    seed: int = 0
    evals: int = 10
    eval_batches: int = 8
    corpus: str | None = None
    checkpoint_dir: str | None = None
    compile: bool | None = None

    def __post_init__(self) -> None:
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"TrainConfig.lr must be finite and positive, got {self.lr!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"TrainConfig.schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        for name in ("warmup_fraction", "cooldown_fraction"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"TrainConfig.{name} must lie in [0, 1), got {getattr(self, name)!r}")
        for name in ("batch_size", "evals", "eval_batches"):
            if getattr(self, name) < 1:
                raise ValueError(f"TrainConfig.{name} must be at least 1, got {getattr(self, name)!r}")
        if self.steps < 1:
            raise ValueError(f"TrainConfig.tokens={self.tokens} is less than one batch of {self.batch_tokens} tokens")

    @property
    def batch_tokens(self) -> int:
        return self.batch_size * self.model.seq_len

    @property
    def steps(self) -> int:
        return self.tokens // self.batch_tokens

    @property
    def warmup_steps(self) -> int:
        return int(round(self.warmup_fraction * self.steps))

    def scale(self) -> Scale:
        """The run's coordinates for a learning-rate law: N, D, B (and active N for MoE)."""
        active = self.model.active_params() if self.model.is_moe else None
        return Scale(self.model.params(), self.steps * self.batch_tokens, self.batch_tokens, active)

    def fingerprint(self) -> str:
        """A short hash of everything that determines the run's result, the version of the
        parametrization's rules included (a checkpoint from other rules is another model)."""
        settings = {key: value for key, value in asdict(self).items() if key not in ("checkpoint_dir", "compile")}
        settings["model"] = model_identity(self.model)
        return hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class ProxyResult:
    """What one run produced: its final validation loss, its cost and its curves.

    ``curve`` has one row per evaluation (step, tokens, lr, train_loss, val_loss);
    ``stable_losses`` the evaluations inside a WSD run's stable phase (tokens, val_loss),
    points of a loss-versus-data curve from a single run. A diverged run's
    ``final_loss`` is its loss before training, the loss of a model that learned nothing.
    ``resumed_from_step`` is the step its checkpoint brought it back to (0: a fresh start).
    """

    final_loss: float
    diverged: bool
    divergence_reason: str | None
    steps: int
    tokens: int
    flops: float
    tokens_per_second: float
    mfu: float | None
    wall_seconds: float
    epochs: float
    device: str
    curve: pd.DataFrame = field(repr=False)
    stable_losses: pd.DataFrame = field(repr=False)
    resumed_from_step: int = 0


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` is the first CUDA GPU when there is one, else the CPU; a device this
    machine does not have is refused before anything trains."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"unknown device {device!r}: use auto, cpu, cuda or cuda:N") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r}: this machine has no CUDA GPU (torch {torch.__version__}); use cpu, auto")
    if resolved.type == "cuda" and resolved.index is not None and resolved.index >= torch.cuda.device_count():
        raise ValueError(f"device {device!r}: this machine has {torch.cuda.device_count()} CUDA GPU(s)")
    if resolved.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"device {device!r}: optuna-lrlaw trains on cpu or cuda (or mps)")
    return resolved


def peak_flops(device: torch.device) -> float | None:
    """The bf16 peak of a known GPU, or None (CPUs and unknown GPUs get no MFU)."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for key, peak in PEAK_FLOPS.items() if key in name), None)


def _prepare_device(device: torch.device) -> contextlib.AbstractContextManager:
    """TF32 matmuls and a bf16 autocast context on CUDA; nothing on the CPU."""
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@dataclass
class _Progress:
    """Everything a checkpoint must restore besides the model and the optimizer."""

    step: int = 0
    rows: list[dict[str, float]] = field(default_factory=list)
    train_losses: list[float] = field(default_factory=list)
    timed_seconds: float = 0.0
    timed_steps: int = 0
    wall_seconds: float = 0.0
    diverged: str | None = None


def checked_corpus(config: TrainConfig, corpus: Corpus | None = None) -> Corpus:
    """``corpus``, or the one ``config`` names, after checking it fits the model and the budget."""
    if corpus is None:
        corpus = (
            builtin_corpus_for(config.steps * config.batch_tokens)
            if config.corpus is None
            else open_corpus(config.corpus)
        )
    if corpus.vocab_size > config.model.vocab_size:
        raise ValueError(
            f"the corpus has {corpus.vocab_size} tokens but the model's vocab_size is {config.model.vocab_size}"
        )
    corpus.check_fits(config.model.seq_len)
    epochs = config.steps * config.batch_tokens / len(corpus.train)
    if epochs > 1:
        warnings.warn(
            f"this run reads {epochs:.2f} epochs of the training split ({len(corpus.train):,} tokens); "
            "repeated data flatters small models",
            stacklevel=3,
        )
    return corpus


def training_memory(config: TrainConfig) -> int:
    """About how many bytes training ``config`` holds at once: fp32 weights, gradients and
    AdamW's two moments (16 bytes a parameter, embeddings and head included), and the
    activations kept for the backward pass (per token: each layer's inputs, attention and
    MLP intermediates; the logits three times over). It errs low, so it refuses only runs
    that are far too large: on a CPU, the resident memory of 3 training steps rose by 1.5x
    to 3.7x this at widths 64 to 512 (`python benchmarks/training_memory.py`; allocators
    keep what they freed)."""
    model = config.model
    experts = max(1, model.top_k) if model.is_moe else 1
    all_params = model.params() + (2 * model.padded_vocab + model.seq_len) * model.width
    per_layer = 10 * model.width + 2 * experts * model.mlp_hidden
    per_token = model.depth * per_layer + 3 * model.padded_vocab
    return 16 * all_params + 4 * config.batch_tokens * per_token


def device_memory(device: torch.device) -> int:
    """The memory of ``device`` in bytes: a GPU's own, or the host's physical memory for the CPU."""
    if device.type == "cuda":
        return int(torch.cuda.get_device_properties(device).total_memory)
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


def checked_memory(config: TrainConfig, device: torch.device) -> None:
    """Refuse a run that cannot fit in ``device``'s memory, before anything trains."""
    needed, available = training_memory(config), device_memory(device)
    if needed > available:
        model = config.model
        raise ValueError(
            f"width {model.width}, depth {model.depth}, batch {config.batch_size} x {model.seq_len} tokens needs about "
            f"{needed / 2**30:,.1f} GiB to train, more than the {available / 2**30:,.1f} GiB of {device.type}: "
            "lower the width, depth, batch size or sequence length"
        )


def _eval_steps(config: TrainConfig) -> set[int]:
    """Steps before which the validation loss is measured: evenly spaced, the first and the last included."""
    return {int(round(k * config.steps / config.evals)) for k in range(config.evals + 1)}


def train_proxy(
    config: TrainConfig,
    *,
    trial: optuna.Trial | None = None,
    device: str | torch.device = "auto",
    corpus: Corpus | None = None,
) -> ProxyResult:
    """Train the proxy of ``config`` at its learning rate and return its final validation loss and costs.

    With a ``trial``, every validation loss is reported (``trial.report(loss, step)``) and
    ``trial.should_prune()`` is honoured by raising `optuna.TrialPruned`; a run resumed from
    its checkpoint reports the curve so far and sets ``lrlaw.resumed_from_step``. A run whose
    training loss is not finite or climbs back above its starting value, or whose
    validation curve diverges (`optuna_lrlaw.science.training_curve.divergence`), stops
    early with ``diverged=True``. ``corpus`` overrides ``config.corpus`` with an opened one.

    Example:
        >>> model = ProxyConfig(width=32, depth=1, heads=2, seq_len=32)
        >>> result = train_proxy(TrainConfig(model, lr=1e-2, tokens=2**14, batch_size=8, evals=2), device="cpu")
        >>> result.steps, bool(result.final_loss < result.curve["val_loss"].iloc[0])
        (64, True)
    """
    run = _Run(config, resolve_device(device), checked_corpus(config, corpus), trial)
    try:
        run.train()
    finally:
        if run.checkpoint is not None and (run.progress.step >= config.steps or run.progress.diverged):
            run.checkpoint.unlink(missing_ok=True)
    return run.result()


class _Run:
    """The state of one training run, and the loop that advances it."""

    def __init__(self, config: TrainConfig, device: torch.device, corpus: Corpus, trial) -> None:
        self.config, self.device, self.corpus, self.trial = config, device, corpus, trial
        self.model, self.forward = _model_for(config, device)
        self.optimizer = configure_optimizer(
            self.model, config.model, config.lr, config.weight_decay, betas=config.betas, fused=device.type == "cuda"
        )
        self.checkpoint = Path(config.checkpoint_dir) / f"{config.fingerprint()}.pt" if config.checkpoint_dir else None
        self.progress = self._resume()
        self.resumed_from_step = self.progress.step
        self.autocast = _prepare_device(device)
        windows = corpus.fixed_windows("val", config.eval_batches * config.batch_size, config.model.seq_len)
        self.val_windows = torch.from_numpy(windows).to(device)
        self.eval_steps = _eval_steps(config)

    def train(self) -> None:
        """Train from the current step to the end, or until the run diverges."""
        config, progress = self.config, self.progress
        pending: list[torch.Tensor] = []
        started = time.perf_counter() - progress.wall_seconds
        first_step = progress.step
        # Throughput is timed over windows of steps between the points where the host waits
        # for the device anyway (reading the losses back), never with a wait of its own: a
        # window that holds an evaluation or a checkpoint, or the first steps (compilation,
        # allocator warm-up), is not timed.
        window_start, window_step = time.perf_counter(), progress.step
        while progress.diverged is None:
            step = progress.step
            if step in self.eval_steps and (not progress.rows or progress.rows[-1]["step"] != step):
                self._evaluate(step)
                if self.checkpoint is not None and 0 < step < config.steps and progress.diverged is None:
                    progress.wall_seconds = time.perf_counter() - started
                    self._save()
                window_start, window_step = time.perf_counter(), step
            if step >= config.steps or progress.diverged is not None:
                break
            pending.append(self._step(step))
            progress.step = step + 1
            warmed_up = progress.step == first_step + _TIMED_AFTER  # the timed windows start here
            if len(pending) >= _CHECK_EVERY or progress.step in self.eval_steps or warmed_up:
                progress.train_losses.extend(torch.stack(pending).float().cpu().tolist())  # waits for the device
                pending.clear()
                now = time.perf_counter()
                if window_step >= first_step + _TIMED_AFTER:
                    progress.timed_seconds += now - window_start
                    progress.timed_steps += progress.step - window_step
                window_start, window_step = now, progress.step
                progress.diverged = _training_divergence(progress.train_losses)
        progress.wall_seconds = time.perf_counter() - started

    def _lr(self, step: int) -> float:
        config = self.config
        schedule = {"schedule": config.schedule, "warmup_steps": config.warmup_steps}
        return config.lr * lr_factor(step, config.steps, cooldown_fraction=config.cooldown_fraction, **schedule)

    def _step(self, step: int) -> torch.Tensor:
        """One optimizer step on a batch drawn from (seed, step), so a resumed run sees the same data."""
        config = self.config
        for group in self.optimizer.param_groups:
            group["lr"] = group["lr_multiplier"] * self._lr(step)
        rng = np.random.default_rng([config.seed, step])
        batch = torch.from_numpy(self.corpus.sample("train", config.batch_size, config.model.seq_len, rng))
        if self.device.type == "cuda":
            # From pinned memory the copy is asynchronous: the host draws the next batches
            # while the GPU trains on this one (it waits for the GPU only every _CHECK_EVERY steps).
            batch = batch.pin_memory()
        batch = batch.to(self.device, non_blocking=True)
        with self.autocast:
            logits, balance = self.forward(batch[:, :-1], return_balance_loss=True)
            loss = F.cross_entropy(logits.float().flatten(0, 1), batch[:, 1:].flatten())
            objective = loss + config.balance_loss_weight * balance if config.model.is_moe else loss
        objective.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), config.grad_clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return loss.detach()

    def _evaluate(self, step: int) -> None:
        """Measure the validation loss, record it, report it to the trial and honour pruning."""
        self.forward.eval()
        total = 0.0
        with torch.no_grad(), self.autocast:
            for batch in self.val_windows.split(self.config.batch_size):
                logits = self.forward(batch[:, :-1])
                total += F.cross_entropy(logits.float().flatten(0, 1), batch[:, 1:].flatten(), reduction="sum").item()
        self.forward.train()
        val_loss = total / (self.val_windows.shape[0] * (self.val_windows.shape[1] - 1))
        progress, config = self.progress, self.config
        recent = progress.train_losses[-_CHECK_EVERY:]
        progress.rows.append(
            {
                "step": step,
                "tokens": step * config.batch_tokens,
                "lr": self._lr(max(step - 1, 0)),
                "train_loss": float(np.mean(recent)) if recent else math.nan,
                "val_loss": val_loss,
            }
        )
        progress.diverged = progress.diverged or divergence([row["val_loss"] for row in progress.rows])
        if self.trial is not None and math.isfinite(val_loss):
            self.trial.report(val_loss, step)
            if progress.diverged is None and step < config.steps and self.trial.should_prune():
                if self.checkpoint is not None:
                    self.checkpoint.unlink(missing_ok=True)
                raise optuna.TrialPruned(f"pruned at step {step} with validation loss {val_loss:.4f}")

    def _save(self) -> None:
        """Write the checkpoint atomically: a run killed while saving keeps its previous
        checkpoint, and a write that fails (a full disk) leaves no partial file behind."""
        self.checkpoint.parent.mkdir(parents=True, exist_ok=True)
        scratch = self.checkpoint.with_suffix(".tmp")
        state = {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict()}
        try:
            # Through a Python file, so that a full disk surfaces as OSError(ENOSPC) (given a
            # path, torch's own writer reports it as an unexplained RuntimeError).
            with open(scratch, "wb") as file:
                torch.save({**state, "progress": asdict(self.progress)}, file)
        except BaseException:
            scratch.unlink(missing_ok=True)
            raise
        os.replace(scratch, self.checkpoint)

    def _resume(self) -> _Progress:
        """The progress saved in the checkpoint (model and optimizer restored in place), or a fresh start."""
        if self.checkpoint is None or not self.checkpoint.exists():
            return _Progress()
        saved = torch.load(self.checkpoint, map_location=self.device, weights_only=True)
        self.model.load_state_dict(saved["model"])
        self.optimizer.load_state_dict(saved["optimizer"])
        progress = _Progress(**saved["progress"])
        if self.trial is not None:  # a retried trial is a new trial: give it the curve so far
            self.trial.set_user_attr("lrlaw.resumed_from_step", progress.step)
            for row in progress.rows:
                self.trial.report(row["val_loss"], row["step"])
        return progress

    def result(self) -> ProxyResult:
        config, progress, device = self.config, self.progress, self.device
        curve = pd.DataFrame(progress.rows, columns=["step", "tokens", "lr", "train_loss", "val_loss"])
        tokens = progress.step * config.batch_tokens
        timed_tokens = progress.timed_steps * config.batch_tokens
        throughput = timed_tokens / progress.timed_seconds if progress.timed_seconds else 0.0
        peak = peak_flops(device)
        flops_per_token = config.model.flops_per_token()
        stable_end = stable_steps(config.steps, config.warmup_steps, config.cooldown_fraction)
        in_stable_phase = (curve["step"] > 0) & (curve["step"] <= stable_end) & (config.schedule == "wsd")
        final = curve["val_loss"].iloc[0] if progress.diverged else curve["val_loss"].iloc[-1]
        return ProxyResult(
            final_loss=float(final),
            diverged=progress.diverged is not None,
            divergence_reason=progress.diverged,
            steps=progress.step,
            tokens=tokens,
            flops=float(flops_per_token * tokens),
            tokens_per_second=throughput,
            mfu=flops_per_token * throughput / peak if peak else None,
            wall_seconds=progress.wall_seconds,
            epochs=tokens / len(self.corpus.train),
            device=torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
            curve=curve,
            stable_losses=curve.loc[in_stable_phase, ["tokens", "val_loss"]].reset_index(drop=True),
            resumed_from_step=self.resumed_from_step,
        )


#: torch.compile on a GPU (issue "Many trials at once on one GPU", one H200): dense proxies of
#: 25M and 85M parameters trained 1.68x and 1.53x the eager tokens/s, at 20% to 27% MFU eager;
#: compiling a new shape took 10 to 45 s; MoE proxies trained slower compiled (0.8x); a width-64
#: rung run took 22.9 s compiled against 2.0 s eager. So a run is compiled only where the time
#: it saves, at these rates, exceeds a compilation's.
_COMPILE_SPEEDUP = 1.5
_COMPILE_SECONDS = 45.0
_EAGER_MFU = 0.2
#: The bf16 peak assumed for a GPU not in `PEAK_FLOPS`.
_UNKNOWN_GPU_PEAK = 1e14
#: This process's compiled proxies, one per model shape and device, with their compiled
#: forward: a later run of a shape reuses the graph, its weights reloaded in place.
_COMPILED: dict[tuple[ProxyConfig, str], tuple[nn.Module, Callable]] = {}


def compile_pays(config: TrainConfig, peak: float | None) -> bool:
    """Whether ``torch.compile`` saves more time than it costs for ``config`` on a device of
    bf16 ``peak`` FLOP/s (None: the CPU, where it is never used unless asked for): a dense
    model whose eager run, at `_EAGER_MFU`, would last long enough that a `_COMPILE_SPEEDUP`
    saves more than `_COMPILE_SECONDS`. ``TrainConfig.compile`` overrides it."""
    if peak is None or config.model.is_moe:
        return False
    eager_seconds = config.model.flops_per_token() * config.tokens / (_EAGER_MFU * peak)
    return eager_seconds * (1 - 1 / _COMPILE_SPEEDUP) > _COMPILE_SECONDS


def _model_for(config: TrainConfig, device: torch.device) -> tuple[nn.Module, Callable]:
    """The run's model, freshly initialised from its seed, and the callable that runs it:
    compiled where `compile_pays` (or ``config.compile``) says so, reusing this process's
    compiled graph of the same shape. The weights are always drawn on the CPU by
    `build_model`, so that a seed gives the same run compiled or not, first or later."""
    torch.manual_seed(config.seed)
    fresh = build_model(config.model)
    peak = (peak_flops(device) or _UNKNOWN_GPU_PEAK) if device.type == "cuda" else None
    use_compile = config.compile if config.compile is not None else compile_pays(config, peak)
    if not use_compile:
        model = fresh.to(device)
        return model, model
    key = (config.model, str(device))
    if key in _COMPILED:
        model, forward = _COMPILED[key]
        model.load_state_dict(fresh.state_dict())
        return model, forward
    model = fresh.to(device)
    _COMPILED[key] = (model, torch.compile(model))
    return _COMPILED[key]


def _training_divergence(train_losses: list[float]) -> str | None:
    latest = train_losses[-1]
    if not math.isfinite(latest):
        return "training loss is not finite"
    if latest > train_losses[0] * 1.1:
        return "training loss climbed 10% above its starting value"
    return None
