"""Standard parametrization, μP and CompleteP: how initialisation, learning rates and multipliers scale.

Every parameter of a proxy belongs to one of six groups (`ProxyModel.parameter_groups`).
With m = width / base_width and m_L = depth / base_depth, the rules for AdamW are
(``../shared/science.md`` §5; CompleteP with alpha = 1, Dey et al. 2025, arXiv 2505.01618):

==========  ====================  ==================  ===================  =============================
group       init std (x sigma)    LR (x eta)          weight decay (x lam)  what it holds
==========  ====================  ==================  ===================  =============================
embedding   1                     1                   1                     token and learned positions
hidden      1 / sqrt(m)           1 / m               m                     attention and MLP matrices
expert      1 / sqrt(m)           1 / m               m                     MoE expert matrices
router      1 / sqrt(m)           1                   0                     MoE router (Cerebras: LR eta)
output      sqrt(m)               1                   1                     the readout, logits x 1/m
norm        (ones)                1                   0                     RMSNorm gains
==========  ====================  ==================  ===================  =============================

Under ``sp`` every multiplier is 1. The forward pass changes too: attention scores are
scaled by ``sqrt(base_head_dim) / head_dim`` (proportional to 1/d_head, and equal to the
usual 1/sqrt(d_head) at the base shape); the logits are multiplied by alpha_out / m; and
under ``completep`` every residual branch is multiplied by 1 / m_L (with alpha = 1 the
depth factors m_L^(alpha - 1) on the learning rates are 1).

The readout: the table fixes its multiplier, 1/m, not its initialisation. We start it at
sigma x sqrt(m), so the initial logits keep their size at every width, as they do in the
base model. The alternatives make them vanish: a fixed sigma (initial logits shrink like
1/sqrt(m), TP5's limit) or zero (microsoft/mup's option). On our proxies a small or zero
readout trains markedly worse at the same learning rate (at the base shape, 2^18 tokens,
lr 8e-3: validation loss 2.39 with sigma, 2.61 with sigma/10, 2.70 with zero; see
``benchmarks/readout_init.py``), and a
readout that changes scale with width would put that handicap on the wide models only.
The readout's effective learning rate, eta/m, is μP's; the coordinate check is flat.

Weight decay: PyTorch's AdamW shrinks a weight by lr x weight_decay per step, so when μP
divides the hidden learning rate by m the decay is multiplied by m to keep the product, the
AdamW timescale, unchanged across width (Wang and Aitchison 2024, arXiv 2405.13698;
Bergsma et al. 2025, arXiv 2505.13738). At the base shape the three parametrizations are
the same model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from optuna_lrlaw.proxies.config import ProxyConfig

GROUPS: tuple[str, ...] = ("embedding", "hidden", "expert", "router", "output", "norm")


@dataclass(frozen=True)
class GroupRule:
    """How one parameter group is initialised and optimised, relative to the base model."""

    init_std: float
    lr: float
    weight_decay: float


def group_rules(config: ProxyConfig) -> dict[str, GroupRule]:
    """The rule of every parameter group of ``config``'s model.

    Example:
        >>> rules = group_rules(ProxyConfig(width=256, depth=2, heads=4, parametrization="mup"))
        >>> rules["hidden"]
        GroupRule(init_std=0.5, lr=0.25, weight_decay=4.0)
        >>> rules["output"]
        GroupRule(init_std=2.0, lr=1.0, weight_decay=1.0)
    """
    m = 1.0 if config.parametrization == "sp" else config.width_multiplier
    matrix = GroupRule(init_std=1 / math.sqrt(m), lr=1 / m, weight_decay=m)
    return {
        "embedding": GroupRule(1.0, 1.0, 1.0),
        "hidden": matrix,
        "expert": matrix,
        "router": GroupRule(init_std=1 / math.sqrt(m), lr=1.0, weight_decay=0.0),
        "output": GroupRule(init_std=math.sqrt(m), lr=1.0, weight_decay=1.0),
        "norm": GroupRule(1.0, 1.0, 0.0),
    }


def attention_scale(config: ProxyConfig) -> float:
    """The factor on q.k: 1/sqrt(d_head) under ``sp``, sqrt(base d_head)/d_head under μP and CompleteP."""
    if config.parametrization == "sp":
        return 1 / math.sqrt(config.head_dim)
    base_head_dim = config.base_width / config.heads
    return math.sqrt(base_head_dim) / config.head_dim


def logit_multiplier(config: ProxyConfig) -> float:
    """The factor on the logits: 1 under ``sp``, alpha_out / m under μP and CompleteP."""
    if config.parametrization == "sp":
        return 1.0
    return config.output_multiplier / config.width_multiplier


def residual_multiplier(config: ProxyConfig) -> float:
    """The factor on every residual branch: 1 / m_L under ``completep``, else 1."""
    return 1 / config.depth_multiplier if config.parametrization == "completep" else 1.0
