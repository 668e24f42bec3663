"""The shape of a proxy model, and the compute it costs."""

from __future__ import annotations

import math
from dataclasses import dataclass

PARAMETRIZATIONS: tuple[str, ...] = ("sp", "mup", "completep")
_MLP_KINDS = ("gelu", "swiglu")
_POSITIONS = ("rope", "learned")
#: Vocabulary and hidden sizes are padded to this multiple: tensor cores and kernels run fastest on it.
PAD_MULTIPLE = 64


def _round_up(value: float, multiple: int) -> int:
    return int(math.ceil(value / multiple) * multiple)


@dataclass(frozen=True)
class ProxyConfig:
    """A GPT-style decoder: its shape, its parametrization and (for MoE) its experts.

    ``base_width``, ``base_depth`` and ``base_heads`` name the model the parametrization is
    anchored to: under ``mup`` and ``completep`` a model of that shape is exactly the ``sp``
    model, and wider or deeper models rescale initialisation, learning rates and multipliers
    from it (``../shared/science.md`` §5), so that a learning rate tuned at the base shape
    transfers. ``base_heads`` defaults to ``heads`` (the head count stays fixed and heads
    grow wider); a model that adds heads at a fixed head size sets it to
    ``base_width // head_dim``.

    ``n_experts = 0`` is a dense model; ``n_experts > 0`` replaces every MLP by ``n_experts``
    experts of the same size, of which ``top_k`` run per token.

    Example:
        >>> config = ProxyConfig(width=64, depth=2, heads=4)
        >>> config.params(), config.flops_per_token()
        (98624, 1083264)
        >>> moe = ProxyConfig(width=64, depth=2, heads=4, n_experts=8, top_k=2)
        >>> moe.params(), moe.active_params()
        (558400, 165184)
    """

    width: int
    depth: int
    heads: int
    vocab_size: int = 256
    seq_len: int = 256
    parametrization: str = "sp"
    base_width: int = 64
    base_depth: int = 2
    #: Heads of the base model; None: the same as ``heads``.
    base_heads: int | None = None
    n_experts: int = 0
    top_k: int = 1
    mlp: str = "gelu"
    positions: str = "rope"
    #: The initialisation standard deviation of the base model's matrices.
    init_std: float = 0.02
    #: alpha_out: the logits are multiplied by ``output_multiplier / width_multiplier`` under μP.
    output_multiplier: float = 1.0

    def __post_init__(self) -> None:
        for name in ("width", "depth", "heads", "vocab_size", "seq_len", "base_width", "base_depth", "top_k"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"ProxyConfig.{name} must be a positive integer, got {value!r}")
        if self.width % self.heads:
            raise ValueError(f"ProxyConfig.width ({self.width}) must be divisible by heads ({self.heads})")
        if self.base_heads is not None and (
            isinstance(self.base_heads, bool)
            or not isinstance(self.base_heads, int)
            or self.base_heads < 1
            or self.base_width % self.base_heads
        ):
            raise ValueError(
                f"ProxyConfig.base_heads must be a positive integer dividing base_width ({self.base_width}),"
                f" got {self.base_heads!r}"
            )
        if self.positions == "rope" and self.head_dim % 2:
            raise ValueError(f"rotary positions need an even head size, got {self.head_dim}")
        if self.parametrization not in PARAMETRIZATIONS:
            raise ValueError(
                f"ProxyConfig.parametrization must be one of {PARAMETRIZATIONS}, got {self.parametrization!r}"
            )
        if self.mlp not in _MLP_KINDS:
            raise ValueError(f"ProxyConfig.mlp must be one of {_MLP_KINDS}, got {self.mlp!r}")
        if self.positions not in _POSITIONS:
            raise ValueError(f"ProxyConfig.positions must be one of {_POSITIONS}, got {self.positions!r}")
        if self.n_experts < 0 or (self.n_experts and self.top_k > self.n_experts):
            raise ValueError(
                f"need 0 <= top_k <= n_experts for MoE, got n_experts={self.n_experts}, top_k={self.top_k}"
            )
        if not (self.init_std > 0 and self.output_multiplier > 0):
            raise ValueError("ProxyConfig.init_std and output_multiplier must be positive")

    @property
    def head_dim(self) -> int:
        return self.width // self.heads

    @property
    def base_head_dim(self) -> float:
        """The head size of the base model: ``base_width / base_heads``."""
        return self.base_width / (self.base_heads or self.heads)

    @property
    def padded_vocab(self) -> int:
        """The vocabulary rounded up to a multiple of 64; the extra logits are never targets."""
        return _round_up(self.vocab_size, PAD_MULTIPLE)

    @property
    def mlp_hidden(self) -> int:
        """Hidden size of one MLP (or expert): 4 x width for GELU, 8/3 x width padded for SwiGLU."""
        return 4 * self.width if self.mlp == "gelu" else _round_up(8 * self.width / 3, PAD_MULTIPLE)

    @property
    def width_multiplier(self) -> float:
        """m = width / base_width."""
        return self.width / self.base_width

    @property
    def depth_multiplier(self) -> float:
        """m_L = depth / base_depth."""
        return self.depth / self.base_depth

    @property
    def is_moe(self) -> bool:
        return self.n_experts > 0

    def _mlp_params(self) -> int:
        matrices = 2 if self.mlp == "gelu" else 3
        return matrices * self.width * self.mlp_hidden

    def _layer_params(self, experts: int) -> int:
        attention = 4 * self.width**2
        norms = 2 * self.width
        if not self.is_moe:
            return attention + self._mlp_params() + norms
        router = self.width * self.n_experts
        return attention + experts * self._mlp_params() + router + norms

    def params(self) -> int:
        """Non-embedding parameters N: every parameter but the token and position embeddings and the output head."""
        return self.depth * self._layer_params(self.n_experts) + self.width

    def active_params(self) -> int:
        """Non-embedding parameters used per token: ``params()`` for dense models, top_k experts for MoE."""
        return self.depth * self._layer_params(self.top_k) + self.width

    def flops_per_token(self) -> int:
        """Training FLOPs per token: 6 N_active + 6 d V (output head) + 12 L d T (attention), PaLM appendix B."""
        return (
            6 * self.active_params() + 6 * self.width * self.padded_vocab + 12 * self.depth * self.width * self.seq_len
        )
