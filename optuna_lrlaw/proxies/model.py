"""A GPT-style decoder in one file: the proxy whose learning rate we study.

Pre-norm blocks (RMSNorm, no biases), causal ``scaled_dot_product_attention``, rotary or
learned positions, a GELU or SwiGLU MLP, or a mixture of such MLPs with top-k routing and
a load-balancing loss. The parametrization (`optuna_lrlaw.proxies.parametrization`) enters
in four places only: the initialisation, the attention scale, the residual-branch factor
and the logit factor (in `Readout`); the per-group learning rates live in `configure_optimizer`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from optuna_lrlaw.proxies.config import ProxyConfig
from optuna_lrlaw.proxies.parametrization import (
    GROUPS,
    attention_scale,
    group_rules,
    logit_multiplier,
    residual_multiplier,
)


def _rotary_tables(config: ProxyConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of the rotary angles, shape (seq_len, head_dim / 2) (Su et al. 2021, base 10000)."""
    inverse_frequency = 1.0 / (10000 ** (torch.arange(0, config.head_dim, 2, dtype=torch.float32) / config.head_dim))
    angles = torch.outer(torch.arange(config.seq_len, dtype=torch.float32), inverse_frequency)
    return angles.cos(), angles.sin()


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Apply rotary positions to x of shape (batch, heads, seq, head_dim)."""
    seq = x.shape[-2]
    cos, sin = cos[:seq].to(x.dtype), sin[:seq].to(x.dtype)
    even, odd = x[..., 0::2], x[..., 1::2]
    return torch.stack((even * cos - odd * sin, even * sin + odd * cos), dim=-1).flatten(-2)


class Attention(nn.Module):
    def __init__(self, config: ProxyConfig) -> None:
        super().__init__()
        self.heads = config.heads
        self.scale = attention_scale(config)
        self.qkv = nn.Linear(config.width, 3 * config.width, bias=False)
        self.out = nn.Linear(config.width, config.width, bias=False)

    def forward(self, x: torch.Tensor, rotary: tuple[torch.Tensor, torch.Tensor] | None) -> torch.Tensor:
        batch, seq, width = x.shape
        q, k, v = self.qkv(x).view(batch, seq, 3, self.heads, width // self.heads).permute(2, 0, 3, 1, 4)
        if rotary is not None:
            q, k = _rotate(q, *rotary), _rotate(k, *rotary)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=self.scale)
        return self.out(y.transpose(1, 2).reshape(batch, seq, width))


class MLP(nn.Module):
    def __init__(self, config: ProxyConfig) -> None:
        super().__init__()
        self.gated = config.mlp == "swiglu"
        self.up = nn.Linear(config.width, (2 if self.gated else 1) * config.mlp_hidden, bias=False)
        self.down = nn.Linear(config.mlp_hidden, config.width, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.gated:
            gate, value = self.up(x).chunk(2, dim=-1)
            return self.down(F.silu(gate) * value)
        return self.down(F.gelu(self.up(x)))


class MixtureOfExperts(nn.Module):
    """Top-k routing over ``n_experts`` MLPs, with the Switch Transformer balancing loss.

    Each token goes to the ``top_k`` experts of highest router probability, weighted by
    those probabilities renormalised to sum to one. The balancing loss is
    n_experts * sum_e f_e P_e (Fedus et al. 2021): f_e the fraction of routed slots that
    went to expert e, P_e its mean router probability; it is 1 when routing is uniform.
    """

    def __init__(self, config: ProxyConfig) -> None:
        super().__init__()
        self.top_k = config.top_k
        self.router = nn.Linear(config.width, config.n_experts, bias=False)
        self.experts = nn.ModuleList(MLP(config) for _ in range(config.n_experts))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        tokens = x.reshape(-1, x.shape[-1])
        probabilities = self.router(tokens).float().softmax(dim=-1)
        weights, chosen = probabilities.topk(self.top_k, dim=-1)
        weights = (weights / weights.sum(dim=-1, keepdim=True)).to(x.dtype)
        # The routed slots sorted by expert: one gather, a contiguous slice per expert, one
        # scatter back, and one wait for the device (the slices' sizes) a layer, where a mask
        # per expert gathered and waited once for each expert.
        expert_of_slot = chosen.flatten()
        order = expert_of_slot.argsort(stable=True)
        token_rows = order // self.top_k
        sizes = torch.bincount(expert_of_slot, minlength=len(self.experts)).tolist()
        routed = tokens[token_rows].split(sizes)
        outputs = torch.cat([expert(part) for expert, part in zip(self.experts, routed, strict=True)])
        output = torch.zeros_like(tokens).index_add_(0, token_rows, outputs * weights.flatten()[order, None])
        routed_fraction = F.one_hot(chosen, len(self.experts)).float().mean(dim=(0, 1))
        balance = len(self.experts) * (routed_fraction * probabilities.mean(dim=0)).sum()
        return output.view_as(x), balance


class Readout(nn.Module):
    """The output head, with the parametrization's logit multiplier inside (like microsoft/mup's MuReadout)."""

    def __init__(self, config: ProxyConfig) -> None:
        super().__init__()
        self.multiplier = logit_multiplier(config)
        self.weight = nn.Parameter(torch.empty(config.padded_vocab, config.width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight) * self.multiplier


class Block(nn.Module):
    def __init__(self, config: ProxyConfig) -> None:
        super().__init__()
        self.residual_multiplier = residual_multiplier(config)
        self.attention_norm = nn.RMSNorm(config.width)
        self.attention = Attention(config)
        self.mlp_norm = nn.RMSNorm(config.width)
        self.mlp = MixtureOfExperts(config) if config.is_moe else MLP(config)

    def forward(
        self, x: torch.Tensor, rotary: tuple[torch.Tensor, torch.Tensor] | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        x = x + self.residual_multiplier * self.attention(self.attention_norm(x), rotary)
        branch = self.mlp(self.mlp_norm(x))
        balance = None
        if isinstance(branch, tuple):
            branch, balance = branch
        return x + self.residual_multiplier * branch, balance


class ProxyModel(nn.Module):
    """The decoder: ``forward(tokens)`` gives logits of shape (batch, seq, vocab_size).

    Example:
        >>> model = build_model(ProxyConfig(width=32, depth=1, heads=2, seq_len=16))
        >>> model(torch.zeros(3, 16, dtype=torch.long)).shape
        torch.Size([3, 16, 256])
    """

    def __init__(self, config: ProxyConfig) -> None:
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.padded_vocab, config.width)
        self.position_embed = nn.Embedding(config.seq_len, config.width) if config.positions == "learned" else None
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.depth))
        self.norm = nn.RMSNorm(config.width)
        self.head = Readout(config)
        if config.positions == "rope":
            cos, sin = _rotary_tables(config)
            self.register_buffer("rotary_cos", cos, persistent=False)
            self.register_buffer("rotary_sin", sin, persistent=False)
        self.reset_parameters()

    def parameter_groups(self) -> dict[str, list[tuple[str, nn.Parameter]]]:
        """Every parameter, by the group whose rules it follows (see the parametrization table)."""
        groups: dict[str, list[tuple[str, nn.Parameter]]] = {group: [] for group in GROUPS}
        for name, parameter in self.named_parameters():
            groups[_group_of(name)].append((name, parameter))
        return {group: members for group, members in groups.items() if members}

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Initialise every parameter by its group's rule: N(0, (init_std x rule)^2), norm gains at 1."""
        rules = group_rules(self.config)
        for group, members in self.parameter_groups().items():
            for _, parameter in members:
                if group == "norm":
                    parameter.fill_(1.0)
                else:
                    parameter.normal_(0.0, self.config.init_std * rules[group].init_std)

    def forward(self, tokens: torch.Tensor, *, return_balance_loss: bool = False):
        """Logits for every position; with ``return_balance_loss``, also the MoE balancing loss (0 if dense)."""
        seq = tokens.shape[1]
        if seq > self.config.seq_len:
            raise ValueError(f"sequence of {seq} tokens exceeds the model's seq_len {self.config.seq_len}")
        x = self.embed(tokens)
        rotary = None
        if self.position_embed is not None:
            x = x + self.position_embed(torch.arange(seq, device=tokens.device))
        else:
            rotary = (self.rotary_cos, self.rotary_sin)
        balance = x.new_zeros((), dtype=torch.float32)
        for block in self.blocks:
            x, block_balance = block(x, rotary)
            if block_balance is not None:
                balance = balance + block_balance / len(self.blocks)
        logits = self.head(self.norm(x))
        logits = logits[..., : self.config.vocab_size]
        return (logits, balance) if return_balance_loss else logits


def _group_of(name: str) -> str:
    if name.startswith(("embed.", "position_embed.")):
        return "embedding"
    if name.startswith("head."):
        return "output"
    if ".experts." in name:
        return "expert"
    if name.endswith("router.weight"):
        return "router"
    if "norm" in name.rsplit(".", 2)[-2]:
        return "norm"
    return "hidden"


def build_model(config: ProxyConfig) -> ProxyModel:
    """A freshly initialised proxy for ``config`` (on the CPU; move it with ``.to(device)``)."""
    return ProxyModel(config)


def configure_optimizer(
    model: ProxyModel,
    config: ProxyConfig,
    lr: float,
    weight_decay: float = 0.1,
    *,
    betas: tuple[float, float] = (0.9, 0.95),
    eps: float = 1e-8,
    fused: bool | None = None,
) -> torch.optim.AdamW:
    """AdamW with one parameter group per parametrization group, at ``lr`` and ``weight_decay`` times its rule.

    Each group keeps its multiplier as ``lr_multiplier``, so a schedule sets
    ``group["lr"] = group["lr_multiplier"] * lr_now``.

    Example:
        >>> config = ProxyConfig(width=128, depth=1, heads=2, parametrization="mup")
        >>> optimizer = configure_optimizer(build_model(config), config, lr=1e-2)
        >>> {group["name"]: group["lr"] for group in optimizer.param_groups}
        {'embedding': 0.01, 'hidden': 0.005, 'output': 0.01, 'norm': 0.01}
    """
    if not lr > 0 or weight_decay < 0:
        raise ValueError(f"need lr > 0 and weight_decay >= 0, got lr={lr!r}, weight_decay={weight_decay!r}")
    rules = group_rules(config)
    param_groups = [
        {
            "name": group,
            "params": [parameter for _, parameter in members],
            "lr": lr * rules[group].lr,
            "lr_multiplier": rules[group].lr,
            "weight_decay": weight_decay * rules[group].weight_decay,
        }
        for group, members in model.parameter_groups().items()
    ]
    return torch.optim.AdamW(param_groups, lr=lr, betas=betas, eps=eps, fused=fused)
