"""The rungs of a scale-up ladder: models of growing size, each with its token budget.

A `Rung` is one of our GPT proxies; a `TrainerRung` is any model the user trains with their
own code, given by its scale and a function that trains one run. `run_ladder` climbs either.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import optuna

from optuna_lrlaw.integration.study import DIVERGED_ATTR, NOISE_ATTR, SCALE_ATTRS, checked_lr_range
from optuna_lrlaw.proxies.config import ProxyConfig
from optuna_lrlaw.proxies.objective import ProxyObjective, proxy_objective
from optuna_lrlaw.proxies.parametrization import model_identity
from optuna_lrlaw.proxies.train import TrainConfig
from optuna_lrlaw.science.scale import Scale

#: The fewest optimizer steps a rung may train: its warmup, decay and evaluations need room, and a
#: rung of one step measures nothing about the LR.
MIN_RUNG_STEPS = 10


@dataclass(frozen=True)
class Rung:
    """One step of the ladder: a proxy model, the tokens it trains on and its batch size.

    Example:
        >>> rung = Rung(ProxyConfig(width=64, depth=2, heads=4), tokens=2**20)
        >>> rung.name, rung.scale().params
        ('w64-d2-D1048576', 98624.0)
    """

    model: ProxyConfig
    tokens: int
    batch_size: int = 32

    def __post_init__(self) -> None:
        self.training(lr=1.0)  # TrainConfig refuses a batch size or token budget it cannot run

    def training(self, lr: float) -> TrainConfig:
        """The run of this rung at peak learning rate ``lr``."""
        return TrainConfig(self.model, lr=lr, tokens=self.tokens, batch_size=self.batch_size)

    def objective(self, lr_range: tuple[float, float], **options) -> ProxyObjective:
        """An Optuna objective training this rung at the LR each trial suggests in ``lr_range``;
        ``options`` go to `proxy_objective` (``device``, ``lr_param``, `TrainConfig` fields)."""
        return proxy_objective(self.model, tokens=self.tokens, batch_size=self.batch_size, lr_range=lr_range, **options)

    @property
    def name(self) -> str:
        """A name that identifies the rung's scale within a ladder (its study's suffix)."""
        experts = f"-e{self.model.n_experts}k{self.model.top_k}" if self.model.n_experts else ""
        return f"w{self.model.width}-d{self.model.depth}{experts}-D{self.tokens}"

    def scale(self) -> Scale:
        """The scale the law sees, the same at every LR: (active) parameters, tokens trained, tokens per step."""
        return self.training(lr=1.0).scale()

    def record(self) -> dict[str, object]:
        """What a study stores about its rung (`record_rung`): the model, its rules' version, the batch size."""
        return {
            "model": asdict(self.model),
            "rules": model_identity(self.model)["rules"],
            "batch_size": self.batch_size,
        }

    def step_flops(self) -> float:
        """FLOPs of one optimizer step: what a pruned run cost per step it reported."""
        return self.model.flops_per_token() * self.scale().batch_tokens


@dataclass(frozen=True)
class TrainerRung:
    """One step of a ladder trained by your own code: its scale, and a function that trains one run.

    ``train(lr, trial)`` trains the rung's model at peak learning rate ``lr`` and returns its
    final validation loss (NaN or inf if the run diverged). It may report intermediate
    losses to ``trial`` and raise ``optuna.TrialPruned`` when ``trial.should_prune()``, and
    set the ``flops`` user attribute (default: 6 N D). ``name`` identifies the rung in the
    storage: its study is ``{ladder}/{name}``, so it must change when the model does.
    ``noise``, if you measured it, is the relative sd of one run's final loss between
    training seeds (0.01: 1%): each rung's optimum takes it as its noise prior.

    Example:
        >>> def train(lr, trial):
        ...     return 2.0 + (math.log(lr) + 6.0) ** 2 / 100  # your training loop here
        >>> rung = TrainerRung("my-gpt-d4", Scale(params=2e6, tokens=4e7), train)
        >>> rung.scale().params
        2000000.0
    """

    name: str
    at: Scale
    train: Callable[[float, optuna.Trial], float]
    noise: float | None = None

    def __post_init__(self) -> None:
        if not self.name or "/" in self.name:
            raise ValueError(f"a TrainerRung's name must be non-empty and hold no '/', got {self.name!r}")
        if not isinstance(self.at, Scale):
            raise ValueError(f"a TrainerRung's scale must be a Scale, got {self.at!r}")
        if self.noise is not None and not (isinstance(self.noise, (int, float)) and 0 < self.noise < math.inf):
            raise ValueError(f"a TrainerRung's noise must be a positive relative sd (0.01 for 1%), got {self.noise!r}")

    def scale(self) -> Scale:
        return self.at

    def objective(self, lr_range: tuple[float, float], lr_param: str = "lr", **options) -> TrainerObjective:
        """The Optuna objective of this rung; ``options`` (``device``, training fields) are for
        proxies and must be empty here: your ``train`` decides how it trains."""
        ignored = {key for key, value in options.items() if value is not None and key != "device"}
        if ignored:
            raise ValueError(
                f"TrainerRung {self.name!r} trains with your own code: options {sorted(ignored)} do not apply"
            )
        return TrainerObjective(self, lr_range, lr_param)

    def record(self) -> dict[str, object]:
        return {"trainer": self.name, "scale": {k: v for k, v in vars(self.at).items() if v is not None}}

    def step_flops(self) -> float:
        """Unknown for your trainer: a pruned run without a ``flops`` attribute is charged nothing."""
        return 0.0


class TrainerObjective:
    """``objective(trial)`` calls a `TrainerRung`'s ``train`` at the suggested LR and records
    what the ladder reads: the scale, divergence (a non-finite loss), and FLOPs."""

    def __init__(self, rung: TrainerRung, lr_range: tuple[float, float], lr_param: str) -> None:
        self.rung, self.lr_range, self.lr_param = rung, checked_lr_range(lr_range), lr_param

    @property
    def scale(self) -> Scale:
        return self.rung.at

    def __call__(self, trial: optuna.Trial) -> float:
        lr = trial.suggest_float(self.lr_param, *self.lr_range, log=True)
        loss = float(self.rung.train(lr, trial))
        for name, attr in SCALE_ATTRS.items():
            value = getattr(self.scale, name)
            if value is not None:
                trial.set_user_attr(attr, value)
        diverged = not math.isfinite(loss)
        trial.set_user_attr(DIVERGED_ATTR, diverged)
        if self.rung.noise is not None:
            trial.set_user_attr(NOISE_ATTR, self.rung.noise)
        if "flops" not in trial.user_attrs:
            trial.set_user_attr("flops", 6.0 * (self.scale.active_params or self.scale.params) * self.scale.tokens)
        return math.inf if diverged else loss


#: Either kind of rung: `run_ladder` climbs both.
AnyRung = Rung | TrainerRung


def rung_identity(record: dict) -> dict[str, object]:
    """What makes two rungs the same, from what `Rung.record` or `TrainerRung.record` stored."""
    if "trainer" in record:
        return {"trainer": record["trainer"], **record["scale"]}
    identity = model_identity(ProxyConfig(**record["model"]))
    return {**identity, "rules": record.get("rules", 1), "batch_size": record.get("batch_size")}


def default_rungs(
    widths: Sequence[int] = (32, 48, 64),
    *,
    depth: int = 2,
    head_dim: int = 16,
    tokens_per_param: float = 10.0,
    seq_len: int = 128,
    batch_size: int = 32,
    parametrization: str = "sp",
) -> list[Rung]:
    """A ladder over width at fixed depth, each rung trained on ``tokens_per_param`` tokens per parameter.

    Width grows by adding heads of ``head_dim``, so under μP and CompleteP the base model
    (`ProxyConfig.base_width`) has heads of the same size. The token budget is rounded down
    to whole optimizer steps. With the defaults the three rungs (24.7k to 98.6k parameters)
    train in seconds to a minute each on a CPU.

    Example:
        >>> [rung.name for rung in default_rungs((32, 64))]
        ['w32-d2-D245760', 'w64-d2-D983040']
    """
    for name, value in (("depth", depth), ("head_dim", head_dim), ("seq_len", seq_len), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if not widths or any(w < 1 or w % head_dim for w in widths):
        raise ValueError(f"widths must be positive multiples of head_dim={head_dim}, got {list(widths)}")
    if len(set(widths)) != len(widths):
        raise ValueError(f"widths must be distinct, got {list(widths)}")
    if not (isinstance(tokens_per_param, (int, float)) and 0 < tokens_per_param < math.inf):
        raise ValueError(f"tokens_per_param must be positive and finite, got {tokens_per_param!r}")
    per_step = batch_size * seq_len
    base_width = ProxyConfig.base_width
    if parametrization != "sp" and base_width % head_dim:
        raise ValueError(f"under {parametrization}, head_dim={head_dim} must divide the base width {base_width}")
    base_heads = base_width // head_dim if base_width % head_dim == 0 else None  # sp has no base model
    rungs = []
    for width in sorted(widths):
        model = ProxyConfig(
            width=width,
            depth=depth,
            heads=width // head_dim,
            base_heads=base_heads,
            seq_len=seq_len,
            parametrization=parametrization,
        )
        steps = int(tokens_per_param * model.params() // per_step)
        if steps < MIN_RUNG_STEPS:
            least = MIN_RUNG_STEPS * per_step / model.params()
            raise ValueError(
                f"tokens_per_param={tokens_per_param:g} trains width {width} for {steps} optimizer step(s) of "
                f"{per_step:,} tokens; a rung needs at least {MIN_RUNG_STEPS} "
                f"(tokens_per_param of at least {least:.3g})"
            )
        rungs.append(Rung(model, tokens=steps * per_step, batch_size=batch_size))
    return rungs
