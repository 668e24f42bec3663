"""The proxy models: their shape and size, their parametrizations, and the μP coordinate check."""

import functools
from dataclasses import replace

import pandas as pd
import pytest
import torch

import optuna_lrlaw.proxies.model as model_module
from optuna_lrlaw.proxies import (
    ProxyConfig,
    build_model,
    configure_optimizer,
    coordinate_check,
    first_order_check,
    width_slopes,
)
from optuna_lrlaw.proxies.parametrization import (
    RULES_VERSION,
    GroupRule,
    attention_scale,
    group_rules,
    model_identity,
    residual_multiplier,
)

CONFIGS = [
    ProxyConfig(width=64, depth=2, heads=4),
    ProxyConfig(width=96, depth=3, heads=4, mlp="swiglu", positions="learned", vocab_size=300),
    ProxyConfig(width=64, depth=2, heads=2, n_experts=4, top_k=2, parametrization="mup"),
]


def non_embedding_numel(model) -> int:
    groups = model.parameter_groups()
    return sum(
        p.numel() for group, members in groups.items() if group not in ("embedding", "output") for _, p in members
    )


@pytest.mark.parametrize("config", CONFIGS, ids=["dense", "swiglu-learned", "moe"])
def test_params_counts_the_models_non_embedding_parameters(config):
    assert config.params() == non_embedding_numel(build_model(config))


def test_active_params_of_moe_counts_top_k_experts():
    moe = ProxyConfig(width=64, depth=2, heads=4, n_experts=8, top_k=2)
    dense = replace(moe, n_experts=0)
    expert = 2 * 64 * 256
    assert moe.params() - moe.active_params() == 2 * 6 * expert
    assert moe.active_params() == dense.params() + 2 * (expert + 64 * 8)


def test_flops_per_token_follows_the_palm_formula():
    config = ProxyConfig(width=128, depth=4, heads=4, seq_len=512, vocab_size=250)
    assert config.padded_vocab == 256
    assert config.flops_per_token() == 6 * config.params() + 6 * 128 * 256 + 12 * 4 * 128 * 512


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"width": 65}, "divisible by heads"),
        ({"parametrization": "ntk"}, "parametrization must be one of"),
        ({"n_experts": 2, "top_k": 3}, "top_k <= n_experts"),
        ({"depth": 0}, "positive integer"),
        ({"mlp": "relu"}, "mlp must be one of"),
        ({"base_heads": 3}, "base_heads must be a positive integer dividing base_width"),
        ({"base_heads": 0}, "base_heads must be a positive integer dividing base_width"),
    ],
)
def test_bad_configs_are_refused(fields, message):
    with pytest.raises(ValueError, match=message):
        ProxyConfig(**{"width": 64, "depth": 2, "heads": 4, **fields})


@pytest.mark.parametrize("config", CONFIGS, ids=["dense", "swiglu-learned", "moe"])
def test_logits_have_the_vocabulary_shape_and_are_causal(config):
    model = build_model(config).eval()
    tokens = torch.randint(0, config.vocab_size, (2, 24))
    logits = model(tokens)
    assert logits.shape == (2, 24, config.vocab_size)
    changed = tokens.clone()
    changed[:, 12:] = (changed[:, 12:] + 1) % config.vocab_size
    with torch.no_grad():
        assert torch.allclose(model(changed)[:, :12], logits[:, :12], atol=1e-5)
        assert not torch.allclose(model(changed)[:, 12:], logits[:, 12:])


def test_sequence_longer_than_the_model_is_refused():
    config = ProxyConfig(width=32, depth=1, heads=2, seq_len=8)
    with pytest.raises(ValueError, match="exceeds the model's seq_len"):
        build_model(config)(torch.zeros(1, 9, dtype=torch.long))


def test_moe_balance_loss_is_one_when_routing_is_uniform_and_trains_the_router():
    config = ProxyConfig(width=64, depth=1, heads=2, n_experts=4, top_k=1)
    model = build_model(config)
    torch.nn.init.zeros_(model.blocks[0].mlp.router.weight)  # equal probabilities, ties to expert 0
    logits, balance = model(torch.randint(0, 256, (2, 16)), return_balance_loss=True)
    # all tokens go to one expert with probability 1/4 each: 4 * (1 * 1/4) = 1
    assert balance.item() == pytest.approx(1.0)
    model = build_model(config)
    _, balance = model(torch.randint(0, 256, (2, 16)), return_balance_loss=True)
    balance.backward()
    assert model.blocks[0].mlp.router.weight.grad.abs().sum() > 0


def _moe_by_mask(layer, x):
    """The mixture of experts computed one expert at a time, each from its own mask: the
    reference the sorted dispatch must reproduce."""
    tokens = x.reshape(-1, x.shape[-1])
    weights, chosen = layer.router(tokens).float().softmax(dim=-1).topk(layer.top_k, dim=-1)
    weights = weights / weights.sum(dim=-1, keepdim=True)
    output = torch.zeros_like(tokens)
    for index, expert in enumerate(layer.experts):
        rows, slot = (chosen == index).nonzero(as_tuple=True)
        output.index_add_(0, rows, expert(tokens[rows]) * weights[rows, slot, None])
    return output.view_as(x)


@pytest.mark.parametrize("top_k", [1, 2])
def test_moe_sorted_dispatch_matches_one_expert_at_a_time(top_k):
    """Same outputs and gradients as the per-expert loop, an expert that gets no token included."""
    torch.manual_seed(0)
    layer = build_model(ProxyConfig(width=32, depth=1, heads=2, n_experts=6, top_k=top_k)).blocks[0].mlp
    with torch.no_grad():
        layer.router.weight[5] = -10.0  # on positive inputs expert 5 is never chosen
    x = (torch.rand(3, 7, 32) + 0.1).requires_grad_()
    sorted_out, _ = layer(x)
    (sorted_grad,) = torch.autograd.grad(sorted_out.square().sum(), x)
    reference = _moe_by_mask(layer, x)
    (reference_grad,) = torch.autograd.grad(reference.square().sum(), x)
    torch.testing.assert_close(sorted_out, reference)
    torch.testing.assert_close(sorted_grad, reference_grad)


def test_every_parameter_sits_in_exactly_one_documented_group():
    model = build_model(CONFIGS[2])
    groups = model.parameter_groups()
    assert set(groups) == {"embedding", "hidden", "expert", "router", "output", "norm"}
    names = [name for members in groups.values() for name, _ in members]
    assert sorted(names) == sorted(name for name, _ in model.named_parameters())
    assert all(".experts." in name for name, _ in groups["expert"])


def test_mup_rules_scale_with_width_and_are_the_identity_at_the_base_shape():
    base = ProxyConfig(width=64, depth=2, heads=4, parametrization="mup")
    wide = replace(base, width=256)
    assert group_rules(wide)["hidden"] == GroupRule(init_std=pytest.approx(1 / 2), lr=1 / 4, weight_decay=4)
    # the router is output-like: effective init sigma/m and LR eta/m
    assert group_rules(wide)["router"] == GroupRule(init_std=1 / 4, lr=1 / 4, weight_decay=0)
    # the readout keeps the base spread; its logits are multiplied by 1/m (microsoft/mup's MuReadout)
    assert group_rules(wide)["output"] == GroupRule(1.0, 1.0, 1.0)
    assert build_model(wide).head.multiplier == pytest.approx(1 / 4)
    sp = replace(base, parametrization="sp")
    assert group_rules(base) == group_rules(sp) == group_rules(replace(sp, width=256))
    assert attention_scale(base) == pytest.approx(attention_scale(sp))


@pytest.mark.parametrize("parametrization", ["mup", "completep"])
def test_attention_scale_follows_the_head_size_not_the_head_count(parametrization):
    base = ProxyConfig(width=64, depth=2, heads=4, parametrization=parametrization)
    # more heads of a fixed size (16): the same scale at every width, the usual 1/sqrt(16)
    for width in (64, 128, 256, 1024):
        more_heads = replace(base, width=width, heads=width // 16, base_heads=4)
        assert attention_scale(more_heads) == pytest.approx(1 / 4)
    # a fixed head count: the head size grows with width and the scale follows 1/d_head
    for width in (128, 256, 1024):
        wider_heads = replace(base, width=width)
        assert attention_scale(wider_heads) * wider_heads.head_dim == pytest.approx(attention_scale(base) * 16)


def test_all_parametrizations_are_the_same_model_at_the_base_shape():
    tokens = torch.randint(0, 256, (2, 16))
    outputs = []
    for parametrization in ("sp", "mup", "completep"):
        torch.manual_seed(0)
        model = build_model(ProxyConfig(width=64, depth=2, heads=4, seq_len=16, parametrization=parametrization))
        outputs.append(model(tokens))
    assert torch.equal(outputs[0], outputs[1]) and torch.equal(outputs[0], outputs[2])


def test_model_identity_names_the_trained_model_and_its_rules_version():
    mup = ProxyConfig(width=128, depth=2, heads=4, parametrization="mup")
    assert model_identity(mup) == model_identity(replace(mup, base_heads=4))  # None means the same heads
    assert model_identity(mup) != model_identity(replace(mup, base_heads=2))
    assert model_identity(mup)["rules"] == RULES_VERSION["mup"] == 2
    sp = replace(mup, parametrization="sp")
    assert model_identity(sp) == model_identity(replace(sp, base_width=32, base_heads=2))  # sp has no base model
    assert model_identity(sp)["rules"] == 1


def test_completep_scales_residual_branches_with_depth():
    config = ProxyConfig(width=64, depth=8, heads=4, base_depth=2, parametrization="completep")
    assert residual_multiplier(config) == pytest.approx(1 / 4)
    assert residual_multiplier(replace(config, parametrization="mup")) == 1.0


def test_configure_optimizer_applies_group_multipliers():
    config = ProxyConfig(width=256, depth=1, heads=4, parametrization="mup", n_experts=2)
    optimizer = configure_optimizer(build_model(config), config, lr=1e-2, weight_decay=0.1)
    by_name = {group["name"]: group for group in optimizer.param_groups}
    assert by_name["hidden"]["lr"] == pytest.approx(2.5e-3) and by_name["hidden"]["weight_decay"] == pytest.approx(0.4)
    assert by_name["expert"]["lr"] == pytest.approx(2.5e-3)
    assert by_name["router"]["lr"] == pytest.approx(2.5e-3) and by_name["router"]["weight_decay"] == 0
    assert by_name["norm"]["weight_decay"] == 0
    with pytest.raises(ValueError, match="lr > 0"):
        configure_optimizer(build_model(config), config, lr=0.0)


COORD_WIDTHS = [64, 128, 256, 512]


@functools.cache
def coordinate_frame(parametrization: str) -> pd.DataFrame:
    config = ProxyConfig(width=64, depth=2, heads=4, seq_len=32, parametrization=parametrization)
    return coordinate_check(config, [*COORD_WIDTHS, 1024], lr=1e-3, steps=5)


def coordinate_slopes(parametrization: str) -> pd.DataFrame:
    frame = coordinate_frame(parametrization)
    slopes = width_slopes(frame[frame["width"].isin(COORD_WIDTHS)])
    return slopes[slopes["step"] >= 1]


@pytest.mark.parametrize("parametrization", ["mup", "completep"])
def test_coordinate_check_is_flat_across_width_under_mup(parametrization):
    slopes = coordinate_slopes(parametrization)
    assert slopes["module"].nunique() >= 20
    readout = slopes["module"].isin(["head", "logits"])
    worst = slopes.loc[slopes.loc[~readout, "slope"].abs().idxmax()]
    assert abs(worst["slope"]) <= 0.1, worst.to_dict()
    # The logits start at sigma x sqrt(width) / m, which vanishes like 1/sqrt(m) (μP's limit),
    # and at lr 1e-3 that start still dominates: a negative slope that fades as width grows.
    frame = coordinate_frame(parametrization)
    logits = width_slopes(frame[frame["module"] == "logits"], successive=True)
    last = logits[logits["step"] == 4].set_index("to")["slope"]
    assert (last < 0).all() and (last > -0.5).all()
    assert abs(last[1024]) < abs(last[128]) - 0.1, last.to_dict()


def test_coordinate_check_grows_with_width_under_sp():
    slopes = coordinate_slopes("sp")
    last = slopes[slopes["step"] == slopes["step"].max()]
    growing = last[~last["module"].str.contains("norm|embed")]
    assert growing["slope"].median() > 0.5
    assert (growing["slope"] > 0.3).all()


def test_completep_keeps_the_residual_stream_steady_across_depth_where_mup_lets_it_grow():
    def depth_slope(parametrization: str) -> float:
        config = ProxyConfig(width=128, depth=2, heads=4, seq_len=32, base_width=128, parametrization=parametrization)
        slopes = width_slopes(coordinate_check(config, depths=[2, 4, 8, 16]), along="depth")
        residual = slopes[slopes["module"] == "residual"]
        return float(residual.loc[residual["step"].idxmax(), "slope"])

    assert depth_slope("mup") > 0.8  # the stream grows about linearly with depth
    assert abs(depth_slope("completep")) < 0.3


FIRST_ORDER_WIDTHS = [64, 128, 256, 512]


def first_order_slopes(config: ProxyConfig, lr: float = 1e-2) -> dict[str, float]:
    frame = first_order_check(config, FIRST_ORDER_WIDTHS, lr=lr)
    slopes = width_slopes(frame, value="drop", by=("group",))
    return dict(zip(slopes["group"], slopes["slope"], strict=True))


@pytest.mark.parametrize("parametrization", ["mup", "completep"])
def test_first_order_loss_drop_of_every_group_is_flat_across_width_under_mup(parametrization):
    slopes = first_order_slopes(ProxyConfig(width=64, depth=2, heads=4, seq_len=32, parametrization=parametrization))
    assert set(slopes) == {"embedding", "hidden", "output", "norm"}
    assert all(abs(slope) <= 0.05 for slope in slopes.values()), slopes


def test_first_order_loss_drop_grows_with_width_under_sp():
    slopes = first_order_slopes(ProxyConfig(width=64, depth=2, heads=4, seq_len=32, parametrization="sp"))
    assert slopes["hidden"] >= 0.3, slopes


def test_first_order_check_sees_a_readout_initialised_at_sigma_sqrt_m(monkeypatch):
    """Adam hides this from the coordinate check: a readout started sigma x sqrt(m) wide (the
    standard readout's 1/sqrt(width) effective weight) makes every other group's drop grow."""

    def wide_readout(config):
        rules = group_rules(config)
        return {**rules, "output": GroupRule(config.width_multiplier**0.5, 1.0, 1.0)}

    monkeypatch.setattr(model_module, "group_rules", wide_readout)
    slopes = first_order_slopes(ProxyConfig(width=64, depth=2, heads=4, seq_len=32, parametrization="mup"))
    assert all(slopes[group] >= 0.4 for group in ("embedding", "hidden", "norm")), slopes


ROUTER_WIDTHS = [256, 512, 1024]


def router_change_slopes(seeds: int) -> pd.DataFrame:
    """Successive-width slopes of the router logits' change since initialisation (both layers)."""
    config = ProxyConfig(width=64, depth=2, heads=4, seq_len=32, n_experts=4, top_k=2, parametrization="mup")
    frame = coordinate_check(config, ROUTER_WIDTHS, lr=1e-2, steps=6, batch_size=4, seeds=seeds)
    router = frame[frame["module"].str.endswith("router")].assign(module="router")
    slopes = width_slopes(router, value="mean_abs_change", successive=True)
    return slopes.pivot(index="step", columns="to", values="slope")


def test_router_logit_change_fades_across_width_under_mup():
    slopes = router_change_slopes(seeds=4)
    across = (slopes.loc[5, 512] + slopes.loc[5, 1024]) / 2  # the least-squares slope over 256 to 1024
    assert abs(across) <= 0.15 and abs(slopes.loc[5, 1024]) <= 0.15, slopes
    assert abs(slopes.loc[5, 1024]) < abs(slopes.loc[1, 1024]), slopes  # it fades with training


def test_router_at_the_full_learning_rate_grows_with_width(monkeypatch):
    """Rules version 1 trained the router at LR eta: its logit change then grows with width."""

    def router_at_eta(config):
        rules = group_rules(config)
        return {**rules, "router": GroupRule(rules["hidden"].init_std, 1.0, 0.0)}

    monkeypatch.setattr(model_module, "group_rules", router_at_eta)
    slopes = router_change_slopes(seeds=2)
    assert (slopes.loc[1:5] >= 0.3).all().all(), slopes
