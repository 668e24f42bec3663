"""The rungs of a scale-up ladder: proxy models of growing size, each with its token budget."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from optuna_lrlaw.proxies.config import ProxyConfig
from optuna_lrlaw.proxies.objective import ProxyObjective, proxy_objective
from optuna_lrlaw.proxies.train import TrainConfig
from optuna_lrlaw.science.scale import Scale


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
    if not widths or any(w < 1 or w % head_dim for w in widths):
        raise ValueError(f"widths must be positive multiples of head_dim={head_dim}, got {list(widths)}")
    if len(set(widths)) != len(widths):
        raise ValueError(f"widths must be distinct, got {list(widths)}")
    if not tokens_per_param > 0:
        raise ValueError(f"tokens_per_param must be positive, got {tokens_per_param!r}")
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
        steps = max(1, int(tokens_per_param * model.params() // per_step))
        rungs.append(Rung(model, tokens=steps * per_step, batch_size=batch_size))
    return rungs
