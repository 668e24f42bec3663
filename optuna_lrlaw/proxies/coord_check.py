"""Tests of μP across width: the coordinate check and the first-order check.

**Coordinate check** (after microsoft/mup's ``get_coord_data``): train models of several
widths for a few steps on one fixed batch and record, for every module and step, the
mean absolute value of its output and of its change since initialisation. Under a correct
μP the curves flatten across width once training has moved the weights (at high learning
rates, with a slope that fades as width grows: a finite-width effect); under the standard
parametrization with Adam, updates of size lr on every coordinate add up over the fan-in
and the activations grow with width.

**First-order check**: Adam normalises gradients, so activations can keep their size even
when the gradients reaching a group scale wrongly with width (a readout initialised too
large does exactly that). At the first AdamW step every entry moves by
-lr_group g / (|g| + eps), so to first order the loss falls by sum(lr_group g^2 / (|g| + eps))
over the group's entries, about sum(lr_group |g|). Under μP that drop is the same at every
width for every group (``../shared/science.md`` §5).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from dataclasses import replace

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from optuna_lrlaw.proxies.config import ProxyConfig
from optuna_lrlaw.proxies.model import ProxyModel, build_model, configure_optimizer


def coordinate_check(
    config: ProxyConfig,
    widths: Sequence[int] | None = None,
    *,
    depths: Sequence[int] | None = None,
    lr: float = 1e-3,
    steps: int = 5,
    batch_size: int = 1,
    seeds: int = 3,
) -> pd.DataFrame:
    """Mean |output| of every module of ``config`` rebuilt at each width (or depth), at each step.

    Returns a long DataFrame with columns ``width, depth, step, module, mean_abs,
    mean_abs_change``; step 0 is the initialisation, step t the model after t AdamW updates
    on one fixed random batch; ``mean_abs_change`` is mean |a_t - a_0|, what training has
    added (0 at step 0; NaN for experts, whose tokens change with routing). Each value is
    the mean over ``seeds`` initialisations. Besides the modules, ``logits`` is the model's
    output and ``residual`` the residual stream entering the final norm (the quantity
    CompleteP keeps steady across depth). The batch is small on purpose: μP describes widths
    large against the number of tokens in a step, where the gradient of each matrix has low
    rank. Run it at the learning rates you train at: the finite-width drift grows with lr.

    Example:
        >>> frame = coordinate_check(ProxyConfig(width=32, depth=1, heads=2, seq_len=16), [32, 64], steps=2)
        >>> frame["width"].unique().tolist(), frame["step"].unique().tolist()
        ([32, 64], [0, 1])
    """
    batch = _fixed_batch(config, batch_size)
    rows = []
    for shaped, model, optimizer in _fresh_models(config, widths, depths, seeds, lr):
        records: dict[str, torch.Tensor] = {}
        hooks = [
            module.register_forward_hook(_recorder(records, name or "logits"))
            for name, module in model.named_modules()
            if not isinstance(module, torch.nn.ModuleList)
        ]
        hooks.append(model.norm.register_forward_pre_hook(_recorder(records, "residual", inputs=True)))
        initial: dict[str, torch.Tensor] = {}
        for step in range(steps):
            records.clear()
            loss = _loss(model, batch)
            if step == 0:
                initial = dict(records)
            shape = {"width": shaped.width, "depth": shaped.depth, "step": step}
            rows += [
                {
                    **shape,
                    "module": name,
                    "mean_abs": value.abs().mean().item(),
                    "mean_abs_change": _mean_abs_change(value, initial[name]),
                }
                for name, value in records.items()
            ]
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        for hook in hooks:
            hook.remove()
    keys = ["width", "depth", "step", "module"]
    return pd.DataFrame(rows).groupby(keys, sort=False, as_index=False)[["mean_abs", "mean_abs_change"]].mean()


def first_order_check(
    config: ProxyConfig,
    widths: Sequence[int] | None = None,
    *,
    depths: Sequence[int] | None = None,
    lr: float = 1e-2,
    batch_size: int = 4,
    seeds: int = 3,
) -> pd.DataFrame:
    """The first-order loss drop of each parameter group at the first AdamW step, per width (or depth).

    Returns columns ``width, depth, group, drop``: sum over the group's entries of
    lr_group g^2 / (|g| + eps) at initialisation on one fixed random batch, where
    lr_group is ``lr`` times the group's multiplier; the mean over ``seeds``. Under μP
    ``width_slopes(frame, value="drop", by=("group",))`` is about 0 for every group.

    Example:
        >>> frame = first_order_check(ProxyConfig(width=32, depth=1, heads=2, seq_len=16), [32, 64], seeds=1)
        >>> sorted(frame["group"].unique())
        ['embedding', 'hidden', 'norm', 'output']
    """
    batch = _fixed_batch(config, batch_size)
    rows = []
    for shaped, model, optimizer in _fresh_models(config, widths, depths, seeds, lr):
        _loss(model, batch).backward()
        for group in optimizer.param_groups:
            gradients = [p.grad for p in group["params"] if p.grad is not None]
            # Adam's epsilon: an entry whose gradient is below it moves less than lr_group
            drop = sum(float((g.square() / (g.abs() + group["eps"])).sum()) for g in gradients) * group["lr"]
            rows.append({"width": shaped.width, "depth": shaped.depth, "group": group["name"], "drop": drop})
    return pd.DataFrame(rows).groupby(["width", "depth", "group"], sort=False, as_index=False)["drop"].mean()


def width_slopes(
    frame: pd.DataFrame,
    *,
    along: str = "width",
    value: str = "mean_abs",
    by: Sequence[str] = ("module", "step"),
    successive: bool = False,
) -> pd.DataFrame:
    """The slope of log ``value`` against log width (or depth), per ``by`` group: 0 is flat.

    With ``successive``, one slope per pair of neighbouring widths (columns ``from`` and
    ``to``): a finite-width drift shows as slopes that shrink towards 0 as width grows.

    Example:
        >>> frame = pd.DataFrame({"width": [64, 256, 1024], "step": 1, "module": "x", "mean_abs": [1.0, 2.0, 3.0]})
        >>> round(float(width_slopes(frame)["slope"].iloc[0]), 3)
        0.396
        >>> width_slopes(frame, successive=True)["slope"].round(3).tolist()
        [0.5, 0.292]
    """
    by = list(by)
    rows = []
    for key, group in frame.groupby(by, sort=False):
        points = group.groupby(along)[value].mean().sort_index()
        points = points[points > 0]  # a change of 0 (step 0) or NaN (experts) has no log
        if len(points) < 2:
            continue
        x, y = np.log(points.index.to_numpy(dtype=float)), np.log(points.to_numpy())
        labels = dict(zip(by, key if isinstance(key, tuple) else (key,), strict=True))
        if successive:
            for i in range(len(points) - 1):
                slope = (y[i + 1] - y[i]) / (x[i + 1] - x[i])
                rows.append({**labels, "from": points.index[i], "to": points.index[i + 1], "slope": float(slope)})
        else:
            rows.append({**labels, "slope": float(np.polyfit(x, y, 1)[0])})
    return pd.DataFrame(rows)


def _fresh_models(
    config: ProxyConfig, widths: Sequence[int] | None, depths: Sequence[int] | None, seeds: int, lr: float
) -> Iterator[tuple[ProxyConfig, ProxyModel, torch.optim.AdamW]]:
    """``config`` at each width (or depth) and seed: a freshly initialised model and its AdamW."""
    shapes = [replace(config, width=width) for width in widths or []]
    shapes += [replace(config, depth=depth) for depth in depths or []]
    if not shapes:
        raise ValueError("give the widths or the depths to compare")
    for shaped, seed in itertools.product(shapes, range(seeds)):
        torch.manual_seed(seed)
        model = build_model(shaped)
        yield shaped, model, configure_optimizer(model, shaped, lr=lr, weight_decay=0.0)


def _fixed_batch(config: ProxyConfig, batch_size: int) -> torch.Tensor:
    """One batch of random tokens, the same for every width and seed."""
    generator = torch.Generator().manual_seed(0)
    return torch.randint(0, config.vocab_size, (batch_size, config.seq_len + 1), generator=generator)


def _loss(model: torch.nn.Module, batch: torch.Tensor) -> torch.Tensor:
    logits = model(batch[:, :-1])
    return F.cross_entropy(logits.flatten(0, 1), batch[:, 1:].flatten())


def _mean_abs_change(now: torch.Tensor, before: torch.Tensor) -> float:
    """mean |now - before|; NaN for an expert, whose routed tokens (and so output shape) change."""
    return (now - before).abs().mean().item() if now.shape == before.shape else float("nan")


def _recorder(records: dict[str, torch.Tensor], name: str, *, inputs: bool = False):
    def hook(module, args, output=None) -> None:
        tensor = args[0] if inputs else output
        tensor = tensor[0] if isinstance(tensor, tuple) else tensor
        records[name] = tensor.detach().float().clone()

    return hook
