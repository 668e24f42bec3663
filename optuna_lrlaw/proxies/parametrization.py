"""Standard parametrization, μP and CompleteP: how initialisation, learning rates and multipliers scale.

Every parameter of a proxy belongs to one of six groups (`ProxyModel.parameter_groups`).
With m = width / base_width and m_L = depth / base_depth, the rules for AdamW are
(``../shared/science.md`` §5; TP5: Yang et al. 2022, arXiv 2203.03466; CompleteP with
alpha = 1: Dey et al. 2025, arXiv 2505.01618):

==========  ==================  ==========  =============  =========================================================
group       init std (x sigma)  LR (x eta)  decay (x lam)  what it holds, and the source of its rule
==========  ==================  ==========  =============  =========================================================
embedding   1                   1           1              token and learned positions (TP5: Yang et al. 2022)
hidden      1 / sqrt(m)         1 / m       m              attention and MLP matrices (TP5)
expert      1 / sqrt(m)         1 / m       m              MoE expert matrices: hidden matrices (Cerebras)
router      1 / m               1 / m       0              MoE router: output-like, as the readout (see below)
output      1                   1           1              the readout; its logits x alpha_out / m (mup's MuReadout)
norm        (ones)              1           0              RMSNorm gains
==========  ==================  ==========  =============  =========================================================

Under ``sp`` every multiplier is 1. The forward pass changes too: attention scores are
scaled by ``sqrt(base_head_dim) / head_dim``, which is 1/d_head as the head size grows and
stays the usual 1/sqrt(d_head) when width grows by adding heads of a fixed size (TP5;
the base model's head size is `ProxyConfig.base_head_dim`); the logits are multiplied by
alpha_out / m; and under ``completep`` every residual branch is multiplied by 1 / m_L (with
alpha = 1 the depth factors m_L^(alpha - 1) on the learning rates are 1).

The readout follows microsoft/mup's ``MuReadout``: the stored weight keeps the base
model's spread sigma at every width and the logits are multiplied by 1/m, so the effective
readout weight scales like 1/width, μP's output layer. (Starting it at sigma x sqrt(m)
instead, which this module did in rules version 1, makes the effective weight scale like
1/sqrt(width), the standard parametrization's readout: the gradients reaching every other
group then grow like sqrt(m), which `first_order_check` shows and Adam hides from the
coordinate check.)

The router maps width to n_experts, a dimension that does not grow: by microsoft/mup's
rule for matrices whose fan-out stays finite it is output-like, and takes the readout's
effective rule, initial std sigma/m and LR eta/m. We put both in the stored weight rather
than in a forward multiplier (the two are the same model under Adam, up to epsilon); μP
for mixtures of experts is derived by Małaśnicki et al. 2025 (arXiv 2508.09752), whose
treatment ``../shared/science.md`` §5 summarises as this rule. With the router at LR eta,
as Cerebras' guide and rules version 1 had it, its logit change grows with width.

Weight decay: PyTorch's AdamW shrinks a weight by lr x weight_decay per step, so when μP
divides the hidden learning rate by m the decay is multiplied by m to keep the product, the
AdamW timescale, unchanged across width (Wang and Aitchison 2024, arXiv 2405.13698;
Bergsma et al. 2025, arXiv 2505.13738). At the base shape the three parametrizations are
the same model.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from optuna_lrlaw.proxies.config import ProxyConfig

GROUPS: tuple[str, ...] = ("embedding", "hidden", "expert", "router", "output", "norm")

#: The version of each parametrization's rules. A model trained under one version is not
#: the model of another, so stored runs and checkpoints carry it (`model_identity`).
#: μP and CompleteP went to 2 with the MuReadout readout, the base head size and the
#: output-like router; ``sp`` never changed.
RULES_VERSION: dict[str, int] = {"sp": 1, "mup": 2, "completep": 2}

#: Fields that a model under ``sp`` ignores: they anchor the μP and CompleteP rules only.
_ANCHOR_FIELDS = ("base_width", "base_depth", "base_heads", "output_multiplier")


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
        >>> rules["router"]
        GroupRule(init_std=0.25, lr=0.25, weight_decay=0.0)
    """
    m = 1.0 if config.parametrization == "sp" else config.width_multiplier
    matrix = GroupRule(init_std=1 / math.sqrt(m), lr=1 / m, weight_decay=m)
    return {
        "embedding": GroupRule(1.0, 1.0, 1.0),
        "hidden": matrix,
        "expert": matrix,
        "router": GroupRule(init_std=1 / m, lr=1 / m, weight_decay=0.0),
        "output": GroupRule(1.0, 1.0, 1.0),
        "norm": GroupRule(1.0, 1.0, 0.0),
    }


def attention_scale(config: ProxyConfig) -> float:
    """The factor on q.k: 1/sqrt(d_head) under ``sp``, sqrt(base d_head)/d_head under μP and CompleteP.

    Example:
        >>> fixed_head_size = ProxyConfig(width=256, depth=2, heads=16, base_heads=4, parametrization="mup")
        >>> attention_scale(fixed_head_size) == 1 / math.sqrt(16)
        True
    """
    if config.parametrization == "sp":
        return 1 / math.sqrt(config.head_dim)
    return math.sqrt(config.base_head_dim) / config.head_dim


def logit_multiplier(config: ProxyConfig) -> float:
    """The factor on the logits: 1 under ``sp``, alpha_out / m under μP and CompleteP."""
    if config.parametrization == "sp":
        return 1.0
    return config.output_multiplier / config.width_multiplier


def residual_multiplier(config: ProxyConfig) -> float:
    """The factor on every residual branch: 1 / m_L under ``completep``, else 1."""
    return 1 / config.depth_multiplier if config.parametrization == "completep" else 1.0


def model_identity(config: ProxyConfig) -> dict[str, object]:
    """What makes two configs the same trained model: the fields that matter, and the rules' version.

    Fields the parametrization ignores are left out (under ``sp``, the base shape), so a
    stored record made before such a field existed still matches. Stored runs compare it
    before they are mixed with new ones.

    Example:
        >>> model_identity(ProxyConfig(width=64, depth=2, heads=4, parametrization="mup"))["rules"]
        2
    """
    fields = {**asdict(config), "base_heads": config.base_heads or config.heads}  # None means heads
    if config.parametrization == "sp":
        fields = {key: value for key, value in fields.items() if key not in _ANCHOR_FIELDS}
    return {**fields, "rules": RULES_VERSION[config.parametrization]}
